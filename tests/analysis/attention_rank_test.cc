// Attention rank diagnostics against independent references: logits matrices built with known
// singular values and known softmax entropies, a one-layer model whose layer input is
// recomputed here from the embedding equations, and the paper's bound: a standard head's logits
// (d_p = d / h) never have rank above d_p, while a fixed head size head can go past d / h.
#include "analysis/attention_rank.h"

#include <cmath>
#include <random>
#include <vector>

#include "analysis/linalg.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

// S x S matrix sum_k s_k u_k v_k^T with orthonormal u, v (Gram-Schmidt of Gaussian vectors).
std::vector<double> KnownSpectrum(int S, const std::vector<double>& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  auto basis = [&]() {
    std::vector<std::vector<double>> b(s.size(), std::vector<double>(S));
    for (size_t r = 0; r < b.size(); ++r) {
      for (double& v : b[r]) v = normal(rng);
      for (size_t k = 0; k < r; ++k) {
        double dot = 0;
        for (int i = 0; i < S; ++i) dot += b[r][i] * b[k][i];
        for (int i = 0; i < S; ++i) b[r][i] -= dot * b[k][i];
      }
      double nn = 0;
      for (double v : b[r]) nn += v * v;
      for (double& v : b[r]) v /= std::sqrt(nn);
    }
    return b;
  };
  const auto u = basis(), v = basis();
  std::vector<double> a(static_cast<size_t>(S) * S, 0.0);
  for (size_t k = 0; k < s.size(); ++k) {
    for (int i = 0; i < S; ++i) {
      for (int j = 0; j < S; ++j) a[i * S + j] += s[k] * u[k][i] * v[k][j];
    }
  }
  return a;
}

TEST(AnalyzeLogitsTest, RankAndStableRankOfAKnownSpectrum) {
  const std::vector<double> s = {6.0, 3.0, 2.0, 0.5};
  const std::vector<double> a = KnownSpectrum(10, s, 5);
  const LogitsStats st = AnalyzeLogits(a.data(), 10, /*causal=*/false, 1e-6).value();
  EXPECT_EQ(st.rank, 4);
  EXPECT_NEAR(st.stable_rank, (36.0 + 9.0 + 4.0 + 0.25) / 36.0, 1e-10);
  // A threshold between 0.5/6 and 2/6 drops the smallest direction.
  EXPECT_EQ(AnalyzeLogits(a.data(), 10, false, 0.1).value().rank, 3);
}

TEST(AnalyzeLogitsTest, EntropyOfUniformAndOneHotRows) {
  const int S = 6;
  std::vector<double> zero(S * S, 0.0);
  // Uniform attention: log(S) per row; causal: row q sees q + 1 keys.
  EXPECT_NEAR(AnalyzeLogits(zero.data(), S, false, 1e-6).value().entropy, std::log(6.0), 1e-12);
  double causal = 0;
  for (int q = 0; q < S; ++q) causal += std::log(q + 1.0) / S;
  EXPECT_NEAR(AnalyzeLogits(zero.data(), S, true, 1e-6).value().entropy, causal, 1e-12);
  // A huge diagonal: one-hot rows, entropy ~0.
  std::vector<double> diag(S * S, 0.0);
  for (int i = 0; i < S; ++i) diag[i * S + i] = 200;
  EXPECT_NEAR(AnalyzeLogits(diag.data(), S, false, 1e-6).value().entropy, 0.0, 1e-12);
  // Two keys with logits 0 and log 3: p = (1/4, 3/4).
  std::vector<double> two = {0, std::log(3.0), 0, std::log(3.0)};
  const double h = -(0.25 * std::log(0.25) + 0.75 * std::log(0.75));
  EXPECT_NEAR(AnalyzeLogits(two.data(), 2, false, 1e-6).value().entropy, h, 1e-12);
}

// The layer-0 input of a causal LM, from the embedding equations (independent of the model):
// x_s = LayerNorm(E_tok[shift_right(targets)_s] + E_pos[s]).
std::vector<double> EmbeddingOutput(const ModelConfig& m, const ParameterLayout& layout,
                                    const std::vector<double>& w, const Batch& batch, int b) {
  const int S = batch.seq_length, d = m.d_model();
  auto W = [&](const std::string& n) { return w.data() + layout.Get("lm." + n).offset; };
  std::vector<double> x(static_cast<size_t>(S) * d);
  for (int s = 0; s < S; ++s) {
    const int id = s == 0 ? 0 : batch.targets[b * S + s - 1];
    double mean = 0, var = 0;
    for (int j = 0; j < d; ++j) {
      x[s * d + j] = W("embeddings.word_embeddings.weight")[id * d + j] +
                     W("embeddings.position_embeddings.weight")[s * d + j];
      mean += x[s * d + j] / d;
    }
    for (int j = 0; j < d; ++j) var += (x[s * d + j] - mean) * (x[s * d + j] - mean) / d;
    for (int j = 0; j < d; ++j) {
      x[s * d + j] = (x[s * d + j] - mean) / std::sqrt(var + m.layer_norm_epsilon()) *
                         W("embeddings.LayerNorm.weight")[j] +
                     W("embeddings.LayerNorm.bias")[j];
    }
  }
  return x;
}

TEST(AttentionRankDiagnosticsTest, MatchesLogitsComputedFromTheEquations) {
  const ModelConfig m = testing::TinyLm(/*layers=*/1, /*d=*/8, /*heads=*/2, /*head_size=*/3, 16);
  const ParameterLayout layout = ParameterLayout::ForModel(m);
  const std::vector<double> w = testing::RandomParameters(layout, 0.5, 3);
  CpuOps<double> ops(1);
  auto model = Model<double>::Create(m, &ops, {2, 8, 0}).value();
  model->SetParameters(w);
  const Batch batch = RandomBatch(m, 2, 8, 0, 9);
  const std::vector<HeadRankStats> got = AttentionRankDiagnostics(model.get(), batch).value();
  ASSERT_EQ(got.size(), 2u);
  const int d = 8, dp = 3, S = 8;
  auto W = [&](const std::string& n) {
    return w.data() + layout.Get("lm.encoder.layer.0.attention.self." + n).offset;
  };
  for (int h = 0; h < 2; ++h) {
    double rank_mean = 0, stable = 0, entropy = 0;
    int rank_max = 0;
    for (int b = 0; b < 2; ++b) {
      const std::vector<double> x = EmbeddingOutput(m, layout, w, batch, b);
      std::vector<double> a(S * S, 0.0);
      for (int i = 0; i < S; ++i) {
        for (int j = 0; j < S; ++j) {
          double s = 0;
          for (int c = 0; c < dp; ++c) {
            const int o = h * dp + c;
            double qi = W("query.bias")[o], kj = W("key.bias")[o];
            for (int e = 0; e < d; ++e) {
              qi += x[i * d + e] * W("query.weight")[o * d + e];
              kj += x[j * d + e] * W("key.weight")[o * d + e];
            }
            s += qi * kj;
          }
          a[i * S + j] = s / std::sqrt(3.0);
        }
      }
      const LogitsStats ref = AnalyzeLogits(a.data(), S, /*causal=*/true, 1e-6).value();
      rank_max = std::max(rank_max, ref.rank);
      rank_mean += ref.rank / 2.0;
      stable += ref.stable_rank / 2.0;
      entropy += ref.entropy / 2.0;
    }
    EXPECT_EQ(got[h].layer, 0);
    EXPECT_EQ(got[h].head, h);
    EXPECT_EQ(got[h].head_size, dp);
    EXPECT_EQ(got[h].sequences, 2);
    EXPECT_EQ(got[h].tokens, S);
    EXPECT_EQ(got[h].rank_max, rank_max);
    EXPECT_EQ(rank_max, dp);  // generic weights: exactly the head size
    EXPECT_NEAR(got[h].rank_mean, rank_mean, 1e-12);
    EXPECT_NEAR(got[h].stable_rank_mean, stable, 1e-9);
    EXPECT_NEAR(got[h].entropy_mean, entropy, 1e-9);
  }
}

// The paper's bottleneck in the logged values: rank <= d_p = d / h for standard heads, under
// both rank thresholds, in float (the trainer's precision) and double; a fixed head size of 8 on
// the same d = 8, h = 4 goes past d / h = 2.
template <typename T>
void CheckRanks(const ModelConfig& m, int max_allowed, int min_expected) {
  const ParameterLayout layout = ParameterLayout::ForModel(m);
  const std::vector<double> wd = testing::RandomParameters(layout, 0.5, 17);
  CpuOps<T> ops(1);
  auto model = Model<T>::Create(m, &ops, {3, 8, 4}).value();
  model->SetParameters(std::vector<T>(wd.begin(), wd.end()));
  const Batch batch = RandomBatch(m, 3, 8, 4, 21);
  for (double rtol : {1e-6, 0.0}) {
    AttentionRankOptions o;
    o.rank_rtol = rtol;
    const std::vector<HeadRankStats> st = AttentionRankDiagnostics(model.get(), batch, o).value();
    ASSERT_EQ(st.size(), static_cast<size_t>(m.num_layers() * m.num_heads()));
    int overall = 0;
    for (const HeadRankStats& s : st) {
      EXPECT_LE(s.rank_max, max_allowed) << "layer " << s.layer << " head " << s.head;
      EXPECT_GT(s.stable_rank_mean, 0.99);
      EXPECT_GT(s.entropy_mean, 0.0);
      overall = std::max(overall, s.rank_max);
    }
    EXPECT_GE(overall, min_expected);
  }
}

TEST(AttentionRankDiagnosticsTest, StandardHeadRankNeverExceedsHeadSize) {
  // d = 8, 4 heads: d_p = 2 < S = 8.
  CheckRanks<float>(testing::TinyLm(2, 8, 4, 0, 16), 2, 2);
  CheckRanks<double>(testing::TinyLm(2, 8, 4, 0, 16), 2, 2);
  CheckRanks<float>(testing::TinyBert(2, 8, 4, 0, 16), 2, 2);
}

TEST(AttentionRankDiagnosticsTest, FixedHeadSizeGoesPastDOverH) {
  CheckRanks<double>(testing::TinyLm(2, 8, 4, 8, 16), 8, 3);
  CheckRanks<float>(testing::TinyBert(2, 8, 4, 8, 16), 8, 3);
}

TEST(AttentionRankMetricsTest, NamesAndLayerSummaries) {
  std::vector<HeadRankStats> st(4);
  for (int i = 0; i < 4; ++i) {
    st[i].layer = i / 2;
    st[i].head = i % 2;
    st[i].rank_max = 1 + i;
    st[i].stable_rank_mean = 1.0 + i;
    st[i].entropy_mean = 0.5 * i;
  }
  const auto all = AttentionRankMetrics(st);
  ASSERT_EQ(all.size(), 4u * 3 + 2 * 3);
  EXPECT_EQ(all[0].first, "attention/l0/h0/rank");
  EXPECT_EQ(all[6].first, "attention/l0/rank_max");
  EXPECT_EQ(all[6].second, 2);
  EXPECT_EQ(all[7].first, "attention/l0/stable_rank");
  EXPECT_DOUBLE_EQ(all[7].second, 1.5);
  const auto layers = AttentionRankMetrics(st, /*per_head=*/false);
  ASSERT_EQ(layers.size(), 6u);
  EXPECT_EQ(layers[3].first, "attention/l1/rank_max");
  EXPECT_EQ(layers[3].second, 4);
  EXPECT_DOUBLE_EQ(layers[5].second, 0.5 * (1.0 + 1.5));
}

}  // namespace
}  // namespace headroom
