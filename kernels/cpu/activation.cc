// Pointwise activations: GELU (erf form, as BERT) and tanh (BERT's pooler), forward and backward.
//
//   gelu(x)  = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))
//   gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   tanh'(x) = 1 - tanh(x)^2, from the saved output.
// All may run in place (y == x, dx == dy): each element reads its inputs before writing.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

// Elements per chunk: erf/exp cost ~20x a plain add, so split far smaller loops.
constexpr int64_t kTranscendentalGrain = kElementwiseGrain / 16;

template <typename T>
constexpr T kInvSqrt2 = T(0.70710678118654752440);
template <typename T>
constexpr T kInvSqrt2Pi = T(0.39894228040143267794);

}  // namespace

template <typename T>
void CpuOps<T>::GeluForward(const T* x, T* y, int64_t n) {
  pool_.ParallelFor(n, kTranscendentalGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T v = x[i];
      y[i] = T(0.5) * v * (T(1) + std::erf(v * kInvSqrt2<T>));
    }
  });
}

template <typename T>
void CpuOps<T>::GeluBackward(const T* x, const T* dy, T* dx, int64_t n) {
  pool_.ParallelFor(n, kTranscendentalGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T v = x[i];
      const T cdf = T(0.5) * (T(1) + std::erf(v * kInvSqrt2<T>));
      const T pdf = kInvSqrt2Pi<T> * std::exp(T(-0.5) * v * v);
      dx[i] = dy[i] * (cdf + v * pdf);
    }
  });
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

#define HR_INSTANTIATE(T)                                                 \
  template void CpuOps<T>::GeluForward(const T*, T*, int64_t);            \
  template void CpuOps<T>::GeluBackward(const T*, const T*, T*, int64_t); \
  template void CpuOps<T>::TanhForward(const T*, T*, int64_t);            \
  template void CpuOps<T>::TanhBackward(const T*, const T*, T*, int64_t);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
