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
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kScatterBlock = 128;  // columns per block of the scatter kernel
constexpr size_t kAlign = 256;

size_t AlignUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

__global__ void embedding_forward_kernel(const int32_t* __restrict__ ids,
                                         const float* __restrict__ table, int64_t n, int d,
                                         float* __restrict__ out, bool accumulate) {
  const int64_t total = n * d;
  for (int64_t e = GlobalThread(); e < total; e += GridThreads()) {
    const int64_t i = e / d, c = e % d;
    const float v = table[static_cast<int64_t>(ids[i]) * d + c];
    out[e] = accumulate ? out[e] + v : v;
  }
}

__global__ void iota_kernel(int32_t* __restrict__ x, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] = static_cast<int32_t>(i);
}

// Grid (m sorted positions, column tiles). Only the first position of each run of equal ids
// works; it walks the whole run in sorted (= increasing original i) order. The run's end is
// found first by binary search (the ids are sorted), so the summing loop has a known trip count
// and its loads (independent of each other) can be in flight together: a run of thousands of
// rows (the token-type table's two ids, the position table's S) is not a chain of dependent
// memory round trips. The additions stay in the same order.
__global__ void scatter_add_sorted_kernel(const float* __restrict__ src,
                                          const int32_t* __restrict__ sorted_idx,
                                          const int32_t* __restrict__ sorted_pos, int64_t m, int d,
                                          float* __restrict__ dst) {
  const int64_t k = blockIdx.x;
  const int32_t id = sorted_idx[k];
  if (k > 0 && sorted_idx[k - 1] == id) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= d) return;
  int64_t lo = k + 1, hi = m;  // the first position in [k + 1, m) with a larger id
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sorted_idx[mid] == id) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  float* t = dst + static_cast<int64_t>(id) * d + c;
  float acc = *t;
#pragma unroll 8
  for (int64_t j = k; j < lo; ++j) acc += src[static_cast<int64_t>(sorted_pos[j]) * d + c];
  *t = acc;
}

}  // namespace

void LaunchEmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                            bool accumulate, const LaunchContext& ctx) {
  if (n <= 0 || d <= 0) return;
  embedding_forward_kernel<<<GridStrideBlocks(n * d, kBlock), kBlock, 0, ctx.stream>>>(
      ids, table, n, d, out, accumulate);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst,
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
  scatter_add_sorted_kernel<<<grid, kScatterBlock, 0, ctx.stream>>>(src, sorted_idx, sorted_pos, m,
                                                                    d, dst);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
