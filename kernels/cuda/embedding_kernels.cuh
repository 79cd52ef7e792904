// The device code of the embedding ops (kernels/cuda/embedding.cu): the gather forward, the iota
// of the scatter-add's sort, and the scatter-add over runs of equal sorted ids. A header of its
// own so that tests/kernels/embedding_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/embedding.cc); only
// embedding.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_EMBEDDING_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_EMBEDDING_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace headroom::cuda::embedding_kernels {

constexpr int kBlock = 256;
constexpr int kScatterBlock = 128;  // columns per block of the scatter kernel
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

}  // namespace headroom::cuda::embedding_kernels

#endif  // HEADROOM_KERNELS_CUDA_EMBEDDING_KERNELS_CUH_
