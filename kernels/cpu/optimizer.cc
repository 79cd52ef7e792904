// Optimizer updates in place: AdamW (decoupled weight decay) and LAMB (layer-wise trust ratio).
//
// Both follow ops.h exactly:
//   g' = grad_scale * g;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
//   u  = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
// with m_hat = m / (1 - b1^step), v_hat = v / (1 - b2^step) under bias_correction (else m, v).
// AdamW: w -= lr * u. LAMB (one tensor): u goes to scratch, r = ||w|| / ||u|| (1 if either is
// 0; norms in double, ||w|| before the update), then w -= lr * r * u.
// Element math is in T; the bias-correction factors are computed once in double.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

struct Factors {
  double inv_bc1 = 1, inv_bc2 = 1;
};

Factors BiasCorrection(const OptimizerStep& s) {
  Factors f;
  if (s.bias_correction) {
    const double t = static_cast<double>(s.step);
    f.inv_bc1 = 1.0 / (1.0 - std::pow(static_cast<double>(s.beta1), t));
    f.inv_bc2 = 1.0 / (1.0 - std::pow(static_cast<double>(s.beta2), t));
  }
  return f;
}

// Updates m and v at i and returns u.
template <typename T>
inline T AdamDirection(T w, T g, T* m, T* v, const OptimizerStep& s, T inv_bc1, T inv_bc2) {
  const T b1 = static_cast<T>(s.beta1), b2 = static_cast<T>(s.beta2);
  const T gs = static_cast<T>(s.grad_scale) * g;
  const T mi = b1 * *m + (T(1) - b1) * gs;
  const T vi = b2 * *v + (T(1) - b2) * gs * gs;
  *m = mi;
  *v = vi;
  return (mi * inv_bc1) / (std::sqrt(vi * inv_bc2) + static_cast<T>(s.eps)) +
         static_cast<T>(s.weight_decay) * w;
}

}  // namespace

template <typename T>
void CpuOps<T>::AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s) {
  const Factors f = BiasCorrection(s);
  const T inv_bc1 = static_cast<T>(f.inv_bc1), inv_bc2 = static_cast<T>(f.inv_bc2);
  const T lr = static_cast<T>(s.lr);
  pool_.ParallelFor(n, kElementwiseGrain / 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      w[i] -= lr * AdamDirection(w[i], g[i], m + i, v + i, s, inv_bc1, inv_bc2);
    }
  });
}

template <typename T>
void CpuOps<T>::Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch) {
  const Factors f = BiasCorrection(s);
  const T inv_bc1 = static_cast<T>(f.inv_bc1), inv_bc2 = static_cast<T>(f.inv_bc2);
  const int64_t parts = n >= kElementwiseGrain / 4 ? pool_.num_threads() : 1;
  std::vector<double> w_sq(parts, 0.0), u_sq(parts, 0.0);
  pool_.ParallelFor(parts, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      double ws = 0, us = 0;
      for (int64_t i = n * t / parts; i < n * (t + 1) / parts; ++i) {
        const T u = AdamDirection(w[i], g[i], m + i, v + i, s, inv_bc1, inv_bc2);
        scratch[i] = u;
        ws += static_cast<double>(w[i]) * w[i];
        us += static_cast<double>(u) * u;
      }
      w_sq[t] = ws;
      u_sq[t] = us;
    }
  });
  double ws = 0, us = 0;
  for (int64_t t = 0; t < parts; ++t) {
    ws += w_sq[t];
    us += u_sq[t];
  }
  const double ratio = (ws > 0 && us > 0) ? std::sqrt(ws) / std::sqrt(us) : 1.0;
  const T step = static_cast<T>(static_cast<double>(s.lr) * ratio);
  pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) w[i] -= step * scratch[i];
  });
}

#define HR_INSTANTIATE(T)                                                              \
  template void CpuOps<T>::AdamW(T*, const T*, T*, T*, int64_t, const OptimizerStep&); \
  template void CpuOps<T>::Lamb(T*, const T*, T*, T*, int64_t, const OptimizerStep&, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
