// Attention softmax: scaled, with the segment mask (padding keys, and keys of other segments of
// a packed row: kernels/ops.h) and/or a causal mask; and its backward.
//
// One row per (b, h, q). Masked keys get probability exactly 0 and do not enter the max or the
// sum, so a row whose keys are all masked comes out all zeros (not NaN). Exponentials use
// cpu_math::Exp (vectorised for float) and their sum is accumulated in double. Backward is the
// standard
//   dscores = scale * p * (dp - sum_k p * dp),
// which needs no mask: masked keys have p == 0 and so get a zero gradient.
// Both run in place (probs == scores, dscores == dprobs): each element is read before written.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace headroom {

template <typename T>
void CpuOps<T>::SoftmaxForward(const T* scores, T* probs, int B, int H, int Sq, int Sk, T scale,
                               const int32_t* segments, bool causal) {
  const int64_t rows = static_cast<int64_t>(B) * H * Sq;
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / 16 / std::max(Sk, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int q = static_cast<int>(r % Sq);
      const int b = static_cast<int>(r / (static_cast<int64_t>(H) * Sq));
      const int32_t* seg = segments ? segments + static_cast<int64_t>(b) * Sk : nullptr;
      // The query's segment (ops.h): 0 sees every non-padding key.
      const int32_t own = seg != nullptr && Sq == Sk ? seg[q] : 0;
      auto visible = [&](int k) { return seg[k] != 0 && (own == 0 || seg[k] == own); };
      // Keys >= end are causally masked.
      const int end = causal ? std::min(Sk, q + 1) : Sk;
      const T* s = scores + r * Sk;
      T* p = probs + r * Sk;
      T mx = -std::numeric_limits<T>::infinity();
      for (int k = 0; k < end; ++k) {
        if (seg && !visible(k)) continue;
        mx = std::max(mx, scale * s[k]);
      }
      if (mx == -std::numeric_limits<T>::infinity()) {  // every key masked
        std::fill(p, p + Sk, T(0));
        continue;
      }
      // Exponentials first (a branch-free loop the compiler vectorises), then the sum.
      if (seg) {
        for (int k = 0; k < end; ++k) {
          const T e = cpu_math::Exp(scale * s[k] - mx);
          p[k] = visible(k) ? e : T(0);
        }
      } else {
        for (int k = 0; k < end; ++k) p[k] = cpu_math::Exp(scale * s[k] - mx);
      }
      const double sum = cpu_math::SumAsDouble(p, end);
      const T inv = static_cast<T>(1.0 / sum);
      for (int k = 0; k < end; ++k) p[k] *= inv;
      std::fill(p + end, p + Sk, T(0));
    }
  });
}

template <typename T>
void CpuOps<T>::SoftmaxBackward(const T* probs, const T* dprobs, T* dscores, int64_t rows, int Sk,
                                T scale) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / 4 / std::max(Sk, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* p = probs + r * Sk;
      const T* dp = dprobs + r * Sk;
      T* ds = dscores + r * Sk;
      double dot = 0;
      for (int k = 0; k < Sk; ++k) dot += static_cast<double>(p[k]) * dp[k];
      const T dot_t = static_cast<T>(dot);
      for (int k = 0; k < Sk; ++k) ds[k] = scale * p[k] * (dp[k] - dot_t);
    }
  });
}

#define HR_INSTANTIATE(T)                                                                      \
  template void CpuOps<T>::SoftmaxForward(const T*, T*, int, int, int, int, T, const int32_t*, \
                                          bool);                                               \
  template void CpuOps<T>::SoftmaxBackward(const T*, const T*, T*, int64_t, int, T);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
