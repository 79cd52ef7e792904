// The device code of the pointwise activations (kernels/cuda/activation.cu): GELU (erf and tanh
// forms), ReLU and tanh, forward and backward, as grid-stride loops, templated on the activation
// storage A (float, or __nv_bfloat16: read widened to fp32, computed in fp32, stored rounded to
// nearest even; kernels/cuda/storage.cuh). A header of its own so that
// tests/kernels/activation_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/activation.cc); only
// activation.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_ACTIVATION_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_ACTIVATION_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda::activation_kernels {

constexpr int kBlock = 256;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluTanhCubic = 0.044715f;

template <typename A>
__global__ void gelu_forward_kernel(const A* x, A* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = ToFloat(x[i]);
    y[i] = FromFloat<A>(0.5f * v * (1.0f + erff(v * kInvSqrt2)));
  }
}

template <typename A>
__global__ void gelu_backward_kernel(const A* x, const A* dy, A* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = ToFloat(x[i]);
    const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    dx[i] = FromFloat<A>(ToFloat(dy[i]) * (cdf + v * pdf));
  }
}

template <typename A>
__global__ void gelu_tanh_forward_kernel(const A* x, A* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = ToFloat(x[i]);
    y[i] = FromFloat<A>(0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v))));
  }
}

template <typename A>
__global__ void gelu_tanh_backward_kernel(const A* x, const A* dy, A* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = ToFloat(x[i]);
    const float t = tanhf(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCubic * v * v);
    dx[i] = FromFloat<A>(ToFloat(dy[i]) * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du));
  }
}

template <typename A>
__global__ void relu_forward_kernel(const A* x, A* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = ToFloat(x[i]);
    y[i] = FromFloat<A>(v > 0.0f ? v : 0.0f);
  }
}

template <typename A>
__global__ void relu_backward_kernel(const A* x, const A* dy, A* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    dx[i] = ToFloat(x[i]) > 0.0f ? dy[i] : FromFloat<A>(0.0f);
  }
}

template <typename A>
__global__ void tanh_forward_kernel(const A* x, A* y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads())
    y[i] = FromFloat<A>(tanhf(ToFloat(x[i])));
}

template <typename A>
__global__ void tanh_backward_kernel(const A* y, const A* dy, A* dx, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float v = ToFloat(y[i]);
    dx[i] = FromFloat<A>(ToFloat(dy[i]) * (1.0f - v * v));
  }
}

}  // namespace headroom::cuda::activation_kernels

#endif  // HEADROOM_KERNELS_CUDA_ACTIVATION_KERNELS_CUH_
