// Float64 references shared by the op tests and the CUDA-emulation tests: the dropout mask as
// kernels/philox.h defines it (from the raw generator, not DropoutWords), the attention mask of
// kernels/ops.h (padding, packed segments, causal) and fused attention
// (Ops::AttentionForward / AttentionBackward) straight from its definition.
#ifndef HEADROOM_TESTS_KERNELS_ATTENTION_REFERENCE_H_
#define HEADROOM_TESTS_KERNELS_ATTENTION_REFERENCE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/ops.h"
#include "kernels/philox.h"

namespace headroom::testing_util {

// The mask as kernels/philox.h documents it, built here from the raw generator (which
// PhiloxTest checks against Random123's known answers), not from DropoutWords.
inline bool RefKeep(const DropoutKey& key, int64_t i, float rate) {
  const uint64_t group = static_cast<uint64_t>(i) >> 2;
  Philox4x32 ctr{{static_cast<uint32_t>(group & 0xFFFFFFFFu), static_cast<uint32_t>(group >> 32),
                  (key.layer << 8) | key.site, static_cast<uint32_t>(key.step & 0xFFFFFFFFu)}};
  const Philox4x32 out =
      Philox4x32_10(ctr, static_cast<uint32_t>(key.seed & 0xFFFFFFFFu),
                    static_cast<uint32_t>(key.seed >> 32) ^ static_cast<uint32_t>(key.step >> 32));
  const double threshold = std::floor(static_cast<double>(rate) * 4294967296.0);
  return static_cast<double>(out.v[i & 3]) >= threshold;
}

// Whether key k is visible to query q (kernels/ops.h) given their segment ids (0 = padding).
inline bool RefVisible(int32_t query_segment, int32_t key_segment, bool causal, int q, int k) {
  if (causal && k > q) return false;
  return key_segment != 0 && (query_segment == 0 || key_segment == query_segment);
}

// Segment ids of B packed rows of S tokens: runs of lengths 3, 1, 9, 64, 2, 30, ... (crossing
// the CUDA kernels' 64-token tiles), rotated per row, and a padding tail (ids 0) of 2 * b
// tokens in row b. Ids count 1, 2, ... within each row.
inline std::vector<int32_t> PackedSegments(int B, int S) {
  const int lengths[] = {3, 1, 9, 64, 2, 30, 5, 70};
  std::vector<int32_t> seg(static_cast<size_t>(B) * S, 0);
  for (int b = 0; b < B; ++b) {
    const int real = std::max(1, S - 2 * b);
    int s = 0, id = 0, i = b;
    while (s < real) {
      ++id;
      const int n = std::min(lengths[i++ % 8], real - s);
      for (int j = 0; j < n; ++j) seg[static_cast<size_t>(b) * S + s++] = id;
    }
  }
  return seg;
}

// Token-major attention in double, straight from the definition (kernels/ops.h): per (b, h, q)
// the masked scaled scores, their softmax, the Philox dropout mask of RefKeep, and the weighted
// sum of values; backward by the chain rule through the same steps.
struct RefAttention {
  int B, S, H, D;
  double scale;
  const std::vector<int32_t>* segments;  // [B * S] or nullptr
  bool causal;
  float rate;
  DropoutKey key;

  size_t At(int b, int s, int h, int j) const {
    return ((static_cast<size_t>(b) * S + s) * H + h) * D + j;
  }
  bool Masked(int b, int q, int k) const {
    if (segments == nullptr) return causal && k > q;
    return !RefVisible((*segments)[b * S + q], (*segments)[b * S + k], causal, q, k);
  }
  double Keep(int b, int h, int q, int k) const {
    if (rate <= 0) return 1;
    const int64_t i = ((static_cast<int64_t>(b) * H + h) * S + q) * S + k;
    return RefKeep(key, i, rate) ? 1 / (1 - static_cast<double>(rate)) : 0;
  }
  // Probabilities of query q of head (b, h) (all zero when every key is masked) and its lse.
  std::vector<double> Probs(const std::vector<double>& q, const std::vector<double>& k, int b,
                            int h, int qi, double* lse) const {
    std::vector<double> s(S, 0.0);
    double mx = -INFINITY;
    for (int kk = 0; kk < S; ++kk) {
      if (Masked(b, qi, kk)) continue;
      double dot = 0;
      for (int j = 0; j < D; ++j) dot += q[At(b, qi, h, j)] * k[At(b, kk, h, j)];
      s[kk] = scale * dot;
      mx = std::max(mx, s[kk]);
    }
    std::vector<double> p(S, 0.0);
    if (mx == -INFINITY) {
      *lse = INFINITY;
      return p;
    }
    double sum = 0;
    for (int kk = 0; kk < S; ++kk) {
      if (!Masked(b, qi, kk)) sum += std::exp(s[kk] - mx);
    }
    *lse = mx + std::log(sum);
    for (int kk = 0; kk < S; ++kk) p[kk] = Masked(b, qi, kk) ? 0 : std::exp(s[kk] - *lse);
    return p;
  }
  void Forward(const std::vector<double>& q, const std::vector<double>& k,
               const std::vector<double>& v, std::vector<double>* out,
               std::vector<double>* lse) const {
    out->assign(q.size(), 0.0);
    lse->assign(static_cast<size_t>(B) * H * S, 0.0);
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        for (int qi = 0; qi < S; ++qi) {
          const std::vector<double> p =
              Probs(q, k, b, h, qi, &(*lse)[(static_cast<size_t>(b) * H + h) * S + qi]);
          for (int kk = 0; kk < S; ++kk) {
            const double w = p[kk] * Keep(b, h, qi, kk);
            for (int j = 0; j < D; ++j) (*out)[At(b, qi, h, j)] += w * v[At(b, kk, h, j)];
          }
        }
      }
    }
  }
  // The gradient of the scores of query qi of head (b, h), dS = scale * P * (dP - sum(P * dP))
  // with dP = d loss / d P through the dropout mask (0 where masked), and its probabilities P.
  std::vector<double> ScoreGradients(const std::vector<double>& q, const std::vector<double>& k,
                                     const std::vector<double>& v, const std::vector<double>& dout,
                                     int b, int h, int qi, std::vector<double>* p) const {
    double lse;
    *p = Probs(q, k, b, h, qi, &lse);
    std::vector<double> dp(S, 0.0);
    for (int kk = 0; kk < S; ++kk) {
      double dpd = 0;
      for (int j = 0; j < D; ++j) dpd += dout[At(b, qi, h, j)] * v[At(b, kk, h, j)];
      dp[kk] = dpd * Keep(b, h, qi, kk);
    }
    double dot = 0;
    for (int kk = 0; kk < S; ++kk) dot += (*p)[kk] * dp[kk];
    std::vector<double> ds(S);
    for (int kk = 0; kk < S; ++kk) ds[kk] = scale * (*p)[kk] * (dp[kk] - dot);
    return ds;
  }
  void Backward(const std::vector<double>& q, const std::vector<double>& k,
                const std::vector<double>& v, const std::vector<double>& dout,
                std::vector<double>* dq, std::vector<double>* dk, std::vector<double>* dv) const {
    dq->assign(q.size(), 0.0);
    dk->assign(q.size(), 0.0);
    dv->assign(q.size(), 0.0);
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        for (int qi = 0; qi < S; ++qi) {
          std::vector<double> p;
          const std::vector<double> ds = ScoreGradients(q, k, v, dout, b, h, qi, &p);
          for (int kk = 0; kk < S; ++kk) {
            const double keep = Keep(b, h, qi, kk);
            for (int j = 0; j < D; ++j) {
              (*dv)[At(b, kk, h, j)] += p[kk] * keep * dout[At(b, qi, h, j)];
              (*dq)[At(b, qi, h, j)] += ds[kk] * k[At(b, kk, h, j)];
              (*dk)[At(b, kk, h, j)] += ds[kk] * q[At(b, qi, h, j)];
            }
          }
        }
      }
    }
  }
};

}  // namespace headroom::testing_util

#endif  // HEADROOM_TESTS_KERNELS_ATTENTION_REFERENCE_H_
