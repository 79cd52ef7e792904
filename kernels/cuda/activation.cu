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
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluTanhCubic = 0.044715f;

__global__ void gelu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + erff(v * kInvSqrt2));
  }
}

__global__ void gelu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

__global__ void gelu_tanh_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v)));
  }
}

__global__ void gelu_tanh_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = x[i];
    const float t = tanhf(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCubic * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
  }
}

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

__global__ void relu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void tanh_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = tanhf(x[i]);
}

__global__ void tanh_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = y[i];
    dx[i] = dy[i] * (1.0f - v * v);
  }
}

}  // namespace

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
