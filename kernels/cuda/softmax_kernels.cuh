// The device code of the attention softmax (kernels/cuda/softmax.cu): one warp per row of
// scores, scaled and masked (segments, causal), forward and backward. A header of its own so
// that tests/kernels/softmax_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/softmax.cc); only softmax.cu
// includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_SOFTMAX_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_SOFTMAX_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda::softmax_kernels {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarpSize;

// No __restrict__ on scores/probs: they may alias.
// Storage A: float or __nv_bfloat16 (storage.cuh): scores widened, every statistic fp32, each
// probability rounded once to A; probs may alias scores (each lane rewrites what it read).
template <typename A>
__global__ void softmax_forward_kernel(const A* scores, A* probs, int64_t rows, int H, int Sq,
                                       int Sk, float scale, const int32_t* __restrict__ segments,
                                       bool causal) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;  // whole warp
  const int q = static_cast<int>(row % Sq);
  const int64_t b = row / (static_cast<int64_t>(H) * Sq);
  const int32_t* seg = segments != nullptr ? segments + b * Sk : nullptr;
  // The query's segment: 0 (padding, or Sq != Sk) sees every non-padding key.
  const int32_t own = seg != nullptr && Sq == Sk ? seg[q] : 0;
  auto hidden = [&](int k) {
    return seg != nullptr && (seg[k] == 0 || (own != 0 && seg[k] != own));
  };
  const int end = causal ? (q + 1 < Sk ? q + 1 : Sk) : Sk;  // keys >= end are causally masked
  const A* s = scores + row * Sk;
  A* p = probs + row * Sk;

  float mx = -INFINITY;
  for (int k = lane; k < end; k += kWarpSize) {
    if (hidden(k)) continue;
    mx = fmaxf(mx, scale * ToFloat(s[k]));
  }
  mx = WarpMax(mx);
  if (mx == -INFINITY) {  // every key masked
    for (int k = lane; k < Sk; k += kWarpSize) p[k] = FromFloat<A>(0.0f);
    return;
  }
  float sum = 0.0f;
  for (int k = lane; k < end; k += kWarpSize) {
    if (hidden(k)) continue;
    sum += expf(scale * ToFloat(s[k]) - mx);
  }
  const float inv = 1.0f / WarpSum(sum);
  for (int k = lane; k < Sk; k += kWarpSize) {
    const bool masked = k >= end || hidden(k);
    p[k] = FromFloat<A>(masked ? 0.0f : expf(scale * ToFloat(s[k]) - mx) * inv);
  }
}

// dscores may alias dprobs.
template <typename A>
__global__ void softmax_backward_kernel(const A* __restrict__ probs, const A* dprobs, A* dscores,
                                        int64_t rows, int Sk, float scale) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const A* p = probs + row * Sk;
  const A* dp = dprobs + row * Sk;
  A* ds = dscores + row * Sk;
  float dot = 0.0f;
  for (int k = lane; k < Sk; k += kWarpSize) dot += ToFloat(p[k]) * ToFloat(dp[k]);
  dot = WarpSum(dot);
  for (int k = lane; k < Sk; k += kWarpSize) {
    ds[k] = FromFloat<A>(scale * ToFloat(p[k]) * (ToFloat(dp[k]) - dot));
  }
}

}  // namespace headroom::cuda::softmax_kernels

#endif  // HEADROOM_KERNELS_CUDA_SOFTMAX_KERNELS_CUH_
