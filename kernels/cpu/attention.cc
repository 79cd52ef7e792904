// Fused attention on the CPU: the reference twin of kernels/cuda/attention.cu.
//
// One task per (batch, head), split over the pool; each task runs its own small products on
// OpenBLAS with one thread, straight on the token-major q, k, v (leading dimension H * D, so no
// head permutes), and keeps only one head's [S, S] block at a time in task-local buffers: the
// [B, H, S, S] probabilities never exist. Per query row the softmax is computed in the form the
// GPU kernel stores, p = exp(scale * s - lse) with lse = max + log(sum of exponentials) (the sum
// accumulated in double), so backward recomputes exactly these probabilities from q, k and lse.
// Dropout applies Dropout's Philox mask by element index ((b * H + h) * S + q) * S + k.
//
// Backward per (batch, head): p recomputed, dV = dropout(p)^T dO, dP = dropout(dO V^T),
// dS = scale * p * (dP - delta) with delta = rowsum(dO * O) (kernels/ops.h), dQ = dS K,
// dK = dS^T Q. Every output element is written by one task: deterministic.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/philox.h"

namespace headroom {
namespace {

// The part of the dropout definition (kernels/philox.h) one row of probabilities needs:
// elements first .. first + n - 1 of the site, multiplied by keep_scale or zeroed.
template <typename T>
void DropoutRow(T* p, int n, uint64_t first, const DropoutKey& key, uint32_t threshold,
                T keep_scale) {
  Philox4x32 words{};
  uint64_t group = ~uint64_t{0};
  for (int k = 0; k < n; ++k) {
    const uint64_t i = first + static_cast<uint64_t>(k);
    if ((i >> 2) != group) {
      group = i >> 2;
      words = DropoutWords(key.seed, key.step, key.layer, key.site, group);
    }
    p[k] = words.v[i & 3] >= threshold ? p[k] * keep_scale : T(0);
  }
}

// What AttentionForward and AttentionBackward share about one call.
template <typename T>
struct AttentionShape {
  int B, S, H, D;
  T scale;
  const int32_t* segments;
  bool causal;
  float rate;
  DropoutKey key;

  int64_t ld() const { return static_cast<int64_t>(H) * D; }
  // Offset of token 0 of head h of sequence b in the token-major tensors.
  int64_t Base(int64_t b, int64_t h) const { return b * S * ld() + h * D; }
  // Applies the dropout mask (scaled) to row `qi` of head (b, h)'s [S, S] block.
  void Drop(T* row, int64_t bh, int qi) const {
    if (rate <= 0.0f) return;
    if (rate >= 1.0f) {
      std::fill(row, row + S, T(0));
      return;
    }
    const T keep_scale = static_cast<T>(1.0 / (1.0 - static_cast<double>(rate)));
    DropoutRow(row, S, static_cast<uint64_t>((bh * S + qi) * S), key, DropoutThreshold(rate),
               keep_scale);
  }
  // The mask of kernels/ops.h: causal, padding keys, and keys of another segment.
  bool Masked(int b, int qi, int k) const {
    if (causal && k > qi) return true;
    if (segments == nullptr) return false;
    const int32_t key_segment = segments[b * S + k], own = segments[b * S + qi];
    return key_segment == 0 || (own != 0 && key_segment != own);
  }
};

// sc [S, S] = q_h k_h^T for head (b, h).
template <typename T>
void HeadScores(const AttentionShape<T>& a, const T* q, const T* k, int64_t base, T* sc) {
  cpu_blas::Gemm(Trans::kNo, Trans::kYes, a.S, a.S, a.D, T(1), q + base, static_cast<int>(a.ld()),
                 k + base, static_cast<int>(a.ld()), T(0), sc, a.S);
}

}  // namespace

template <typename T>
void CpuOps<T>::AttentionForward(const T* q, const T* k, const T* v, int B, int S, int H, int D,
                                 T scale, const int32_t* segments, bool causal, float dropout_rate,
                                 const DropoutKey& key, T* out, T* lse) {
  if (B <= 0 || S <= 0 || H <= 0 || D <= 0) return;
  const AttentionShape<T> a{B, S, H, D, scale, segments, causal, dropout_rate, key};
  const int ld = static_cast<int>(a.ld());
  cpu_blas::WithSingleThreadedBlas([&] {
    pool_.ParallelFor(int64_t{B} * H, 1, [&](int64_t lo, int64_t hi) {
      std::vector<T> p(static_cast<size_t>(S) * S);
      for (int64_t bh = lo; bh < hi; ++bh) {
        const int b = static_cast<int>(bh / H), h = static_cast<int>(bh % H);
        const int64_t base = a.Base(b, h);
        HeadScores(a, q, k, base, p.data());
        for (int qi = 0; qi < S; ++qi) {
          T* row = p.data() + static_cast<size_t>(qi) * S;
          T mx = -std::numeric_limits<T>::infinity();
          for (int kk = 0; kk < S; ++kk) {
            if (!a.Masked(b, qi, kk)) mx = std::max(mx, scale * row[kk]);
          }
          T* l = lse + bh * S + qi;
          if (mx == -std::numeric_limits<T>::infinity()) {  // every key masked
            *l = std::numeric_limits<T>::infinity();
            std::fill(row, row + S, T(0));
            continue;
          }
          double sum = 0;
          for (int kk = 0; kk < S; ++kk) {
            if (!a.Masked(b, qi, kk)) sum += std::exp(static_cast<double>(scale * row[kk] - mx));
          }
          *l = mx + static_cast<T>(std::log(sum));
          for (int kk = 0; kk < S; ++kk) {
            row[kk] = a.Masked(b, qi, kk) ? T(0) : cpu_math::Exp(scale * row[kk] - *l);
          }
          a.Drop(row, bh, qi);
        }
        cpu_blas::Gemm(Trans::kNo, Trans::kNo, S, D, S, T(1), p.data(), S, v + base, ld, T(0),
                       out + base, ld);
      }
    });
  });
}

template <typename T>
void CpuOps<T>::AttentionBackward(const T* q, const T* k, const T* v, const T* out, const T* dout,
                                  const T* lse, int B, int S, int H, int D, T scale,
                                  const int32_t* segments, bool causal, float dropout_rate,
                                  const DropoutKey& key, T* dq, T* dk, T* dv, T* delta) {
  if (B <= 0 || S <= 0 || H <= 0 || D <= 0) return;
  const AttentionShape<T> a{B, S, H, D, scale, segments, causal, dropout_rate, key};
  const int ld = static_cast<int>(a.ld());
  // delta[(b * H + h) * S + s] = sum_j dout * out over that query's head slice.
  pool_.ParallelFor(int64_t{B} * S * H, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {  // t = (b * S + s) * H + h, the token-major order
      const int64_t h = t % H, bs = t / H, b = bs / S, s = bs % S;
      double acc = 0;
      for (int j = 0; j < D; ++j) {
        acc += static_cast<double>(dout[t * D + j]) * static_cast<double>(out[t * D + j]);
      }
      delta[(b * H + h) * S + s] = static_cast<T>(acc);
    }
  });
  cpu_blas::WithSingleThreadedBlas([&] {
    pool_.ParallelFor(int64_t{B} * H, 1, [&](int64_t lo, int64_t hi) {
      const size_t block = static_cast<size_t>(S) * S;
      std::vector<T> p(block), dropped(block), dp(block);
      for (int64_t bh = lo; bh < hi; ++bh) {
        const int b = static_cast<int>(bh / H), h = static_cast<int>(bh % H);
        const int64_t base = a.Base(b, h);
        HeadScores(a, q, k, base, p.data());
        for (int qi = 0; qi < S; ++qi) {
          T* row = p.data() + static_cast<size_t>(qi) * S;
          const T l = lse[bh * S + qi];
          for (int kk = 0; kk < S; ++kk) {
            row[kk] = a.Masked(b, qi, kk) ? T(0) : cpu_math::Exp(scale * row[kk] - l);
          }
          std::copy(row, row + S, dropped.data() + static_cast<size_t>(qi) * S);
          a.Drop(dropped.data() + static_cast<size_t>(qi) * S, bh, qi);
        }
        // dV = dropout(P)^T dO; dP = dropout(dO V^T).
        cpu_blas::Gemm(Trans::kYes, Trans::kNo, S, D, S, T(1), dropped.data(), S, dout + base, ld,
                       T(0), dv + base, ld);
        cpu_blas::Gemm(Trans::kNo, Trans::kYes, S, S, D, T(1), dout + base, ld, v + base, ld, T(0),
                       dp.data(), S);
        for (int qi = 0; qi < S; ++qi) {
          T* dprow = dp.data() + static_cast<size_t>(qi) * S;
          const T* prow = p.data() + static_cast<size_t>(qi) * S;
          a.Drop(dprow, bh, qi);
          const T d = delta[bh * S + qi];
          for (int kk = 0; kk < S; ++kk) dprow[kk] = scale * prow[kk] * (dprow[kk] - d);
        }
        // dQ = dS K, dK = dS^T Q.
        cpu_blas::Gemm(Trans::kNo, Trans::kNo, S, D, S, T(1), dp.data(), S, k + base, ld, T(0),
                       dq + base, ld);
        cpu_blas::Gemm(Trans::kYes, Trans::kNo, S, D, S, T(1), dp.data(), S, q + base, ld, T(0),
                       dk + base, ld);
      }
    });
  });
}

#define HR_INSTANTIATE(T)                                                                        \
  template void CpuOps<T>::AttentionForward(const T*, const T*, const T*, int, int, int, int, T, \
                                            const int32_t*, bool, float, const DropoutKey&, T*,  \
                                            T*);                                                 \
  template void CpuOps<T>::AttentionBackward(const T*, const T*, const T*, const T*, const T*,   \
                                             const T*, int, int, int, int, T, const int32_t*,    \
                                             bool, float, const DropoutKey&, T*, T*, T*, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
