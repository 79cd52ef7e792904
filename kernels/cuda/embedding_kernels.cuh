// The device code of the embedding ops (kernels/cuda/embedding.cu): the gather forward, the iota
// of the scatter-add's sort, the scatter-add over runs of equal sorted ids, and the fused
// embedding sum + LayerNorm + dropout that writes bf16 (or float) activations. A header of its
// own so that tests/kernels/embedding_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/embedding.cc); only
// embedding.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_EMBEDDING_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_EMBEDDING_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/cuda/warp_rows.cuh"

namespace headroom::cuda::embedding_kernels {

constexpr int kBlock = 256;
constexpr int kScatterBlock = 128;  // columns per block of the scatter kernel
// out[i, :] (+)= table[ids[i], :]: the embedding lookup (fp32) and GatherRows (of A rows into
// A), the sum in fp32 rounded once to Out.
template <typename Table, typename Out>
__global__ void embedding_forward_kernel(const int32_t* __restrict__ ids,
                                         const Table* __restrict__ table, int64_t n, int d,
                                         Out* __restrict__ out, bool accumulate) {
  const int64_t total = n * d;
  for (int64_t e = GlobalThread(); e < total; e += GridThreads()) {
    const int64_t i = e / d, c = e % d;
    const float v = ToFloat(table[static_cast<int64_t>(ids[i]) * d + c]);
    out[e] = FromFloat<Out>(accumulate ? ToFloat(out[e]) + v : v);
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
template <typename Src>
__global__ void scatter_add_sorted_kernel(const Src* __restrict__ src,
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
  for (int64_t j = k; j < lo; ++j) {
    acc += ToFloat(src[static_cast<int64_t>(sorted_pos[j]) * d + c]);
  }
  *t = acc;
}

// The embedding sum, LayerNorm and dropout of the model's input in one pass, one warp per row
// with warp_rows.cuh's packed rows (16-byte loads of the fp32 tables, 16-byte stores of A):
//   e = word[ids[r]] * word_scale + pos[positions[r]] (+ type[segments[r]], segments non-null),
// in fp32, in that order (EmbeddingForward, Scale, then the accumulating EmbeddingForwards;
// word_scale 1 multiplies exactly). With gamma non-null (post-LN) sum_out = e stored as S (the
// input LayerNorm backward reads: fp32 as the model's residual stream, or A) and y =
// dropout(LayerNorm(e)) as A, normalising the fp32 e, with mean and rstd as LayerNormForward's;
// with gamma null (pre-LN) y = dropout(e) (sum_out unused). The dropout is Dropout's mask over
// the [rows, cols] output (`drop`, inactive at rate 0). A lane moves Chunk<S, A> elements.
template <typename S, typename A, int kPacks>
__global__ void __launch_bounds__(kRowBlock) embedding_layernorm_forward_kernel(
    const int32_t* __restrict__ ids, const float* __restrict__ word, float word_scale,
    const int32_t* __restrict__ positions, const float* __restrict__ pos_table,
    const int32_t* __restrict__ segments, const float* __restrict__ type_table, int64_t rows,
    int cols, const float* __restrict__ gamma, const float* __restrict__ beta, float eps,
    ElementDropout drop, S* __restrict__ sum_out, A* __restrict__ y, float* __restrict__ mean,
    float* __restrict__ rstd) {
  constexpr int kN = Chunk<S, A>::kSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerRowBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together
  const float* word_row = word + static_cast<int64_t>(ids[row]) * cols;
  const float* pos_row = pos_table + static_cast<int64_t>(positions[row]) * cols;
  const float* type_row =
      segments != nullptr ? type_table + static_cast<int64_t>(segments[row]) * cols : nullptr;
  float v[kPacks][kN];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int c = ChunkColumn<kN>(k, lane);
    if (c >= cols) break;
    float w[kN], p[kN];
    LoadElements(word_row + c, w);
    LoadElements(pos_row + c, p);
    // __fmul_rn: the scaled word rounds on its own (Scale), never fused with the add.
#pragma unroll
    for (int j = 0; j < kN; ++j) v[k][j] = __fmul_rn(w[j], word_scale) + p[j];
    if (type_row != nullptr) {
      float t[kN];
      LoadElements(type_row + c, t);
#pragma unroll
      for (int j = 0; j < kN; ++j) v[k][j] = v[k][j] + t[j];
    }
    if (gamma != nullptr) {
      StoreElements(sum_out + row * cols + c, v[k]);
    } else {
      float out[kN];
#pragma unroll
      for (int j = 0; j < kN; ++j) out[j] = v[k][j];
      drop.ApplyGroups(out, row * cols + c);
      StoreElements(y + row * cols + c, out);
    }
  }
  if (gamma != nullptr) {
    NormalizeRow<A, kN, kPacks>(v, row, cols, lane, gamma, beta, eps, drop, y, mean, rstd);
  }
}

}  // namespace headroom::cuda::embedding_kernels

#endif  // HEADROOM_KERNELS_CUDA_EMBEDDING_KERNELS_CUH_
