// Pointwise activations: GELU (erf form, as BERT), its tanh form (Google BERT's gelu), ReLU
// (tensor2tensor's FFN) and tanh (BERT's pooler), forward and backward.
//
//   gelu(x)       = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))
//   gelu'(x)      = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   gelu_tanh(x)  = 0.5 * x * (1 + t),  t = tanh(u),  u = sqrt(2 / pi) * (x + 0.044715 x^3)
//   gelu_tanh'(x) = 0.5 * (1 + t) + 0.5 * x * (1 - t^2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x^2)
//   relu(x)       = max(x, 0),  relu'(x) = 1 for x > 0, else 0
//   tanh'(x)      = 1 - tanh(x)^2, from the saved output.
// All may run in place (y == x, dx == dy): each element reads its inputs before writing.
//
// Float GELU uses cpu_math::ErfFloat and ExpFloat (branch-free, so the loops vectorise) and is
// compiled once per ISA level with target_clones (SSE2 baseline, AVX2, AVX-512), picked at load
// time by the CPU: the build targets generic x86-64, which would leave 3/4 of each AVX2 register
// idle. -ffp-contract=off (kernels/CMakeLists.txt) keeps every clone bit-identical. Double keeps
// std::erf and std::exp (gradient checks).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace headroom {
namespace {

// Elements per chunk: erf/exp cost ~20x a plain add, so split far smaller loops.
constexpr int64_t kTranscendentalGrain = kElementwiseGrain / 16;

// Vectorised float GELU costs a few plain operations an element, so it splits like one; double
// (std::erf) is ~20x dearer.
template <typename T>
constexpr int64_t GeluGrain =
    std::is_same_v<T, float> ? kElementwiseGrain / 4 : kTranscendentalGrain;

template <typename T>
constexpr T kInvSqrt2 = T(0.70710678118654752440);
template <typename T>
constexpr T kInvSqrt2Pi = T(0.39894228040143267794);
template <typename T>
constexpr T kSqrt2OverPi = T(0.79788456080286535588);
template <typename T>
constexpr T kGeluTanhCubic = T(0.044715);

// Elements per block of the float loops: the inputs that may alias the output are first copied
// to a stack buffer, so the compiler sees no aliasing and vectorises without a runtime overlap
// check (which fails, and falls back to scalar code, exactly when running in place).
constexpr int64_t kBlock = 512;

#define HR_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

HR_ISA_CLONES void GeluForwardFloat(const float* x, float* y, int64_t n) {
  alignas(64) float in[kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    std::memcpy(in, x + b, sizeof(float) * static_cast<size_t>(m));
    float* out = y + b;
    for (int64_t i = 0; i < m; ++i) {
      const float v = in[i];
      out[i] = 0.5f * v * (1.0f + cpu_math::ErfFloat(v * kInvSqrt2<float>));
    }
  }
}

HR_ISA_CLONES void GeluBackwardFloat(const float* x, const float* dy, float* dx, int64_t n) {
  alignas(64) float g[kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    std::memcpy(g, dy + b, sizeof(float) * static_cast<size_t>(m));
    const float* xb = x + b;
    float* out = dx + b;
    for (int64_t i = 0; i < m; ++i) {
      const float v = xb[i];
      const float cdf = 0.5f * (1.0f + cpu_math::ErfFloat(v * kInvSqrt2<float>));
      const float pdf = kInvSqrt2Pi<float> * cpu_math::ExpFloat(-0.5f * v * v);
      out[i] = g[i] * (cdf + v * pdf);
    }
  }
}

#undef HR_ISA_CLONES

void GeluForwardRange(const float* x, float* y, int64_t n) { GeluForwardFloat(x, y, n); }
void GeluBackwardRange(const float* x, const float* dy, float* dx, int64_t n) {
  GeluBackwardFloat(x, dy, dx, n);
}

void GeluForwardRange(const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = 0.5 * v * (1.0 + std::erf(v * kInvSqrt2<double>));
  }
}

void GeluBackwardRange(const double* x, const double* dy, double* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double cdf = 0.5 * (1.0 + std::erf(v * kInvSqrt2<double>));
    const double pdf = kInvSqrt2Pi<double> * std::exp(-0.5 * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

}  // namespace

template <typename T>
void CpuOps<T>::GeluForward(const T* x, T* y, int64_t n) {
  pool_.ParallelFor(n, GeluGrain<T>,
                    [&](int64_t lo, int64_t hi) { GeluForwardRange(x + lo, y + lo, hi - lo); });
}

template <typename T>
void CpuOps<T>::GeluBackward(const T* x, const T* dy, T* dx, int64_t n) {
  pool_.ParallelFor(n, GeluGrain<T>, [&](int64_t lo, int64_t hi) {
    GeluBackwardRange(x + lo, dy + lo, dx + lo, hi - lo);
  });
}

template <typename T>
void CpuOps<T>::ActivationForward(Activation act, const T* x, T* y, int64_t n) {
  switch (act) {
    case Activation::kGelu:
      GeluForward(x, y, n);
      return;
    case Activation::kGeluTanh:
      pool_.ParallelFor(n, kTranscendentalGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          const T v = x[i];
          y[i] = T(0.5) * v *
                 (T(1) + std::tanh(kSqrt2OverPi<T> * (v + kGeluTanhCubic<T> * v * v * v)));
        }
      });
      return;
    case Activation::kRelu:
      pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      });
      return;
  }
}

template <typename T>
void CpuOps<T>::ActivationBackward(Activation act, const T* x, const T* dy, T* dx, int64_t n) {
  switch (act) {
    case Activation::kGelu:
      GeluBackward(x, dy, dx, n);
      return;
    case Activation::kGeluTanh:
      pool_.ParallelFor(n, kTranscendentalGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          const T v = x[i];
          const T t = std::tanh(kSqrt2OverPi<T> * (v + kGeluTanhCubic<T> * v * v * v));
          const T du = kSqrt2OverPi<T> * (T(1) + T(3) * kGeluTanhCubic<T> * v * v);
          dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
        }
      });
      return;
    case Activation::kRelu:
      pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
      });
      return;
  }
}

template <typename T>
void CpuOps<T>::TanhForward(const T* x, T* y, int64_t n) {
  pool_.ParallelFor(n, kTranscendentalGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = std::tanh(x[i]);
  });
}

template <typename T>
void CpuOps<T>::TanhBackward(const T* y, const T* dy, T* dx, int64_t n) {
  pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
  });
}

#define HR_INSTANTIATE(T)                                                                   \
  template void CpuOps<T>::GeluForward(const T*, T*, int64_t);                              \
  template void CpuOps<T>::GeluBackward(const T*, const T*, T*, int64_t);                   \
  template void CpuOps<T>::ActivationForward(Activation, const T*, T*, int64_t);            \
  template void CpuOps<T>::ActivationBackward(Activation, const T*, const T*, T*, int64_t); \
  template void CpuOps<T>::TanhForward(const T*, T*, int64_t);                              \
  template void CpuOps<T>::TanhBackward(const T*, const T*, T*, int64_t);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
