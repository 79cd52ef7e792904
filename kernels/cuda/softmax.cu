// Attention softmax over keys, scaled and masked (the segment mask of kernels/ops.h: padding
// keys and keys of other segments; causal), and its backward.
//
// One warp per row (b, h, q) of Sk <= a few thousand scores: three coalesced passes (max, sum
// of exponentials, write) with warp-shuffle reductions, the row staying in L1 between passes.
// Masked keys (not visible under `segments`, or k > q when causal) take no part in the max and
// the sum and get probability exactly 0, so a fully masked row is all zeros, never NaN (same
// rule as kernels/cpu/softmax.cc). Each lane reads score k before writing probability k, and all
// reads of a pass end before the shuffle that closes it, so probs may alias scores (and dscores
// dprobs in backward).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarpSize;

// No __restrict__ on scores/probs: they may alias.
__global__ void softmax_forward_kernel(const float* scores, float* probs, int64_t rows, int H,
                                       int Sq, int Sk, float scale,
                                       const int32_t* __restrict__ segments, bool causal) {
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
  const float* s = scores + row * Sk;
  float* p = probs + row * Sk;

  float mx = -INFINITY;
  for (int k = lane; k < end; k += kWarpSize) {
    if (hidden(k)) continue;
    mx = fmaxf(mx, scale * s[k]);
  }
  mx = WarpMax(mx);
  if (mx == -INFINITY) {  // every key masked
    for (int k = lane; k < Sk; k += kWarpSize) p[k] = 0.0f;
    return;
  }
  float sum = 0.0f;
  for (int k = lane; k < end; k += kWarpSize) {
    if (hidden(k)) continue;
    sum += expf(scale * s[k] - mx);
  }
  const float inv = 1.0f / WarpSum(sum);
  for (int k = lane; k < Sk; k += kWarpSize) {
    const bool masked = k >= end || hidden(k);
    p[k] = masked ? 0.0f : expf(scale * s[k] - mx) * inv;
  }
}

__global__ void softmax_backward_kernel(const float* __restrict__ probs, const float* dprobs,
                                        float* dscores, int64_t rows, int Sk, float scale) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const float* p = probs + row * Sk;
  const float* dp = dprobs + row * Sk;
  float* ds = dscores + row * Sk;
  float dot = 0.0f;
  for (int k = lane; k < Sk; k += kWarpSize) dot += p[k] * dp[k];
  dot = WarpSum(dot);
  for (int k = lane; k < Sk; k += kWarpSize) ds[k] = scale * p[k] * (dp[k] - dot);
}

}  // namespace

void LaunchSoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk,
                          float scale, const int32_t* segments, bool causal,
                          const LaunchContext& ctx) {
  if (B <= 0 || H <= 0 || Sq <= 0 || Sk <= 0) return;
  const int64_t rows = static_cast<int64_t>(B) * H * Sq;
  softmax_forward_kernel<<<static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)), kBlock, 0,
                           ctx.stream>>>(scores, probs, rows, H, Sq, Sk, scale, segments, causal);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchSoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                           int Sk, float scale, const LaunchContext& ctx) {
  if (rows <= 0 || Sk <= 0) return;
  softmax_backward_kernel<<<static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)), kBlock, 0,
                            ctx.stream>>>(probs, dprobs, dscores, rows, Sk, scale);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
