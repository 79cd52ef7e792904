// The rank demo against what the theory predicts: the analytic gradient against central finite
// differences, the lower bound against its definition, and the error pattern of Theorem 1
// (reachable for d_p >= n, bounded away from zero for d_p <= n - 2) on an n = 8 instance.
#include "analysis/rank_demo.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace headroom {
namespace {

TEST(RankDemoTest, ProblemIsPositiveColumnStochasticAndDeterministic) {
  const RankDemoProblem p = MakeRankDemoProblem(8, 16, 2.0, 7);
  ASSERT_EQ(p.x.size(), 16u * 8);
  ASSERT_EQ(p.target.size(), 64u);
  for (int j = 0; j < 8; ++j) {
    double sum = 0;
    for (int i = 0; i < 8; ++i) {
      EXPECT_GT(p.target[i * 8 + j], 0);
      sum += p.target[i * 8 + j];
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
  EXPECT_EQ(MakeRankDemoProblem(8, 16, 2.0, 7).target, p.target);
  EXPECT_NE(MakeRankDemoProblem(8, 16, 2.0, 8).target, p.target);
}

TEST(RankDemoTest, LossIsZeroExactlyWhenTheHeadProducesTheTarget) {
  // Build a target the head reproduces by construction: P = softmax_columns(L) of the head's
  // own logits (any weights). Its loss is 0; a different P gives a positive loss.
  RankDemoProblem p = MakeRankDemoProblem(6, 8, 1.0, 3);
  const int dp = 3;
  std::vector<double> wk(dp * p.d), wq(dp * p.d);
  for (size_t i = 0; i < wk.size(); ++i) {
    wk[i] = std::sin(1.3 * i + 0.2);
    wq[i] = std::cos(0.7 * i - 0.4);
  }
  std::vector<double> probs;
  EXPECT_GT(HeadLoss(p, dp, wk.data(), wq.data(), nullptr, nullptr, &probs), 1e-3);
  p.target = probs;
  EXPECT_NEAR(HeadLoss(p, dp, wk.data(), wq.data(), nullptr, nullptr, nullptr), 0.0, 1e-13);
}

TEST(RankDemoTest, AnalyticGradientMatchesCentralDifferences) {
  const RankDemoProblem p = MakeRankDemoProblem(5, 7, 1.5, 11);
  for (int dp : {1, 3, 6}) {
    std::vector<double> wk(dp * p.d), wq(dp * p.d), gk(wk.size()), gq(wq.size());
    for (size_t i = 0; i < wk.size(); ++i) {
      wk[i] = 0.8 * std::sin(2.1 * i + dp);
      wq[i] = 0.8 * std::cos(1.7 * i - dp);
    }
    HeadLoss(p, dp, wk.data(), wq.data(), gk.data(), gq.data(), nullptr);
    const double h = 1e-6;
    for (std::vector<double>* w : {&wk, &wq}) {
      const std::vector<double>& g = (w == &wk) ? gk : gq;
      for (size_t i = 0; i < w->size(); ++i) {
        const double saved = (*w)[i];
        (*w)[i] = saved + h;
        const double up = HeadLoss(p, dp, wk.data(), wq.data(), nullptr, nullptr, nullptr);
        (*w)[i] = saved - h;
        const double down = HeadLoss(p, dp, wk.data(), wq.data(), nullptr, nullptr, nullptr);
        (*w)[i] = saved;
        const double fd = (up - down) / (2 * h);
        EXPECT_NEAR(g[i], fd, 1e-7 + 1e-6 * std::fabs(fd)) << "d_p=" << dp << " i=" << i;
      }
    }
  }
}

TEST(RankDemoTest, LowerBoundIsZeroFromNMinusOneAndPositiveBelow) {
  const RankDemoProblem p = MakeRankDemoProblem(8, 16, 2.0, 1);
  double previous = 1e300;
  for (int dp = 1; dp <= 16; ++dp) {
    const double b = ReachabilityLowerBound(p, dp).value();
    if (dp >= 7) {
      EXPECT_EQ(b, 0.0) << dp;
    } else {
      EXPECT_GT(b, 0.0) << dp;
      EXPECT_LE(b, previous) << dp;  // a larger head can only do better
    }
    previous = b;
  }
}

// The bound's value on a target whose log has a hand-computable spectrum: P = a on the diagonal
// and b = (1 - a) / (n - 1) elsewhere (column-stochastic, positive). log P = log(b) J +
// log(a / b) I, symmetric with eigenvalues log(a / b) + n log(b) (once, along the ones vector)
// and log(a / b) (n - 1 times). For a = 1/2, n = 8 the first is |log 7 - 8 log 14| = 19.2 >
// log 7, so beyond the best rank-(d_p + 1) fit there remain n - 1 - d_p singular values log 7:
// tail = log(7) sqrt(7 - d_p), and the bound is min(P) tail / (n + tail) with min(P) = 1/14.
TEST(RankDemoTest, LowerBoundEqualsItsClosedFormOnATwoValueTarget) {
  const int n = 8;
  RankDemoProblem p = MakeRankDemoProblem(n, 2 * n, 1.0, 1);
  const double a = 0.5, b = (1 - a) / (n - 1);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) p.target[i * n + j] = i == j ? a : b;
  }
  for (int dp = 1; dp <= n; ++dp) {
    const double tail = dp >= n - 1 ? 0.0 : std::log(a / b) * std::sqrt(n - 1.0 - dp);
    const double want = b * tail / (n + tail);
    EXPECT_NEAR(ReachabilityLowerBound(p, dp).value(), want, 1e-12 * (1 + want)) << "d_p=" << dp;
  }
  // d_p = 1 by hand: tail = log(7) sqrt(6) = 4.7665, bound = (1/14) 4.7665 / 12.7665 = 0.026669.
  EXPECT_NEAR(ReachabilityLowerBound(p, 1).value(), 0.026669, 1e-6);
}

// Theorem 1 on n = 8: heads of size >= n - 1 fit P to below 1e-3 (in practice to ~1e-8); heads
// of size <= n - 2 cannot (the lower bound is positive) and in practice stay far above that.
TEST(RankDemoTest, ErrorVanishesOnlyFromHeadSizeNMinusOne) {
  RankDemoOptions o;
  o.n = 8;
  o.seed = 1;
  o.head_sizes = {1, 2, 4, 6, 7, 8, 16};
  const std::vector<RankDemoRow> rows = FitRankDemo(o).value();
  ASSERT_EQ(rows.size(), o.head_sizes.size());
  for (const RankDemoRow& r : rows) {
    SCOPED_TRACE(testing::Message() << "d_p=" << r.head_size << " err=" << r.max_abs_error
                                    << " bound=" << r.lower_bound);
    // No optimiser beats the theorem's bound.
    EXPECT_GE(r.max_abs_error, r.lower_bound);
    if (r.head_size >= o.n - 1) {  // n - 1 suffices: softmax ignores a constant per column
      EXPECT_LT(r.max_abs_error, 1e-3);
      EXPECT_EQ(r.lower_bound, 0.0);
    }
    if (r.head_size <= o.n - 2) {
      EXPECT_GT(r.lower_bound, 0.0);
      EXPECT_GT(r.max_abs_error, 1e-2);  // "clearly above zero": 10x the reachable threshold
    }
  }
}

TEST(RankDemoTest, RejectsBadOptions) {
  RankDemoOptions o;
  o.n = 8;
  o.d = 4;
  EXPECT_FALSE(FitRankDemo(o).ok());
  o.d = 0;
  o.head_sizes = {0};
  EXPECT_FALSE(FitRankDemo(o).ok());
}

}  // namespace
}  // namespace headroom
