// Fused softmax cross-entropy over rows of logits, forward and (optionally) backward in one pass.
//
// Per row: max, then logsumexp (exponentials in T by cpu_math::Exp, vectorised; their sum in
// double); loss = lse - logit[label]. The gradient
// grad_scale * w * (softmax - onehot) is written straight from the logits and the lse, so no
// probability matrix is ever stored, and dlogits may overwrite logits (the label's logit is read
// before the row is written). Rows with label < 0 have loss 0 and, when requested, zero gradient.
#include <algorithm>
#include <cassert>
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace headroom {

template <typename T>
void CpuOps<T>::SoftmaxCrossEntropy(const T* logits, const int32_t* labels, const T* weights,
                                    int64_t rows, int V, T* losses, T* dlogits, T grad_scale) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / 16 / std::max(V, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* x = logits + r * V;
      const int32_t label = labels[r];
      assert(label < V);
      if (label < 0) {
        losses[r] = T(0);
        if (dlogits) std::fill(dlogits + r * V, dlogits + (r + 1) * V, T(0));
        continue;
      }
      T mx = x[0];
      for (int c = 1; c < V; ++c) mx = std::max(mx, x[c]);
      const T x_label = x[label];  // read before dlogits (which may alias logits) is written
      // One exp per logit: when the gradient is wanted, the exponentials are parked in dlogits
      // and normalised in place afterwards (the vocabulary row is the costly part of a step).
      double sum = 0;
      if (dlogits) {
        T* dx = dlogits + r * V;
        for (int c = 0; c < V; ++c) dx[c] = cpu_math::Exp(x[c] - mx);  // vectorised
        sum = cpu_math::SumAsDouble(dx, V);
      } else {
        T e[256];  // exponentials a block at a time, so the exp loop still vectorises
        for (int c0 = 0; c0 < V; c0 += 256) {
          const int w = std::min(256, V - c0);
          for (int c = 0; c < w; ++c) e[c] = cpu_math::Exp(x[c0 + c] - mx);
          sum += cpu_math::SumAsDouble(e, w);
        }
      }
      const double lse = static_cast<double>(mx) + std::log(sum);
      losses[r] = static_cast<T>(lse - static_cast<double>(x_label));
      if (dlogits) {
        const T coef = grad_scale * (weights ? weights[r] : T(1));
        const T scale = static_cast<T>(static_cast<double>(coef) / sum);
        T* dx = dlogits + r * V;
        for (int c = 0; c < V; ++c) dx[c] *= scale;
        dx[label] -= coef;
      }
    }
  });
}

template void CpuOps<float>::SoftmaxCrossEntropy(const float*, const int32_t*, const float*,
                                                 int64_t, int, float*, float*, float);
template void CpuOps<double>::SoftmaxCrossEntropy(const double*, const int32_t*, const double*,
                                                  int64_t, int, double*, double*, double);

}  // namespace headroom
