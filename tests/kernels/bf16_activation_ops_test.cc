// Bf16ActivationOps (kernels/bf16_activation_ops.h), op by op on inputs that are NOT bf16
// values: activation outputs are the plain fp32 op's outputs rounded to bf16 (ties to even),
// statistics and parameter gradients are the plain op's bit for bit, GEMM operands are read as
// bf16 (a float64 product of the rounded operands is the reference), the bias enters before
// the output's rounding, and the residual option keeps Add's output in fp32.
#include "kernels/bf16_activation_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/bf16.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/kernels/bf16_test_util.h"

namespace headroom {
namespace {

using testing_util::AllBf16;
using testing_util::Rounded;
using testing_util::Values;

class Bf16ActivationOpsTest : public ::testing::Test {
 protected:
  CpuOps<float> cpu_{1};
  std::unique_ptr<Bf16ActivationOps> twin_ = Bf16ActivationOps::Create(&cpu_).value();
};

TEST_F(Bf16ActivationOpsTest, GemmReadsBf16OperandsAndStoresBf16) {
  const int M = 5, N = 7, K = 33;
  const std::vector<float> a = Values(M * K, 1), b = Values(K * N, 2);
  std::vector<float> c(M * N);
  twin_->Gemm(Trans::kNo, Trans::kNo, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
  ASSERT_TRUE(AllBf16(c));
  const std::vector<float> ra = Rounded(a), rb = Rounded(b);
  int differs_from_unrounded_operands = 0;
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double want = 0, unrounded = 0;
      for (int k = 0; k < K; ++k) {
        want += static_cast<double>(ra[i * K + k]) * rb[k * N + j];
        unrounded += static_cast<double>(a[i * K + k]) * b[k * N + j];
      }
      // One bf16 rounding of an fp32-accumulated product: within an ulp (2^-7 relative).
      EXPECT_NEAR(c[i * N + j], want, std::ldexp(std::fabs(want), -7) + 1e-6) << i << "," << j;
      if (RoundToBf16(static_cast<float>(unrounded)) != c[i * N + j]) {
        ++differs_from_unrounded_operands;
      }
    }
  }
  EXPECT_GT(differs_from_unrounded_operands, 0) << "the operands were not read as bf16";
}

// The bias is read through the mirror, as the weights (bf16, cuBLASLt's bias epilogue takes D's
// type), and added before the one rounding of the output.
TEST_F(Bf16ActivationOpsTest, LinearAddsTheMirroredBiasBeforeRoundingAndKeepsWeightGradientsFp32) {
  const int rows = 4, out = 6, in = 9;
  const std::vector<float> x = Values(rows * in, 3), w = Values(out * in, 4),
                           bias = Values(out, 5, 100.0f);  // large: rounding after it shows
  std::vector<float> y(rows * out), plain(rows * out);
  twin_->Linear(x.data(), w.data(), bias.data(), rows, out, in, y.data());
  const std::vector<float> rx = Rounded(x), rw = Rounded(w), rbias = Rounded(bias);
  ASSERT_NE(rbias, bias);
  cpu_.Linear(rx.data(), rw.data(), rbias.data(), rows, out, in, plain.data());
  EXPECT_EQ(y, Rounded(plain));
  // Not the fp32 bias, nor the product rounded before the bias is added.
  std::vector<float> fp32_bias(rows * out), product(rows * out);
  cpu_.Linear(rx.data(), rw.data(), bias.data(), rows, out, in, fp32_bias.data());
  EXPECT_NE(y, Rounded(fp32_bias));
  cpu_.Linear(rx.data(), rw.data(), nullptr, rows, out, in, product.data());
  std::vector<float> twice = Rounded(product);
  for (int r = 0; r < rows; ++r) {
    for (int o = 0; o < out; ++o) twice[r * out + o] += rbias[o];
  }
  EXPECT_NE(y, Rounded(twice));

  // dw and dbias accumulate in fp32 onto non-bf16 values, from bf16-read dy and x.
  const std::vector<float> dy = Values(rows * out, 6);
  std::vector<float> dw = Values(out * in, 7), db = Values(out, 8);
  std::vector<float> want_dw = dw, want_db = db;
  twin_->LinearBackwardWeights(dy.data(), x.data(), rows, out, in, dw.data(), db.data());
  const std::vector<float> rdy = Rounded(dy);
  cpu_.LinearBackwardWeights(rdy.data(), rx.data(), rows, out, in, want_dw.data(), want_db.data());
  EXPECT_EQ(dw, want_dw);
  EXPECT_EQ(db, want_db);
  EXPECT_FALSE(AllBf16(dw));
}

TEST_F(Bf16ActivationOpsTest, LayerNormRoundsOutputsNotStatisticsOrParameterGradients) {
  const int rows = 3, cols = 40;
  const std::vector<float> x = Rounded(Values(rows * cols, 9)), gamma = Values(cols, 10),
                           beta = Values(cols, 11), dy = Rounded(Values(rows * cols, 12));
  std::vector<float> y(rows * cols), mean(rows), rstd(rows);
  std::vector<float> py(rows * cols), pmean(rows), prstd(rows);
  twin_->LayerNormForward(x.data(), gamma.data(), beta.data(), rows, cols, 1e-6f, y.data(),
                          mean.data(), rstd.data());
  cpu_.LayerNormForward(x.data(), gamma.data(), beta.data(), rows, cols, 1e-6f, py.data(),
                        pmean.data(), prstd.data());
  EXPECT_EQ(y, Rounded(py));
  EXPECT_EQ(mean, pmean);
  EXPECT_EQ(rstd, prstd);
  EXPECT_FALSE(AllBf16(rstd));

  std::vector<float> dx(rows * cols), dg(cols), dbeta(cols);
  std::vector<float> pdx(rows * cols), pdg(cols), pdbeta(cols);
  twin_->LayerNormBackward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), rows, cols,
                           dx.data(), dg.data(), dbeta.data());
  cpu_.LayerNormBackward(dy.data(), x.data(), gamma.data(), pmean.data(), prstd.data(), rows, cols,
                         pdx.data(), pdg.data(), pdbeta.data());
  EXPECT_EQ(dx, Rounded(pdx));
  EXPECT_EQ(dg, pdg);
  EXPECT_EQ(dbeta, pdbeta);
}

TEST_F(Bf16ActivationOpsTest, FusedAttentionRoundsOutputsAndKeepsTheLogSumExp) {
  const int B = 1, S = 6, H = 2, D = 4, n = B * S * H * D;
  const std::vector<float> q = Rounded(Values(n, 13)), k = Rounded(Values(n, 14)),
                           v = Rounded(Values(n, 15));
  std::vector<float> out(n), lse(B * H * S), pout(n), plse(B * H * S);
  const DropoutKey key{.seed = 1, .step = 2};
  EXPECT_TRUE(twin_->PrefersFusedAttention(D));
  twin_->AttentionForward(q.data(), k.data(), v.data(), B, S, H, D, 0.5f, nullptr, true, 0.2f, key,
                          out.data(), lse.data());
  cpu_.AttentionForward(q.data(), k.data(), v.data(), B, S, H, D, 0.5f, nullptr, true, 0.2f, key,
                        pout.data(), plse.data());
  EXPECT_EQ(out, Rounded(pout));
  EXPECT_EQ(lse, plse);
}

TEST_F(Bf16ActivationOpsTest, CrossEntropyKeepsLossesAndRoundsTheLogitGradient) {
  const int rows = 3, V = 10, ld = 16;
  std::vector<float> logits = Rounded(Values(rows * ld, 16)), plogits = logits;
  const std::vector<int32_t> labels = {2, -1, 9};
  std::vector<float> losses(rows), plosses(rows);
  twin_->LabelSmoothedCrossEntropy(logits.data(), labels.data(), nullptr, rows, V, ld, 0.1f,
                                   losses.data(), logits.data(), 0.5f);
  cpu_.LabelSmoothedCrossEntropy(plogits.data(), labels.data(), nullptr, rows, V, ld, 0.1f,
                                 plosses.data(), plogits.data(), 0.5f);
  EXPECT_EQ(losses, plosses);
  EXPECT_EQ(logits, Rounded(plogits));
}

TEST_F(Bf16ActivationOpsTest, TheResidualOptionDecidesAddsRounding) {
  const int64_t n = 64;
  const std::vector<float> a = Rounded(Values(n, 17)), b = Rounded(Values(n, 18, 1e-3f));
  std::vector<float> sum(n), plain(n);
  cpu_.Add(a.data(), b.data(), plain.data(), n);
  ASSERT_FALSE(AllBf16(plain));
  twin_->Add(a.data(), b.data(), sum.data(), n);  // default: fp32 residual
  EXPECT_EQ(sum, plain);
  auto bf16_stream = Bf16ActivationOps::Create(&cpu_, {.fp32_residual = false}).value();
  bf16_stream->Add(a.data(), b.data(), sum.data(), n);
  EXPECT_EQ(sum, Rounded(plain));
}

TEST_F(Bf16ActivationOpsTest, ScatterAddRoundsOnlyTheRowsItWrites) {
  const int d = 8;
  const std::vector<float> src = Rounded(Values(2 * d, 19));
  std::vector<float> dst = Values(4 * d, 20);  // rows 1 and 3 are not written
  const std::vector<float> before = dst;
  const std::vector<int32_t> idx = {2, 0};
  twin_->ScatterAddRows(src.data(), idx.data(), 2, d, dst.data());
  for (int j = 0; j < d; ++j) {
    EXPECT_EQ(dst[2 * d + j], RoundToBf16(before[2 * d + j] + src[j]));
    EXPECT_EQ(dst[0 * d + j], RoundToBf16(before[0 * d + j] + src[d + j]));
    EXPECT_EQ(dst[1 * d + j], before[1 * d + j]);
    EXPECT_EQ(dst[3 * d + j], before[3 * d + j]);
  }
}

TEST_F(Bf16ActivationOpsTest, RefusesABackendThatIsNotTheCpu) {
  testing_util::NotCpuOps gpu(&cpu_);
  absl::StatusOr<std::unique_ptr<Bf16ActivationOps>> twin = Bf16ActivationOps::Create(&gpu);
  ASSERT_FALSE(twin.ok());
  EXPECT_EQ(twin.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace headroom
