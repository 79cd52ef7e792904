// Embedding lookup and row gathers, and their deterministic scatter-add backward.
//
// Forward is a gather: one thread per output element, coalesced along d. The backward
// dst[idx[i], :] += src[i, :] must add rows with equal idx in increasing i (ops.h), the order
// the CPU uses, and without atomics (float atomics add in scheduling order). So: a stable radix
// sort of (idx[i], i) pairs by idx (CUB; stable, so equal ids keep increasing i), then one block
// row per sorted position that STARTS a run of equal ids: thread c loads dst[id, c] once, adds
// src[i, c] for the run's i in order, and stores once. Per element this is exactly the CPU's
// sequence of float additions, so the result is bit-identical to kernels/cpu/embedding.cc. The
// sort's buffers come from a DeviceScratch that only grows (first step), never per call.
//
// The bf16 path's input block is one kernel (embedding_kernels.cuh): the fp32 table rows summed,
// LayerNorm in fp32 and the embedding dropout, writing the bf16 sum and output.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding_kernels.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/storage.cuh"
#include "kernels/cuda/warp_rows.cuh"

namespace headroom::cuda {
using namespace embedding_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

constexpr size_t kAlign = 256;

size_t AlignUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

template <typename Table, typename Out>
void EmbeddingForward(const int32_t* ids, const Table* table, int64_t n, int d, Out* out,
                      bool accumulate, const LaunchContext& ctx) {
  if (n <= 0 || d <= 0) return;
  embedding_forward_kernel<Table, Out><<<GridStrideBlocks(n * d, kBlock), kBlock, 0, ctx.stream>>>(
      ids, table, n, d, out, accumulate);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchEmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                            bool accumulate, const LaunchContext& ctx) {
  EmbeddingForward(ids, table, n, d, out, accumulate, ctx);
}

void LaunchGatherRows(const __nv_bfloat16* src, const int32_t* idx, int64_t m, int d,
                      __nv_bfloat16* dst, const LaunchContext& ctx) {
  EmbeddingForward(idx, src, m, d, dst, /*accumulate=*/false, ctx);
}

namespace {

// The fused input block for a sum of type S and an output of type A (launch.h's overloads).
template <typename S, typename A>
void EmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                               const int32_t* positions, const float* pos_table,
                               const int32_t* segments, const float* type_table, int64_t rows,
                               int cols, const float* gamma, const float* beta, float eps,
                               float rate, uint64_t seed, uint64_t step, uint32_t layer,
                               uint32_t site, S* sum, A* y, float* mean, float* rstd,
                               const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  const int packs = PacksOrRecord("LaunchEmbeddingLayerNormForward", cols, Chunk<S, A>::kSize,
                                  {word, pos_table, type_table, gamma, beta, sum, y}, ctx);
  const ElementDropout drop = MakeElementDropout(rate, seed, step, layer, site);
  const auto blocks = static_cast<unsigned>(CeilDiv(rows, kRowsPerRowBlock));
  WithPacksPerLane(packs, [&](auto p) {
    embedding_layernorm_forward_kernel<S, A, decltype(p)::value>
        <<<blocks, kRowBlock, 0, ctx.stream>>>(ids, word, word_scale, positions, pos_table,
                                               segments, type_table, rows, cols, gamma, beta, eps,
                                               drop, sum, y, mean, rstd);
    HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  });
}

}  // namespace

void LaunchEmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                                     const int32_t* positions, const float* pos_table,
                                     const int32_t* segments, const float* type_table, int64_t rows,
                                     int cols, const float* gamma, const float* beta, float eps,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* sum, __nv_bfloat16* y, float* mean,
                                     float* rstd, const LaunchContext& ctx) {
  EmbeddingLayerNormForward(ids, word, word_scale, positions, pos_table, segments, type_table, rows,
                            cols, gamma, beta, eps, rate, seed, step, layer, site, sum, y, mean,
                            rstd, ctx);
}

void LaunchEmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                                     const int32_t* positions, const float* pos_table,
                                     const int32_t* segments, const float* type_table, int64_t rows,
                                     int cols, const float* gamma, const float* beta, float eps,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* sum, float* y, float* mean, float* rstd,
                                     const LaunchContext& ctx) {
  EmbeddingLayerNormForward(ids, word, word_scale, positions, pos_table, segments, type_table, rows,
                            cols, gamma, beta, eps, rate, seed, step, layer, site, sum, y, mean,
                            rstd, ctx);
}

namespace {

template <typename Src>
void ScatterAddRows(const Src* src, const int32_t* idx, int64_t m, int d, float* dst,
                    DeviceScratch& scratch, const LaunchContext& ctx) {
  if (m <= 0 || d <= 0) return;
  if (m > INT32_MAX) {
    ctx.err->Record("LaunchScatterAddRows", "more than 2^31 - 1 rows", __FILE__, __LINE__);
    return;
  }
  const int items = static_cast<int>(m);
  size_t temp_bytes = 0;
  if (!HR_CUDA_CHECK(*ctx.err, cub::DeviceRadixSort::SortPairs(
                                   nullptr, temp_bytes, idx, static_cast<int32_t*>(nullptr),
                                   static_cast<const int32_t*>(nullptr),
                                   static_cast<int32_t*>(nullptr), items, 0, 32, ctx.stream))) {
    return;
  }
  const size_t array_bytes = AlignUp(sizeof(int32_t) * static_cast<size_t>(m));
  auto* base = static_cast<char*>(scratch.Ensure(3 * array_bytes + AlignUp(temp_bytes), ctx));
  if (base == nullptr) return;
  auto* sorted_idx = reinterpret_cast<int32_t*>(base);
  auto* pos = reinterpret_cast<int32_t*>(base + array_bytes);
  auto* sorted_pos = reinterpret_cast<int32_t*>(base + 2 * array_bytes);
  void* temp = base + 3 * array_bytes;

  iota_kernel<<<GridStrideBlocks(m, kBlock), kBlock, 0, ctx.stream>>>(pos, m);
  if (!HR_CUDA_CHECK(*ctx.err, cudaGetLastError())) return;
  if (!HR_CUDA_CHECK(*ctx.err,
                     cub::DeviceRadixSort::SortPairs(temp, temp_bytes, idx, sorted_idx, pos,
                                                     sorted_pos, items, 0, 32, ctx.stream))) {
    return;
  }
  const dim3 grid(static_cast<unsigned>(m), static_cast<unsigned>(CeilDiv(d, kScatterBlock)));
  scatter_add_sorted_kernel<Src>
      <<<grid, kScatterBlock, 0, ctx.stream>>>(src, sorted_idx, sorted_pos, m, d, dst);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst,
                          DeviceScratch& scratch, const LaunchContext& ctx) {
  ScatterAddRows(src, idx, m, d, dst, scratch, ctx);
}
void LaunchScatterAddRows(const __nv_bfloat16* src, const int32_t* idx, int64_t m, int d,
                          float* dst, DeviceScratch& scratch, const LaunchContext& ctx) {
  ScatterAddRows(src, idx, m, d, dst, scratch, ctx);
}

}  // namespace headroom::cuda
