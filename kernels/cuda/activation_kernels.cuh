// The device code of the pointwise activations (kernels/cuda/activation.cu): GELU (erf and tanh
// forms), ReLU and tanh, forward and backward, as grid-stride loops over 16-byte packs where the
// pointers are aligned (MapElements / MapElementPairs), templated on the activation
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

// y[i] = f(x[i]) for i < n, as a grid-stride loop. With `packed` (x and y 16-byte aligned, the
// launcher checks) threads take whole 16-byte packs (4 floats or 8 bf16: one vector load and
// store each) and then the last n % kN elements one at a time; otherwise every element one at a
// time. Each element is computed alike either way, so the results do not depend on `packed`.
// In place (y == x) is safe: a thread reads each element before it writes it.
template <typename A, typename F>
__device__ __forceinline__ void MapElements(const A* x, A* y, int64_t n, bool packed, F f) {
  constexpr int kN = Pack<A>::kSize;
  const int64_t packs = packed ? n / kN : 0;
  for (int64_t p = GlobalThread(); p < packs; p += GridThreads()) {
    float v[kN];
    Unpack(LoadPack(x + p * kN), v);
#pragma unroll
    for (int j = 0; j < kN; ++j) v[j] = f(v[j]);
    StorePack(y + p * kN, PackFrom<A>(v));
  }
  for (int64_t i = packs * kN + GlobalThread(); i < n; i += GridThreads()) {
    y[i] = FromFloat<A>(f(ToFloat(x[i])));
  }
}

// dx[i] = f(x[i], dy[i]), packed as MapElements; dx may alias dy.
template <typename A, typename F>
__device__ __forceinline__ void MapElementPairs(const A* x, const A* dy, A* dx, int64_t n,
                                                bool packed, F f) {
  constexpr int kN = Pack<A>::kSize;
  const int64_t packs = packed ? n / kN : 0;
  for (int64_t p = GlobalThread(); p < packs; p += GridThreads()) {
    float v[kN], g[kN];
    Unpack(LoadPack(x + p * kN), v);
    Unpack(LoadPack(dy + p * kN), g);
#pragma unroll
    for (int j = 0; j < kN; ++j) v[j] = f(v[j], g[j]);
    StorePack(dx + p * kN, PackFrom<A>(v));
  }
  for (int64_t i = packs * kN + GlobalThread(); i < n; i += GridThreads()) {
    dx[i] = FromFloat<A>(f(ToFloat(x[i]), ToFloat(dy[i])));
  }
}

template <typename A>
__global__ void gelu_forward_kernel(const A* x, A* y, int64_t n, bool packed) {
  MapElements(x, y, n, packed, [](float v) { return 0.5f * v * (1.0f + erff(v * kInvSqrt2)); });
}

template <typename A>
__global__ void gelu_backward_kernel(const A* x, const A* dy, A* dx, int64_t n, bool packed) {
  MapElementPairs(x, dy, dx, n, packed, [](float v, float g) {
    const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    return g * (cdf + v * pdf);
  });
}

template <typename A>
__global__ void gelu_tanh_forward_kernel(const A* x, A* y, int64_t n, bool packed) {
  MapElements(x, y, n, packed, [](float v) {
    return 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v)));
  });
}

template <typename A>
__global__ void gelu_tanh_backward_kernel(const A* x, const A* dy, A* dx, int64_t n, bool packed) {
  MapElementPairs(x, dy, dx, n, packed, [](float v, float g) {
    const float t = tanhf(kSqrt2OverPi * (v + kGeluTanhCubic * v * v * v));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCubic * v * v);
    return g * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
  });
}

template <typename A>
__global__ void relu_forward_kernel(const A* x, A* y, int64_t n, bool packed) {
  MapElements(x, y, n, packed, [](float v) { return v > 0.0f ? v : 0.0f; });
}

template <typename A>
__global__ void relu_backward_kernel(const A* x, const A* dy, A* dx, int64_t n, bool packed) {
  MapElementPairs(x, dy, dx, n, packed, [](float v, float g) { return v > 0.0f ? g : 0.0f; });
}

template <typename A>
__global__ void tanh_forward_kernel(const A* x, A* y, int64_t n, bool packed) {
  MapElements(x, y, n, packed, [](float v) { return tanhf(v); });
}

// Reads the saved output y = tanh(x) in x's place.
template <typename A>
__global__ void tanh_backward_kernel(const A* y, const A* dy, A* dx, int64_t n, bool packed) {
  MapElementPairs(y, dy, dx, n, packed, [](float v, float g) { return g * (1.0f - v * v); });
}

}  // namespace headroom::cuda::activation_kernels

#endif  // HEADROOM_KERNELS_CUDA_ACTIVATION_KERNELS_CUH_
