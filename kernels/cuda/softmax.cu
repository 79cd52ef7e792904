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
#include "kernels/cuda/softmax_kernels.cuh"

namespace headroom::cuda {
using namespace softmax_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

template <typename A>
void SoftmaxForward(const A* scores, A* probs, int B, int H, int Sq, int Sk, float scale,
                    const int32_t* segments, bool causal, const LaunchContext& ctx) {
  if (B <= 0 || H <= 0 || Sq <= 0 || Sk <= 0) return;
  const int64_t rows = static_cast<int64_t>(B) * H * Sq;
  softmax_forward_kernel<A>
      <<<static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)), kBlock, 0, ctx.stream>>>(
          scores, probs, rows, H, Sq, Sk, scale, segments, causal);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

template <typename A>
void SoftmaxBackward(const A* probs, const A* dprobs, A* dscores, int64_t rows, int Sk, float scale,
                     const LaunchContext& ctx) {
  if (rows <= 0 || Sk <= 0) return;
  softmax_backward_kernel<A>
      <<<static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)), kBlock, 0, ctx.stream>>>(
          probs, dprobs, dscores, rows, Sk, scale);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchSoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk,
                          float scale, const int32_t* segments, bool causal,
                          const LaunchContext& ctx) {
  SoftmaxForward(scores, probs, B, H, Sq, Sk, scale, segments, causal, ctx);
}
void LaunchSoftmaxForward(const __nv_bfloat16* scores, __nv_bfloat16* probs, int B, int H, int Sq,
                          int Sk, float scale, const int32_t* segments, bool causal,
                          const LaunchContext& ctx) {
  SoftmaxForward(scores, probs, B, H, Sq, Sk, scale, segments, causal, ctx);
}

void LaunchSoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                           int Sk, float scale, const LaunchContext& ctx) {
  SoftmaxBackward(probs, dprobs, dscores, rows, Sk, scale, ctx);
}
void LaunchSoftmaxBackward(const __nv_bfloat16* probs, const __nv_bfloat16* dprobs,
                           __nv_bfloat16* dscores, int64_t rows, int Sk, float scale,
                           const LaunchContext& ctx) {
  SoftmaxBackward(probs, dprobs, dscores, rows, Sk, scale, ctx);
}

}  // namespace headroom::cuda
