// Pointwise activations: GELU (erf form, as BERT), its tanh form (Google BERT's gelu), ReLU
// (tensor2tensor's FFN) and tanh (BERT's pooler), forward and backward.
//
//   gelu(x)       = 0.5 * x * (1 + erf(x / sqrt(2)))
//   gelu'(x)      = Phi(x) + x * phi(x),  Phi(x) = 0.5 * (1 + erf(x / sqrt(2))),
//                   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   gelu_tanh(x)  = 0.5 * x * (1 + t),  t = tanh(sqrt(2 / pi) * (x + 0.044715 x^3))
//   gelu_tanh'(x) = 0.5 * (1 + t) + 0.5 * x * (1 - t^2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x^2)
//   relu(x)       = max(x, 0),  relu'(x) = 1 for x > 0, else 0
//   tanh'(x)      = 1 - y^2 from the saved output y.
// The formulas are written exactly as in kernels/cpu/activation.cc, with CUDA's accurate erff,
// expf and tanhf (no fast-math intrinsics: the parity tests want ~1e-6 relative). Grid-stride
// loops; in place is safe (each element read before written by the same thread).
#include "kernels/cuda/activation_kernels.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
using namespace activation_kernels;  // NOLINT(build/namespaces): this file's own kernels

void LaunchGeluForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  gelu_forward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchGeluBackward(const float* x, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx) {
  if (n <= 0) return;
  gelu_backward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, dy, dx, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchGeluTanhForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  gelu_tanh_forward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchGeluTanhBackward(const float* x, const float* dy, float* dx, int64_t n,
                            const LaunchContext& ctx) {
  if (n <= 0) return;
  gelu_tanh_backward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, dy, dx, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchReluForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  relu_forward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchReluBackward(const float* x, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx) {
  if (n <= 0) return;
  relu_backward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, dy, dx, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchTanhForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  tanh_forward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchTanhBackward(const float* y, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx) {
  if (n <= 0) return;
  tanh_backward_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(y, dy, dx, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
