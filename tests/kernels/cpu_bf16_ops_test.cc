// CpuBf16Ops (kernels/cpu_bf16_ops.h), the CPU backend of Ops<float, Bf16>, op by op: on random
// bf16 inputs, each A overload's result, widened, equals bit for bit CpuOps<float> run on the
// widened inputs with exactly the outputs the op stores in A rounded to bf16 (ties to even), and
// T outputs equal the plain op's in fp32. Covers the in-place forms the contracts allow,
// accumulation into T, GEMMs with transposes and padded leading dimensions, and Convert against
// hand-computed roundings.
#include "kernels/cpu_bf16_ops.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
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

using Floats = std::vector<float>;
using Bf16s = std::vector<Bf16>;

Bf16s ToBf16(const Floats& v) {
  Bf16s b;
  for (float x : v) b.push_back(Bf16(x));
  return b;
}

Floats Widened(const Bf16s& b) {
  Floats v;
  for (Bf16 x : b) v.push_back(static_cast<float>(x));
  return v;
}

uint32_t Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// got == want bit for bit (so -0 differs from +0 and NaNs compare).
void ExpectSameBits(const Floats& got, const Floats& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (Bits(got[i]) != Bits(want[i]) && ++wrong <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(wrong, 0) << what;
}

// An A output: ours widened against the plain op's output rounded.
void ExpectRoundedFrom(const Bf16s& got, const Floats& plain, const char* what) {
  ExpectSameBits(Widened(got), Rounded(plain), what);
}

// Random bf16 values, in a Bf16 buffer and widened.
struct Bf16Data {
  Bf16s a;
  Floats f;
};

Bf16Data RandomBf16(int64_t n, uint64_t seed, float scale = 1.0f) {
  Bf16Data d{ToBf16(Values(n, seed, scale)), {}};
  d.f = Widened(d.a);
  return d;
}

class CpuBf16OpsTest : public ::testing::Test {
 protected:
  CpuOps<float> cpu_{1};
  std::unique_ptr<CpuBf16Ops> ops_ = CpuBf16Ops::Create(&cpu_).value();
  std::unique_ptr<CpuBf16Ops> fp32_gradients_ =
      CpuBf16Ops::Create(&cpu_, {}, ResidualGradientStores::kFp32).value();
};

TEST_F(CpuBf16OpsTest, ConvertRoundsToNearestEvenAndWidensExactly) {
  const float inf = std::numeric_limits<float>::infinity();
  // Hand-computed: bf16 keeps 7 mantissa bits, so near 1 its ulp is 2^-7.
  const Floats in = {1.0f + 0x1p-8f,             // halfway 1 .. 1+2^-7: to even, 1
                     1.0f + 3 * 0x1p-8f,         // halfway 1+2^-7 .. 1+2^-6: to even, 1+2^-6
                     1.0f + 0x1p-8f + 0x1p-20f,  // above halfway: up
                     -(1.0f + 0x1p-8f),          // the sign is kept: -1
                     std::numeric_limits<float>::max(),  // past the largest bf16 by > ulp/2
                     0x1p-133f * 3,                      // a subnormal, exact in bf16
                     -0.0f};
  const Floats want = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -1.0f, inf, 0x1p-133f * 3, -0.0f};
  Bf16s out(in.size());
  ops_->Convert(in.data(), out.data(), static_cast<int64_t>(in.size()));
  ExpectSameBits(Widened(out), want, "narrowed");
  EXPECT_EQ(out[0].bits(), 0x3F80);
  EXPECT_EQ(out[1].bits(), 0x3F82);

  const Bf16s bits = {Bf16::FromBits(0x3F81), Bf16::FromBits(0x8000), Bf16::FromBits(0xFF80),
                      Bf16::FromBits(0x0001)};
  Floats wide(bits.size());
  ops_->Convert(bits.data(), wide.data(), static_cast<int64_t>(bits.size()));
  ExpectSameBits(wide, {1.0f + 0x1p-7f, -0.0f, -inf, 0x1p-133f}, "widened");
}

TEST_F(CpuBf16OpsTest, ScaleInPlaceAndAddIntoTheResidualStream) {
  const int64_t n = 100;
  Bf16Data x = RandomBf16(n, 1);
  Floats plain = x.f;
  ops_->Scale(x.a.data(), n, 0.3f);
  cpu_.Scale(plain.data(), n, 0.3f);
  ExpectRoundedFrom(x.a, plain, "Scale");

  // out aliases a, the residual stream (fp32: not rounded).
  const Bf16Data b = RandomBf16(n, 2, 1e-3f);
  Floats a = Values(n, 3), want(n);
  cpu_.Add(a.data(), b.f.data(), want.data(), n);
  ops_->Add(a.data(), b.a.data(), a.data(), n);
  ExpectSameBits(a, want, "Add");
  EXPECT_FALSE(AllBf16(a));
}

// C [M, N] (ldc > N) of a product with both operands transposed and padded leading dimensions.
struct PaddedGemm {
  static constexpr int M = 5, N = 6, K = 7, lda = M + 3, ldb = K + 2, ldc = N + 4;
  Bf16Data a = RandomBf16((K - 1) * lda + M, 4);  // stored K x M
  Bf16Data b = RandomBf16((N - 1) * ldb + K, 5);  // stored N x K
  Floats c0 = Rounded(Values(M * ldc, 6));        // padding columns included

  // CpuOps' result on the widened operands, beta = 1 onto c0.
  Floats Plain(CpuOps<float>& cpu) const {
    Floats c = c0;
    cpu.Gemm(Trans::kYes, Trans::kYes, M, N, K, 0.5f, a.f.data(), lda, b.f.data(), ldb, 1.0f,
             c.data(), ldc);
    return c;
  }
  // `plain` with its M x N elements rounded; padding as c0.
  Floats RoundedInside(const Floats& plain) const {
    Floats want = c0;
    for (int r = 0; r < M; ++r) {
      for (int j = 0; j < N; ++j) want[r * ldc + j] = RoundToBf16(plain[r * ldc + j]);
    }
    return want;
  }
};

TEST_F(CpuBf16OpsTest, GemmWithTransposesAndPaddingAccumulatesIntoA) {
  const PaddedGemm g;
  Bf16s c = ToBf16(g.c0);
  ops_->Gemm(Trans::kYes, Trans::kYes, g.M, g.N, g.K, 0.5f, g.a.a.data(), g.lda, g.b.a.data(),
             g.ldb, 1.0f, c.data(), g.ldc);
  ExpectSameBits(Widened(c), g.RoundedInside(g.Plain(cpu_)), "C in A");
}

TEST_F(CpuBf16OpsTest, GemmIntoTRoundsAsTheTwinOrKeepsFp32) {
  const PaddedGemm g;
  const Floats plain = g.Plain(cpu_);
  Floats c = g.c0;
  ops_->Gemm(Trans::kYes, Trans::kYes, g.M, g.N, g.K, 0.5f, g.a.a.data(), g.lda, g.b.a.data(),
             g.ldb, 1.0f, c.data(), g.ldc);
  ExpectSameBits(c, g.RoundedInside(plain), "C in T, rounded as the twin");

  c = g.c0;
  fp32_gradients_->Gemm(Trans::kYes, Trans::kYes, g.M, g.N, g.K, 0.5f, g.a.a.data(), g.lda,
                        g.b.a.data(), g.ldb, 1.0f, c.data(), g.ldc);
  ExpectSameBits(c, plain, "C in T, fp32");
  EXPECT_FALSE(AllBf16(c));
}

TEST_F(CpuBf16OpsTest, GemmStridedBatchedReadsAndWritesEachMatrix) {
  const int M = 3, N = 4, K = 5, batch = 3, lda = K, ldb = K + 1, ldc = N + 2;
  const int64_t sa = M * lda + 2, sb = N * ldb + 1, sc = M * ldc + 3;
  const Bf16Data a = RandomBf16((batch - 1) * sa + M * lda, 7);
  const Bf16Data b = RandomBf16((batch - 1) * sb + N * ldb, 8);  // stored N x K: transposed
  for (const float beta : {0.0f, 0.75f}) {
    const Floats c0 = Rounded(Values((batch - 1) * sc + M * ldc, 9));
    Bf16s c = ToBf16(c0);
    Floats plain = c0;
    ops_->GemmStridedBatched(Trans::kNo, Trans::kYes, M, N, K, 1.0f, a.a.data(), lda, sa,
                             b.a.data(), ldb, sb, beta, c.data(), ldc, sc, batch);
    cpu_.GemmStridedBatched(Trans::kNo, Trans::kYes, M, N, K, 1.0f, a.f.data(), lda, sa, b.f.data(),
                            ldb, sb, beta, plain.data(), ldc, sc, batch);
    Floats want = c0;  // the elements between the matrices and past N keep their values
    for (int i = 0; i < batch; ++i) {
      for (int r = 0; r < M; ++r) {
        for (int j = 0; j < N; ++j) {
          const int64_t at = i * sc + r * ldc + j;
          want[at] = RoundToBf16(plain[at]);
        }
      }
    }
    ExpectSameBits(Widened(c), want, beta == 0 ? "beta 0" : "beta 0.75");
  }
}

TEST_F(CpuBf16OpsTest, LinearRoundsItsOutputAndWeightGradientsAccumulateInFp32) {
  const int rows = 4, out = 6, in = 9;
  const Bf16Data x = RandomBf16(rows * in, 10), w = RandomBf16(out * in, 11);
  const Bf16Data bias = RandomBf16(out, 12, 10.0f);  // from the mirror, as the weights
  Bf16s y(rows * out);
  Floats plain(rows * out);
  ops_->Linear(x.a.data(), w.a.data(), bias.a.data(), rows, out, in, y.data());
  cpu_.Linear(x.f.data(), w.f.data(), bias.f.data(), rows, out, in, plain.data());
  ExpectRoundedFrom(y, plain, "y");

  const Bf16Data dy = RandomBf16(rows * out, 13);
  Floats dw = Values(out * in, 14), db = Values(out, 15);
  Floats want_dw = dw, want_db = db;
  ops_->LinearBackwardWeights(dy.a.data(), x.a.data(), rows, out, in, dw.data(), db.data());
  cpu_.LinearBackwardWeights(dy.f.data(), x.f.data(), rows, out, in, want_dw.data(),
                             want_db.data());
  ExpectSameBits(dw, want_dw, "dw");
  ExpectSameBits(db, want_db, "dbias");
}

TEST_F(CpuBf16OpsTest, PermuteHeadsBothWays) {
  const int B = 2, S = 3, H = 2, D = 4, n = B * S * H * D;
  const Bf16Data x = RandomBf16(n, 16);
  for (const bool inverse : {false, true}) {
    Bf16s y(n);
    Floats plain(n);
    ops_->PermuteHeads(x.a.data(), y.data(), B, S, H, D, inverse);
    cpu_.PermuteHeads(x.f.data(), plain.data(), B, S, H, D, inverse);
    ExpectRoundedFrom(y, plain, inverse ? "merge" : "split");
  }
}

// LayerNorm's shapes and parameters.
struct LayerNormCase {
  static constexpr int rows = 3, cols = 40, n = rows * cols;
  Floats gamma = Values(cols, 17), beta = Values(cols, 18);
  Bf16Data x = RandomBf16(n, 19, 2.0f);
  Floats x_fp32 = Values(n, 20, 2.0f);  // the residual stream's input: not bf16
};

TEST_F(CpuBf16OpsTest, LayerNormForwardOfAAndOfT) {
  const LayerNormCase c;
  for (const bool input_in_a : {true, false}) {
    Bf16s y(c.n);
    Floats mean(c.rows), rstd(c.rows), py(c.n), pmean(c.rows), prstd(c.rows);
    const float* x = input_in_a ? c.x.f.data() : c.x_fp32.data();
    if (input_in_a) {
      ops_->LayerNormForward(c.x.a.data(), c.gamma.data(), c.beta.data(), c.rows, c.cols, 1e-6f,
                             y.data(), mean.data(), rstd.data());
    } else {
      ops_->LayerNormForward(x, c.gamma.data(), c.beta.data(), c.rows, c.cols, 1e-6f, y.data(),
                             mean.data(), rstd.data());
    }
    cpu_.LayerNormForward(x, c.gamma.data(), c.beta.data(), c.rows, c.cols, 1e-6f, py.data(),
                          pmean.data(), prstd.data());
    ExpectRoundedFrom(y, py, "y");
    ExpectSameBits(mean, pmean, "mean");
    ExpectSameBits(rstd, prstd, "rstd");
  }
}

TEST_F(CpuBf16OpsTest, LayerNormBackwardInPlaceAndOfT) {
  const LayerNormCase c;
  const Floats mean = Values(c.rows, 21, 0.1f), rstd = {0.9f, 1.3f, 0.7f};
  for (const bool input_in_a : {true, false}) {
    Bf16Data dy = RandomBf16(c.n, 22);
    Floats dgamma = Values(c.cols, 23), dbeta = Values(c.cols, 24);
    Floats pdx(c.n), pdgamma = dgamma, pdbeta = dbeta;
    const float* x = input_in_a ? c.x.f.data() : c.x_fp32.data();
    cpu_.LayerNormBackward(dy.f.data(), x, c.gamma.data(), mean.data(), rstd.data(), c.rows, c.cols,
                           pdx.data(), pdgamma.data(), pdbeta.data());
    if (input_in_a) {  // dx aliases dy
      ops_->LayerNormBackward(dy.a.data(), c.x.a.data(), c.gamma.data(), mean.data(), rstd.data(),
                              c.rows, c.cols, dy.a.data(), dgamma.data(), dbeta.data());
    } else {
      ops_->LayerNormBackward(dy.a.data(), x, c.gamma.data(), mean.data(), rstd.data(), c.rows,
                              c.cols, dy.a.data(), dgamma.data(), dbeta.data());
    }
    ExpectRoundedFrom(dy.a, pdx, "dx");
    ExpectSameBits(dgamma, pdgamma, "dgamma");
    ExpectSameBits(dbeta, pdbeta, "dbeta");
  }
}

TEST_F(CpuBf16OpsTest, LayerNormInputFromOutputIsFp32) {
  const LayerNormCase c;
  const Floats mean = Values(c.rows, 25), rstd = {0.9f, 1.3f, 0.7f};
  Floats x(c.n), want(c.n);
  ops_->LayerNormInputFromOutput(c.x.a.data(), c.gamma.data(), c.beta.data(), mean.data(),
                                 rstd.data(), c.rows, c.cols, x.data());
  cpu_.LayerNormInputFromOutput(c.x.f.data(), c.gamma.data(), c.beta.data(), mean.data(),
                                rstd.data(), c.rows, c.cols, want.data());
  ExpectSameBits(x, want, "x");
  EXPECT_FALSE(AllBf16(x));
}

TEST_F(CpuBf16OpsTest, ResidualLayerNormForwardWithDropout) {
  const LayerNormCase c;
  const DropoutKey key{.seed = 3, .step = 4, .layer = 1, .site = 2};
  const Bf16Data sub = RandomBf16(c.n, 26);
  Floats sum(c.n), mean(c.rows), rstd(c.rows), psum(c.n), py(c.n), pmean(c.rows), prstd(c.rows);
  Bf16s y(c.n);
  ops_->ResidualLayerNormForward(c.x.a.data(), sub.a.data(), 0.25f, key, c.gamma.data(),
                                 c.beta.data(), c.rows, c.cols, 1e-6f, sum.data(), y.data(),
                                 mean.data(), rstd.data());
  cpu_.ResidualLayerNormForward(c.x.f.data(), sub.f.data(), 0.25f, key, c.gamma.data(),
                                c.beta.data(), c.rows, c.cols, 1e-6f, psum.data(), py.data(),
                                pmean.data(), prstd.data());
  ExpectSameBits(sum, psum, "sum");  // the residual stream: fp32 by default
  EXPECT_FALSE(AllBf16(sum));
  ExpectRoundedFrom(y, py, "y");
  ExpectSameBits(mean, pmean, "mean");
  ExpectSameBits(rstd, prstd, "rstd");
}

TEST_F(CpuBf16OpsTest, ResidualLayerNormBackwardWithDropoutInPlace) {
  const LayerNormCase c;
  const DropoutKey key{.seed = 5, .step = 6};
  const Floats mean = Values(c.rows, 27, 0.1f), rstd = {0.9f, 1.3f, 0.7f};
  for (const float rate : {0.25f, 0.0f}) {
    Floats dy = Values(c.n, 28), pdy = dy, pdsub(c.n);  // dsum aliases dy
    Floats dgamma(c.cols), dbeta(c.cols), pdgamma(c.cols), pdbeta(c.cols);
    const Bf16s untouched = ToBf16(Values(c.n, 29));
    Bf16s dsub = untouched;
    ops_->ResidualLayerNormBackward(dy.data(), c.x_fp32.data(), c.gamma.data(), mean.data(),
                                    rstd.data(), c.rows, c.cols, rate, key, dy.data(), dsub.data(),
                                    dgamma.data(), dbeta.data());
    cpu_.ResidualLayerNormBackward(pdy.data(), c.x_fp32.data(), c.gamma.data(), mean.data(),
                                   rstd.data(), c.rows, c.cols, rate, key, pdy.data(), pdsub.data(),
                                   pdgamma.data(), pdbeta.data());
    ExpectSameBits(dy, pdy, "dsum");
    ExpectSameBits(dgamma, pdgamma, "dgamma");
    ExpectSameBits(dbeta, pdbeta, "dbeta");
    if (rate > 0) {
      ExpectRoundedFrom(dsub, pdsub, "dsub");
    } else {
      ExpectSameBits(Widened(dsub), Widened(untouched), "dsub is not written at rate 0");
    }
  }
}

TEST_F(CpuBf16OpsTest, ActivationsInPlace) {
  const int64_t n = 200;
  const Bf16Data x = RandomBf16(n, 30, 2.0f);
  for (const Activation act : {Activation::kGelu, Activation::kGeluTanh, Activation::kRelu}) {
    Bf16s y = x.a;  // y aliases x
    Floats py(n);
    ops_->ActivationForward(act, y.data(), y.data(), n);
    cpu_.ActivationForward(act, x.f.data(), py.data(), n);
    ExpectRoundedFrom(y, py, "forward");

    Bf16Data dy = RandomBf16(n, 31);  // dx aliases dy
    Floats pdx(n);
    cpu_.ActivationBackward(act, x.f.data(), dy.f.data(), pdx.data(), n);
    ops_->ActivationBackward(act, x.a.data(), dy.a.data(), dy.a.data(), n);
    ExpectRoundedFrom(dy.a, pdx, "backward");
  }
}

TEST_F(CpuBf16OpsTest, TanhForwardAndBackward) {
  const int64_t n = 150;
  const Bf16Data x = RandomBf16(n, 32, 2.0f), dy = RandomBf16(n, 33);
  Bf16s y(n), dx(n);
  Floats py(n), pdx(n);
  ops_->TanhForward(x.a.data(), y.data(), n);
  cpu_.TanhForward(x.f.data(), py.data(), n);
  ExpectRoundedFrom(y, py, "forward");
  ops_->TanhBackward(y.data(), dy.a.data(), dx.data(), n);
  const Floats wy = Widened(y);
  cpu_.TanhBackward(wy.data(), dy.f.data(), pdx.data(), n);
  ExpectRoundedFrom(dx, pdx, "backward");
}

TEST_F(CpuBf16OpsTest, SoftmaxInPlaceWithSegmentsAndCausalMask) {
  const int B = 2, H = 2, S = 5, n = B * H * S * S;
  const std::vector<int32_t> segments = {1, 1, 2, 2, 0, 1, 1, 1, 1, 1};
  Bf16Data scores = RandomBf16(n, 34, 3.0f);
  Floats probs(n);
  cpu_.SoftmaxForward(scores.f.data(), probs.data(), B, H, S, S, 0.5f, segments.data(), true);
  ops_->SoftmaxForward(scores.a.data(), scores.a.data(), B, H, S, S, 0.5f, segments.data(), true);
  ExpectRoundedFrom(scores.a, probs, "probs");

  const Floats wprobs = Widened(scores.a);
  Bf16Data dprobs = RandomBf16(n, 35);  // dscores aliases dprobs
  Floats dscores(n);
  cpu_.SoftmaxBackward(wprobs.data(), dprobs.f.data(), dscores.data(), B * H * S, S, 0.5f);
  ops_->SoftmaxBackward(scores.a.data(), dprobs.a.data(), dprobs.a.data(), B * H * S, S, 0.5f);
  ExpectRoundedFrom(dprobs.a, dscores, "dscores");
}

TEST_F(CpuBf16OpsTest, FusedAttentionForwardAndBackward) {
  const int B = 2, S = 5, H = 2, D = 4, n = B * S * H * D, nl = B * H * S;
  const std::vector<int32_t> segments = {1, 1, 1, 2, 0, 1, 1, 1, 1, 1};
  const DropoutKey key{.seed = 7, .step = 8};
  const Bf16Data q = RandomBf16(n, 36), k = RandomBf16(n, 37), v = RandomBf16(n, 38);
  Bf16s out(n);
  Floats lse(nl), pout(n), plse(nl);
  ops_->AttentionForward(q.a.data(), k.a.data(), v.a.data(), B, S, H, D, 0.5f, segments.data(),
                         false, 0.2f, key, out.data(), lse.data());
  cpu_.AttentionForward(q.f.data(), k.f.data(), v.f.data(), B, S, H, D, 0.5f, segments.data(),
                        false, 0.2f, key, pout.data(), plse.data());
  ExpectRoundedFrom(out, pout, "out");
  ExpectSameBits(lse, plse, "lse");

  const Bf16Data dout = RandomBf16(n, 39);
  const Floats wout = Widened(out);
  Bf16s dq(n), dk(n), dv(n);
  Floats delta(nl), pdq(n), pdk(n), pdv(n), pdelta(nl);
  ops_->AttentionBackward(q.a.data(), k.a.data(), v.a.data(), out.data(), dout.a.data(), lse.data(),
                          B, S, H, D, 0.5f, segments.data(), false, 0.2f, key, dq.data(), dk.data(),
                          dv.data(), delta.data());
  cpu_.AttentionBackward(q.f.data(), k.f.data(), v.f.data(), wout.data(), dout.f.data(), lse.data(),
                         B, S, H, D, 0.5f, segments.data(), false, 0.2f, key, pdq.data(),
                         pdk.data(), pdv.data(), pdelta.data());
  ExpectRoundedFrom(dq, pdq, "dq");
  ExpectRoundedFrom(dk, pdk, "dk");
  ExpectRoundedFrom(dv, pdv, "dv");
  ExpectSameBits(delta, pdelta, "delta");
}

TEST_F(CpuBf16OpsTest, DropoutInPlaceAndFromT) {
  const int64_t n = 300;
  const DropoutKey key{.seed = 9, .step = 10, .layer = 2};
  Bf16Data x = RandomBf16(n, 40);
  Floats plain(n);
  cpu_.Dropout(x.f.data(), plain.data(), n, 0.3f, key);
  ops_->Dropout(x.a.data(), x.a.data(), n, 0.3f, key);
  ExpectRoundedFrom(x.a, plain, "A to A, in place");

  const Floats g = Values(n, 41);  // the residual stream's gradient: not bf16
  Bf16s y(n);
  cpu_.Dropout(g.data(), plain.data(), n, 0.3f, key);
  ops_->Dropout(g.data(), y.data(), n, 0.3f, key);
  ExpectRoundedFrom(y, plain, "T to A");
  ops_->Dropout(g.data(), y.data(), n, 0.0f, key);
  ExpectSameBits(Widened(y), Rounded(g), "rate 0 converts");
}

TEST_F(CpuBf16OpsTest, GatherRowsAndScatterAddRowsIntoT) {
  const int d = 8;
  const std::vector<int32_t> idx = {2, 0, 2};  // row 2 twice, rows 1 and 3 not at all
  const Bf16Data table = RandomBf16(4 * d, 42);
  Bf16s gathered(3 * d);
  Floats pgathered(3 * d);
  ops_->GatherRows(table.a.data(), idx.data(), 3, d, gathered.data());
  cpu_.GatherRows(table.f.data(), idx.data(), 3, d, pgathered.data());
  ExpectRoundedFrom(gathered, pgathered, "gathered");

  const Bf16Data src = RandomBf16(3 * d, 43);
  const Floats dst0 = Values(4 * d, 44);
  Floats plain = dst0;
  cpu_.ScatterAddRows(src.f.data(), idx.data(), 3, d, plain.data());
  Floats dst = dst0;
  fp32_gradients_->ScatterAddRows(src.a.data(), idx.data(), 3, d, dst.data());
  ExpectSameBits(dst, plain, "dst in fp32");
  EXPECT_FALSE(AllBf16(dst));

  dst = dst0;  // the twin rounds the rows it writes, once, after the sum
  ops_->ScatterAddRows(src.a.data(), idx.data(), 3, d, dst.data());
  Floats want = plain;
  for (int row : {0, 2}) {
    for (int j = 0; j < d; ++j) want[row * d + j] = RoundToBf16(plain[row * d + j]);
  }
  ExpectSameBits(dst, want, "dst rounded as the twin");
}

TEST_F(CpuBf16OpsTest, SoftmaxCrossEntropyInPlaceAndLossesOnly) {
  const int rows = 4, V = 11;
  const std::vector<int32_t> labels = {3, -1, 10, 0};
  const Floats weights = {1.0f, 1.0f, 0.5f, 2.0f};
  Bf16Data logits = RandomBf16(rows * V, 45, 3.0f);
  Floats losses(rows), plosses(rows), pd(rows * V);
  cpu_.SoftmaxCrossEntropy(logits.f.data(), labels.data(), weights.data(), rows, V, plosses.data(),
                           pd.data(), 0.25f);
  ops_->SoftmaxCrossEntropy(logits.a.data(), labels.data(), weights.data(), rows, V, losses.data(),
                            nullptr, 0.25f);
  ExpectSameBits(losses, plosses, "losses without a gradient");
  const Bf16s before = logits.a;
  Bf16s dlogits(rows * V);
  ops_->SoftmaxCrossEntropy(logits.a.data(), labels.data(), weights.data(), rows, V, losses.data(),
                            dlogits.data(), 0.25f);
  ExpectRoundedFrom(dlogits, pd, "dlogits");
  ExpectSameBits(Widened(logits.a), Widened(before), "logits are an input");
  ops_->SoftmaxCrossEntropy(logits.a.data(), labels.data(), weights.data(), rows, V, losses.data(),
                            logits.a.data(), 0.25f);  // dlogits aliases logits
  ExpectRoundedFrom(logits.a, pd, "dlogits in place");
  ExpectSameBits(losses, plosses, "losses");
}

TEST_F(CpuBf16OpsTest, LabelSmoothedCrossEntropyWithPaddedRowsInPlace) {
  const int rows = 3, V = 10, ld = 16;
  const std::vector<int32_t> labels = {2, -1, 9};
  Bf16Data logits = RandomBf16(rows * ld, 46, 3.0f);
  Floats losses(rows), plosses(rows), pd(rows * ld);
  cpu_.LabelSmoothedCrossEntropy(logits.f.data(), labels.data(), nullptr, rows, V, ld, 0.1f,
                                 plosses.data(), pd.data(), 0.5f);
  ops_->LabelSmoothedCrossEntropy(logits.a.data(), labels.data(), nullptr, rows, V, ld, 0.1f,
                                  losses.data(), logits.a.data(), 0.5f);
  ExpectRoundedFrom(logits.a, pd, "dlogits");
  ExpectSameBits(losses, plosses, "losses");
  for (int r = 0; r < rows; ++r) {
    for (int j = V; j < ld; ++j) EXPECT_EQ(logits.a[r * ld + j].bits(), 0) << r << "," << j;
  }
}

// The T forms are the twin's: its rounding of T buffers, not the plain backend's.
TEST_F(CpuBf16OpsTest, TheFloatOpsAreTheTwins) {
  const int64_t n = 64;
  const Floats x = Values(n, 47);
  Floats y(n), plain(n);
  ops_->Dropout(x.data(), y.data(), n, 0.0f, DropoutKey{});
  ExpectSameBits(y, Rounded(x), "Dropout(T) rounds, as the twin's");
  const Floats b = Values(n, 48, 1e-3f);
  ops_->Add(x.data(), b.data(), y.data(), n);
  cpu_.Add(x.data(), b.data(), plain.data(), n);
  ExpectSameBits(y, plain, "Add(T) keeps the fp32 residual stream, as the twin's");
  EXPECT_TRUE(ops_->PrefersFusedAttention(64));
  EXPECT_EQ(ops_->device(), DeviceKind::kCpu);
  EXPECT_TRUE(ops_->status().ok());
}

TEST_F(CpuBf16OpsTest, RefusesABackendThatIsNotTheCpu) {
  testing_util::NotCpuOps gpu(&cpu_);
  absl::StatusOr<std::unique_ptr<CpuBf16Ops>> ops = CpuBf16Ops::Create(&gpu);
  ASSERT_FALSE(ops.ok());
  EXPECT_EQ(ops.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace headroom
