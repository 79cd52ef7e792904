// Fused softmax cross-entropy over rows of logits, forward and (optionally) backward in one pass,
// against the one-hot label or tensor2tensor's label-smoothed target (kernels/ops.h).
//
// Per row: max, then logsumexp (exponentials in T by cpu_math::Exp, vectorised; their sum in
// double); loss = lse - logit[label] (smoothed: lse - sum_v t_v logit_v - H(t)). The gradient
// grad_scale * w * (softmax - t) is written straight from the logits and the lse, so no
// probability matrix is ever stored, and dlogits may overwrite logits (the label's logit is read
// before the row is written). Rows with label < 0 have loss 0 and, when requested, zero gradient.
// Rows are `ld` apart; the padding columns V .. ld-1 are never read and get zero gradient.
//
// The row work (the vocabulary: 30K or 8K columns, the costly part of a step's loss) is written
// so the compiler vectorises all of it, and the float version is compiled per ISA level with
// target_clones (the build targets generic x86-64): the max runs over kMaxLanes independent
// lanes (a single running max is one dependent maxss per element, ~3 cycles, and GCC will not
// reorder it without -ffast-math; max is exact in any order), and the exponentials go through a
// stack block because dlogits usually aliases logits, and GCC's runtime overlap check sends a
// loop whose output overlaps its input (even element for element) to the scalar fallback.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"

namespace headroom {
namespace {

constexpr int kMaxLanes = 16;
constexpr int kExpBlock = 256;

template <typename T>
[[gnu::always_inline]] inline T RowMax(const T* x, int V) {
  T mx = x[0];
  for (int c = 1; c < V; ++c) mx = std::max(mx, x[c]);
  return mx;
}

// Float: kMaxLanes running maxima in a GCC vector (lowered to the clone's registers: four SSE,
// two AVX2 or one AVX-512 register); GCC does not vectorise the plain loop above by itself.
typedef float FloatLanes __attribute__((vector_size(sizeof(float) * kMaxLanes)));
template <>
[[gnu::always_inline]] inline float RowMax(const float* x, int V) {
  if (V < kMaxLanes) {
    float mx = x[0];
    for (int c = 1; c < V; ++c) mx = std::max(mx, x[c]);
    return mx;
  }
  FloatLanes lanes;
  std::memcpy(&lanes, x, sizeof(lanes));
  int c = kMaxLanes;
  for (; c + kMaxLanes <= V; c += kMaxLanes) {
    FloatLanes v;
    std::memcpy(&v, x + c, sizeof(v));
    lanes = v > lanes ? v : lanes;
  }
  float mx = lanes[0];
  for (int j = 1; j < kMaxLanes; ++j) mx = std::max(mx, lanes[j]);
  for (; c < V; ++c) mx = std::max(mx, x[c]);
  return mx;
}

// The label-smoothed target of LabelSmoothedCrossEntropy (kernels/ops.h): `on` on the label,
// `off` elsewhere, and its entropy. eps = 0 is the one-hot target (off = 0, entropy 0).
struct SmoothedTarget {
  double on = 1, off = 0, entropy = 0;
  SmoothedTarget(double eps, int V) {
    if (eps <= 0) return;
    on = 1 - eps;
    off = eps / (V - 1);
    entropy = -on * std::log(on) - eps * std::log(off);
  }
};

// Loss of one row (label >= 0) against target t; with dx, also dx = coef * (softmax(x) - t).
// dx may alias x. always_inline: so each ISA clone of CrossEntropyRowFloat gets its own copy.
// With t one-hot the work is one max, one exp per logit and the label's logit; smoothing adds
// one sum of the logits (the loss needs sum_v t_v x_v) and one subtraction per gradient element.
template <typename T>
[[gnu::always_inline]] inline T CrossEntropyRow(const T* x, int V, int label, T coef,
                                                const SmoothedTarget& t, T* dx) {
  const T mx = RowMax(x, V);
  const T x_label = x[label];  // read before dx (which may alias x) is written
  const double x_sum = t.off != 0 ? cpu_math::SumAsDouble(x, V) : 0.0;  // likewise
  alignas(64) T e[kExpBlock];
  double sum = 0;
  for (int c0 = 0; c0 < V; c0 += kExpBlock) {
    const int w = std::min(kExpBlock, V - c0);
    if (dx) {
      // One exp per logit: the exponentials are parked in dx and normalised afterwards.
      std::memcpy(e, x + c0, sizeof(T) * static_cast<size_t>(w));
      T* d = dx + c0;
      for (int c = 0; c < w; ++c) d[c] = cpu_math::Exp(e[c] - mx);
      sum += cpu_math::SumAsDouble(d, w);
    } else {
      for (int c = 0; c < w; ++c) e[c] = cpu_math::Exp(x[c0 + c] - mx);
      sum += cpu_math::SumAsDouble(e, w);
    }
  }
  const double lse = static_cast<double>(mx) + std::log(sum);
  if (dx) {
    const T scale = static_cast<T>(static_cast<double>(coef) / sum);
    for (int c = 0; c < V; ++c) dx[c] *= scale;
    if (t.off != 0) {
      const T off = static_cast<T>(static_cast<double>(coef) * t.off);
      for (int c = 0; c < V; ++c) dx[c] -= off;
      dx[label] -= static_cast<T>(static_cast<double>(coef) * (t.on - t.off));
    } else {
      dx[label] -= coef;
    }
  }
  if (t.off == 0) return static_cast<T>(lse - static_cast<double>(x_label));
  // -sum_v t_v (x_v - lse) - H(t), with sum_v t_v = 1.
  const double target_dot_x =
      t.on * static_cast<double>(x_label) + t.off * (x_sum - static_cast<double>(x_label));
  return static_cast<T>(lse - target_dot_x - t.entropy);
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) float
CrossEntropyRowFloat(const float* x, int V, int label, float coef, const SmoothedTarget& t,
                     float* dx) {
  return CrossEntropyRow(x, V, label, coef, t, dx);
}

float CrossEntropyRowOf(const float* x, int V, int label, float coef, const SmoothedTarget& t,
                        float* dx) {
  return CrossEntropyRowFloat(x, V, label, coef, t, dx);
}
double CrossEntropyRowOf(const double* x, int V, int label, double coef, const SmoothedTarget& t,
                         double* dx) {
  return CrossEntropyRow(x, V, label, coef, t, dx);
}

}  // namespace

template <typename T>
void CpuOps<T>::SoftmaxCrossEntropy(const T* logits, const int32_t* labels, const T* weights,
                                    int64_t rows, int V, T* losses, T* dlogits, T grad_scale) {
  LabelSmoothedCrossEntropy(logits, labels, weights, rows, V, V, T(0), losses, dlogits, grad_scale);
}

template <typename T>
void CpuOps<T>::LabelSmoothedCrossEntropy(const T* logits, const int32_t* labels, const T* weights,
                                          int64_t rows, int V, int ld, T label_smoothing, T* losses,
                                          T* dlogits, T grad_scale) {
  assert(label_smoothing == T(0) || V >= 2);
  assert(ld >= V);
  const SmoothedTarget target(static_cast<double>(label_smoothing), V);
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / 16 / std::max(V, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* x = logits + r * ld;
      const int32_t label = labels[r];
      assert(label < V);
      T* dx = dlogits ? dlogits + r * ld : nullptr;
      if (dx) std::fill(dx + V, dx + ld, T(0));  // the padding columns are no class
      if (label < 0) {
        losses[r] = T(0);
        if (dx) std::fill(dx, dx + V, T(0));
        continue;
      }
      const T coef = grad_scale * (weights ? weights[r] : T(1));
      losses[r] = CrossEntropyRowOf(x, V, label, coef, target, dx);
    }
  });
}

#define HR_INSTANTIATE(T)                                                                         \
  template void CpuOps<T>::SoftmaxCrossEntropy(const T*, const int32_t*, const T*, int64_t, int,  \
                                               T*, T*, T);                                        \
  template void CpuOps<T>::LabelSmoothedCrossEntropy(const T*, const int32_t*, const T*, int64_t, \
                                                     int, int, T, T*, T*, T);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
