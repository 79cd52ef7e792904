// Fused softmax cross-entropy: loss per row and, optionally, the logits gradient, in one kernel,
// against the one-hot label or tensor2tensor's label-smoothed target t (kernels/ops.h): `on` on
// the label, `off` on every other class.
//
// One block per row (V = 30522 or 32000 logits: ~60 per thread at 512 threads): block max,
// block sum of exp(logit - max) (smoothed: also the block sum of the logits), loss =
// max + log(sum) - logit[label] (smoothed: max + log(sum) - on * logit[label] -
// off * (sum of logits - logit[label]) - H(t)); then the gradient
// coef * (exp(logit - max) / sum - t) is written straight from the logits, so no
// probability matrix exists. Rows are `ld` apart; the padding columns V .. ld-1 (a padded
// vocabulary) are never read and get zero gradient. Each thread writes only the columns it read
// itself (or padding), and the label's logit is read by thread 0 before the first barrier of the
// reductions, so dlogits may overwrite logits. Same formulas as
// kernels/cpu/cross_entropy.cc; rows with label < 0 have loss 0 and zero gradient. Reductions
// are fixed trees (deterministic); sums are fp32 (the CPU uses double: a relative difference of
// ~1e-7 * log V).
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 512;

// No __restrict__ on logits/dlogits: they may alias.
// The smoothed target: on, off and the entropy H(t) (host-computed in double).
struct Target {
  float on = 1.0f, off = 0.0f, entropy = 0.0f;
};

__global__ void cross_entropy_kernel(const float* logits, const int32_t* __restrict__ labels,
                                     const float* __restrict__ weights, int V, int ld, Target t,
                                     float* __restrict__ losses, float* dlogits, float grad_scale) {
  __shared__ float shared[kWarpSize];
  __shared__ float label_logit;
  const int64_t row = blockIdx.x;
  const float* x = logits + row * ld;
  const int32_t label = labels[row];
  if (dlogits != nullptr) {  // the padding columns V .. ld-1 are no class
    for (int c = V + threadIdx.x; c < ld; c += blockDim.x) dlogits[row * ld + c] = 0.0f;
  }
  if (label < 0 || label >= V) {  // no target (>= V is invalid input: treated alike, no OOB read)
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dlogits != nullptr) {
      for (int c = threadIdx.x; c < V; c += blockDim.x) dlogits[row * ld + c] = 0.0f;
    }
    return;  // the whole block returns: no barrier is left waiting
  }
  if (threadIdx.x == 0) label_logit = x[label];
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, x[c]);
  mx = BlockMax(mx, shared);  // its barriers also publish label_logit
  float sum = 0.0f;
  for (int c = threadIdx.x; c < V; c += blockDim.x) sum += expf(x[c] - mx);
  sum = BlockSum(sum, shared);
  if (t.off == 0.0f) {
    if (threadIdx.x == 0) losses[row] = (mx + logf(sum)) - label_logit;
  } else {
    float x_sum = 0.0f;
    for (int c = threadIdx.x; c < V; c += blockDim.x) x_sum += x[c];
    x_sum = BlockSum(x_sum, shared);
    if (threadIdx.x == 0) {
      losses[row] =
          (mx + logf(sum)) - (t.on * label_logit + t.off * (x_sum - label_logit)) - t.entropy;
    }
  }
  if (dlogits == nullptr) return;
  const float coef = grad_scale * (weights != nullptr ? weights[row] : 1.0f);
  const float inv_sum = 1.0f / sum;
  const float off = coef * t.off, on = coef * t.on;
  float* dx = dlogits + row * ld;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    const float p = coef * (expf(x[c] - mx) * inv_sum);
    dx[c] = c == label ? p - on : p - off;
  }
}

}  // namespace

void LaunchSoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                               int64_t rows, int V, int ld, float label_smoothing, float* losses,
                               float* dlogits, float grad_scale, const LaunchContext& ctx) {
  if (rows <= 0) return;
  if (V <= 0) {
    LaunchFill(losses, rows, 0.0f, ctx);
    return;
  }
  Target t;
  if (label_smoothing > 0.0f && V >= 2) {
    const double eps = label_smoothing, on = 1.0 - eps, off = eps / (V - 1);
    t.on = static_cast<float>(on);
    t.off = static_cast<float>(off);
    t.entropy = static_cast<float>(-on * std::log(on) - eps * std::log(off));
  }
  cross_entropy_kernel<<<static_cast<unsigned>(rows), kBlock, 0, ctx.stream>>>(
      logits, labels, weights, V, ld, t, losses, dlogits, grad_scale);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
