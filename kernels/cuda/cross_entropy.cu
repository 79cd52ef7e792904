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
// ~1e-7 * log V). The bf16 instance reads bf16 logits and writes the bf16 gradient in place, the
// losses staying fp32. Rows are read (and the gradient written) in 16-byte packs where the
// pointers are aligned and ld is a multiple of the pack (the model pads the vocabulary to 128).
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy_kernels.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda {
using namespace cross_entropy_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

template <typename A>
void CrossEntropy(const A* logits, const int32_t* labels, const float* weights, int64_t rows, int V,
                  int ld, float label_smoothing, float* losses, A* dlogits, float grad_scale,
                  const LaunchContext& ctx) {
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
  const bool packed = ld % Pack<A>::kSize == 0 && Aligned16({logits, dlogits});
  cross_entropy_kernel<<<static_cast<unsigned>(rows), kBlock, 0, ctx.stream>>>(
      logits, labels, weights, V, ld, t, losses, dlogits, grad_scale, packed);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchSoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                               int64_t rows, int V, int ld, float label_smoothing, float* losses,
                               float* dlogits, float grad_scale, const LaunchContext& ctx) {
  CrossEntropy(logits, labels, weights, rows, V, ld, label_smoothing, losses, dlogits, grad_scale,
               ctx);
}

void LaunchSoftmaxCrossEntropy(const __nv_bfloat16* logits, const int32_t* labels,
                               const float* weights, int64_t rows, int V, int ld,
                               float label_smoothing, float* losses, __nv_bfloat16* dlogits,
                               float grad_scale, const LaunchContext& ctx) {
  CrossEntropy(logits, labels, weights, rows, V, ld, label_smoothing, losses, dlogits, grad_scale,
               ctx);
}

}  // namespace headroom::cuda
