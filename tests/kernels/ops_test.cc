// The op-set suite: every op of kernels/ops.h against float64 references written here.
//
// Runs once per backend: "cpu_float" (CpuOps<float>), "cuda_float" (MakeOps(kCuda), skipped with
// the reason when the build has no CUDA or there is no GPU) and "cpu_double" (CpuOps<double>,
// tighter tolerance). Each test body is a generic lambda over Ops<T>&; see ops_test_util.h.
// The references are naive loops in double, independent of the backends' code; the backward
// references are the analytic formulas, themselves checked against central finite differences
// of the forward references (LayerNorm, softmax, GELU, cross-entropy). Shapes are awkward on
// purpose: 1, odd sizes, sizes that are not multiples of any block, and sizes large enough to
// make the CPU backend split work between threads.
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/philox.h"
#include "tests/cuda_skip.h"
#include "tests/kernels/attention_reference.h"
#include "tests/kernels/ops_test_util.h"

namespace headroom {
namespace {

using testing_util::DevBuf;
using testing_util::Download;
using testing_util::Elem;
using testing_util::ExpectClose;
using testing_util::IVec;
using testing_util::Quantize;
using testing_util::Random;
using testing_util::RandomInts;
using testing_util::RefAttention;
using testing_util::RefKeep;
using testing_util::Tol;
using testing_util::Upload;
using testing_util::UploadInt;
using testing_util::Vec;

// Sizes above the CPU backend's threading threshold (32K elements) as well as tiny ones.
constexpr int64_t kSizes[] = {1, 7, 129, 70001};

class OpsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& backend = GetParam();
    if (backend == "cpu_float") {
      float_ops_ = std::make_unique<CpuOps<float>>();
      tol_ = {1e-5, 1e-5};
    } else if (backend == "cpu_double") {
      double_ops_ = std::make_unique<CpuOps<double>>();
      tol_ = {1e-12, 1e-12};
    } else if (backend == "cuda_float") {
      HR_SKIP_WITHOUT_CUDA();
      absl::StatusOr<std::unique_ptr<Ops<float>>> ops = MakeOps(DeviceKind::kCuda);
      ASSERT_TRUE(ops.ok()) << ops.status();
      float_ops_ = std::move(*ops);
      tol_ = {1e-5, 1e-5};  // the CUDA backend's fp32 mode
    } else {
      FAIL() << "unknown backend " << backend;
    }
  }

  // Calls fn(Ops<float>&) or fn(Ops<double>&).
  template <typename Fn>
  void Run(Fn&& fn) {
    if (float_ops_) {
      fn(*float_ops_);
    } else {
      fn(*double_ops_);
    }
  }

  std::mt19937_64 rng_{20200712};
  Tol tol_;
  std::unique_ptr<Ops<float>> float_ops_;
  std::unique_ptr<Ops<double>> double_ops_;
};

// Central differences of f at x (which is restored), one coordinate at a time.
Vec NumericGradient(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    x[i] = xi + h;
    const double fp = f(x);
    x[i] = xi - h;
    const double fm = f(x);
    x[i] = xi;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

double WeightedSum(const Vec& y, const Vec& w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * w[i];
  return s;
}

// Finite differences of double references agree with the analytic ones to about h^2.
constexpr Tol kFdTol{1e-7, 1e-6};

// ---- Memory and elementwise ---------------------------------------------------------------

TEST_P(OpsTest, AllocIsZeroedAndCopiesRoundTrip) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (int64_t n : kSizes) {
      DevBuf<T, T> a(ops, n), b(ops, n);
      ExpectClose(Download(ops, a), Vec(n, 0.0), {0, 0}, "fresh allocation");
      const Vec x = Quantize<T>(Random(rng_, n));
      std::vector<T> xt(x.begin(), x.end());
      ops.CopyToDevice(a.get(), xt.data(), sizeof(T) * n);
      ops.CopyDevice(b.get(), a.get(), sizeof(T) * n);
      ops.Synchronize();
      ExpectClose(Download(ops, b), x, {0, 0}, "host -> device -> device -> host");
    }
    DevBuf<T, int32_t> ints(ops, 5);
    std::vector<int32_t> back(5, -1);
    ops.CopyToHost(back.data(), ints.get(), sizeof(int32_t) * 5);
    EXPECT_EQ(back, std::vector<int32_t>(5, 0));
    ops.Free(nullptr);
  });
}

TEST_P(OpsTest, FillScaleAddAxpy) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (int64_t n : kSizes) {
      SCOPED_TRACE("n=" + std::to_string(n));
      const Vec a = Quantize<T>(Random(rng_, n)), b = Quantize<T>(Random(rng_, n));
      auto da = Upload(ops, a), db = Upload(ops, b);
      DevBuf<T, T> out(ops, n);

      ops.Fill(out.get(), n, T(0.375));
      ExpectClose(Download(ops, out), Vec(n, 0.375), {0, 0}, "Fill");

      ops.Add(da.get(), db.get(), out.get(), n);
      Vec want(n);
      for (int64_t i = 0; i < n; ++i) want[i] = a[i] + b[i];
      ExpectClose(Download(ops, out), want, tol_, "Add");
      ops.Add(da.get(), db.get(), da.get(), n);  // out aliases a (residual add)
      ExpectClose(Download(ops, da), want, tol_, "Add out == a");
      ops.Add(out.get(), db.get(), db.get(), n);  // out aliases b
      for (int64_t i = 0; i < n; ++i) want[i] = a[i] + 2 * b[i];
      ExpectClose(Download(ops, db), want, tol_.Times(2), "Add out == b");

      auto dx = Upload(ops, a);
      ops.Scale(dx.get(), n, T(-1.5));
      for (int64_t i = 0; i < n; ++i) want[i] = -1.5 * a[i];
      ExpectClose(Download(ops, dx), want, tol_, "Scale");

      auto dy = Upload(ops, b);
      ops.Axpy(T(0.25), dx.get(), dy.get(), n);
      for (int64_t i = 0; i < n; ++i) want[i] = b[i] + 0.25 * (-1.5 * a[i]);
      ExpectClose(Download(ops, dy), want, tol_, "Axpy");
    }
  });
}

// ---- GEMM ---------------------------------------------------------------------------------

// C = alpha op(A) op(B) + beta C over an M x N block with leading dimensions (row-major).
void RefGemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
             const double* B, int ldb, double beta, double* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      double& c = C[i * ldc + j];
      c = alpha * s + (beta == 0 ? 0.0 : beta * c);
    }
  }
}

struct GemmShape {
  int M, N, K;
};
constexpr GemmShape kGemmShapes[] = {
    {1, 1, 1}, {7, 37, 129}, {37, 1, 7}, {1, 13, 65}, {129, 65, 33}};

TEST_P(OpsTest, GemmAllTransposesLeadingDimsAndBeta) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (const GemmShape& sh : kGemmShapes) {
      for (int ta = 0; ta < 2; ++ta) {
        for (int tb = 0; tb < 2; ++tb) {
          for (double beta : {0.0, 1.0, -0.5}) {
            SCOPED_TRACE("M=" + std::to_string(sh.M) + " N=" + std::to_string(sh.N) +
                         " K=" + std::to_string(sh.K) + " ta=" + std::to_string(ta) +
                         " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta));
            // Leading dimensions larger than needed (lda > K etc.), so strides are exercised.
            const int a_rows = ta ? sh.K : sh.M, a_cols = ta ? sh.M : sh.K;
            const int b_rows = tb ? sh.N : sh.K, b_cols = tb ? sh.K : sh.N;
            const int lda = a_cols + 3, ldb = b_cols + 2, ldc = sh.N + 5;
            const Vec A = Quantize<T>(Random(rng_, int64_t{a_rows} * lda));
            const Vec B = Quantize<T>(Random(rng_, int64_t{b_rows} * ldb));
            Vec C = Quantize<T>(Random(rng_, int64_t{sh.M} * ldc));
            if (beta == 0) {
              // beta == 0 must ignore C entirely, NaN included (only inside the M x N block:
              // the padding columns must come back untouched).
              for (int i = 0; i < sh.M; ++i) {
                for (int j = 0; j < sh.N; ++j) C[i * ldc + j] = std::nan("");
              }
            }
            auto dA = Upload(ops, A), dB = Upload(ops, B), dC = Upload(ops, C);
            const double alpha = 0.75;
            ops.Gemm(ta ? Trans::kYes : Trans::kNo, tb ? Trans::kYes : Trans::kNo, sh.M, sh.N, sh.K,
                     T(alpha), dA.get(), lda, dB.get(), ldb, T(beta), dC.get(), ldc);
            Vec want = C;
            RefGemm(ta, tb, sh.M, sh.N, sh.K, alpha, A.data(), lda, B.data(), ldb, beta,
                    want.data(), ldc);
            ExpectClose(Download(ops, dC), want, tol_.Times(4), "Gemm");
          }
        }
      }
    }
  });
}

TEST_P(OpsTest, GemmStridedBatchedMatchesPerMatrixReference) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int M = 7, N = 9, K = 37, batch = 3;
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        for (double beta : {0.0, 1.0}) {
          SCOPED_TRACE("ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                       " beta=" + std::to_string(beta));
          const int a_rows = ta ? K : M, a_cols = ta ? M : K;
          const int b_rows = tb ? N : K, b_cols = tb ? K : N;
          const int lda = a_cols + 1, ldb = b_cols, ldc = N + 2;
          // Gaps between the matrices of a batch, which must be left alone.
          const int64_t sa = int64_t{a_rows} * lda + 5, sb = int64_t{b_rows} * ldb + 3,
                        sc = int64_t{M} * ldc + 4;
          const Vec A = Quantize<T>(Random(rng_, sa * batch));
          const Vec B = Quantize<T>(Random(rng_, sb * batch));
          const Vec C = Quantize<T>(Random(rng_, sc * batch));
          auto dA = Upload(ops, A), dB = Upload(ops, B), dC = Upload(ops, C);
          ops.GemmStridedBatched(ta ? Trans::kYes : Trans::kNo, tb ? Trans::kYes : Trans::kNo, M, N,
                                 K, T(1.25), dA.get(), lda, sa, dB.get(), ldb, sb, T(beta),
                                 dC.get(), ldc, sc, batch);
          Vec want = C;
          for (int i = 0; i < batch; ++i) {
            RefGemm(ta, tb, M, N, K, 1.25, A.data() + i * sa, lda, B.data() + i * sb, ldb, beta,
                    want.data() + i * sc, ldc);
          }
          ExpectClose(Download(ops, dC), want, tol_.Times(4), "GemmStridedBatched");
        }
      }
    }
  });
}

// ---- Bias, permute ------------------------------------------------------------------------

TEST_P(OpsTest, AddBiasAndBiasBackwardAccumulates) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [rows, cols] : {std::pair<int64_t, int>{1, 1}, {7, 37}, {129, 65}, {1000, 129}}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      const Vec x = Quantize<T>(Random(rng_, rows * cols));
      const Vec bias = Quantize<T>(Random(rng_, cols));
      const Vec dbias0 = Quantize<T>(Random(rng_, cols));
      auto dx = Upload(ops, x), db = Upload(ops, bias), ddb = Upload(ops, dbias0);
      ops.AddBias(dx.get(), db.get(), rows, cols);
      Vec want(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) want[r * cols + c] = x[r * cols + c] + bias[c];
      }
      ExpectClose(Download(ops, dx), want, tol_, "AddBias");

      auto dy = Upload(ops, x);
      ops.BiasBackward(dy.get(), rows, cols, ddb.get());
      Vec wantb = dbias0;
      for (int64_t r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) wantb[c] += x[r * cols + c];
      }
      ExpectClose(Download(ops, ddb), wantb, tol_.Times(4), "BiasBackward (accumulates)");
    }
  });
}

// Linear = x w^T + bias, with the bias 16-byte aligned (CUDA: in the GEMM's epilogue), not
// aligned (CUDA: a separate pass) and absent; NaN in y beforehand must not leak.
TEST_P(OpsTest, LinearAddsTheBiasWhereverItLives) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    struct Case {
      int rows, out, in;
    };
    for (const Case& c : {Case{1, 1, 1}, Case{7, 37, 5}, Case{129, 64, 96}, Case{300, 256, 129}}) {
      for (int bias_offset : {0, 1, -1}) {  // -1: no bias
        SCOPED_TRACE("rows=" + std::to_string(c.rows) + " out=" + std::to_string(c.out) +
                     " in=" + std::to_string(c.in) + " bias_offset=" + std::to_string(bias_offset));
        const Vec x = Quantize<T>(Random(rng_, int64_t{c.rows} * c.in));
        const Vec w = Quantize<T>(Random(rng_, int64_t{c.out} * c.in));
        const Vec bias = Quantize<T>(Random(rng_, c.out + 1));  // bias starts at bias_offset
        auto dx = Upload(ops, x), dw = Upload(ops, w), db = Upload(ops, bias);
        auto dy = Upload(ops, Vec(int64_t{c.rows} * c.out, std::nan("")));
        const T* b = bias_offset < 0 ? nullptr : db.get() + bias_offset;
        ops.Linear(dx.get(), dw.get(), b, c.rows, c.out, c.in, dy.get());
        Vec want(int64_t{c.rows} * c.out);
        for (int r = 0; r < c.rows; ++r) {
          for (int o = 0; o < c.out; ++o) {
            double acc = bias_offset < 0 ? 0.0 : bias[bias_offset + o];
            for (int k = 0; k < c.in; ++k)
              acc += x[int64_t{r} * c.in + k] * w[int64_t{o} * c.in + k];
            want[int64_t{r} * c.out + o] = acc;
          }
        }
        ExpectClose(Download(ops, dy), want, tol_.Times(c.in), "Linear");
      }
    }
  });
}

// LinearBackwardWeights accumulates dw += dy^T x and dbias += colsum(dy) (CUDA: the bias
// gradient from the GEMM's epilogue where offered), or only dw when dbias is null.
TEST_P(OpsTest, LinearBackwardWeightsAccumulatesBothGradients) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    struct Case {
      int rows, out, in;
    };
    for (const Case& c : {Case{1, 1, 1}, Case{7, 37, 5}, Case{256, 64, 96}, Case{129, 1000, 33}}) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE("rows=" + std::to_string(c.rows) + " out=" + std::to_string(c.out) +
                     " in=" + std::to_string(c.in) + " bias=" + std::to_string(with_bias));
        const Vec dy = Quantize<T>(Random(rng_, int64_t{c.rows} * c.out));
        const Vec x = Quantize<T>(Random(rng_, int64_t{c.rows} * c.in));
        const Vec dw0 = Quantize<T>(Random(rng_, int64_t{c.out} * c.in));
        const Vec db0 = Quantize<T>(Random(rng_, c.out));
        auto ddy = Upload(ops, dy), dx = Upload(ops, x), ddw = Upload(ops, dw0),
             ddb = Upload(ops, db0);
        ops.LinearBackwardWeights(ddy.get(), dx.get(), c.rows, c.out, c.in, ddw.get(),
                                  with_bias ? ddb.get() : nullptr);
        Vec want_w = dw0, want_b = db0;
        for (int r = 0; r < c.rows; ++r) {
          for (int o = 0; o < c.out; ++o) {
            const double g = dy[int64_t{r} * c.out + o];
            if (with_bias) want_b[o] += g;
            for (int k = 0; k < c.in; ++k)
              want_w[int64_t{o} * c.in + k] += g * x[int64_t{r} * c.in + k];
          }
        }
        ExpectClose(Download(ops, ddw), want_w, tol_.Times(c.rows), "dw");
        ExpectClose(Download(ops, ddb), want_b, tol_.Times(c.rows), "dbias");
      }
    }
  });
}

TEST_P(OpsTest, PermuteHeadsSplitsAndMerges) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [B, S, H, D] :
         {std::tuple{1, 1, 1, 1}, std::tuple{2, 5, 3, 7}, std::tuple{3, 17, 4, 33}}) {
      const int64_t n = int64_t{B} * S * H * D;
      const Vec x = Quantize<T>(Random(rng_, n));
      auto dx = Upload(ops, x);
      DevBuf<T, T> dy(ops, n), dz(ops, n);
      ops.PermuteHeads(dx.get(), dy.get(), B, S, H, D, /*inverse=*/false);
      Vec want(n);
      for (int b = 0; b < B; ++b) {
        for (int s = 0; s < S; ++s) {
          for (int h = 0; h < H; ++h) {
            for (int d = 0; d < D; ++d) {
              want[(((int64_t{b} * H + h) * S + s) * D) + d] =
                  x[(((int64_t{b} * S + s) * H + h) * D) + d];
            }
          }
        }
      }
      ExpectClose(Download(ops, dy), want, {0, 0}, "PermuteHeads [B,S,H,D] -> [B,H,S,D]");
      ops.PermuteHeads(dy.get(), dz.get(), B, S, H, D, /*inverse=*/true);
      ExpectClose(Download(ops, dz), x, {0, 0}, "PermuteHeads inverse");
    }
  });
}

// ---- LayerNorm ----------------------------------------------------------------------------

void RefLayerNorm(const Vec& x, const Vec& g, const Vec& b, int64_t rows, int cols, double eps,
                  Vec* y, Vec* mean, Vec* rstd) {
  y->assign(x.size(), 0);
  mean->assign(rows, 0);
  rstd->assign(rows, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int c = 0; c < cols; ++c) mu += x[r * cols + c];
    mu /= cols;
    for (int c = 0; c < cols; ++c) var += (x[r * cols + c] - mu) * (x[r * cols + c] - mu);
    var /= cols;
    const double rs = 1 / std::sqrt(var + eps);
    for (int c = 0; c < cols; ++c) (*y)[r * cols + c] = (x[r * cols + c] - mu) * rs * g[c] + b[c];
    (*mean)[r] = mu;
    (*rstd)[r] = rs;
  }
}

// Analytic backward: dx overwritten, dgamma/dbeta returned as sums (no prior value).
void RefLayerNormBackward(const Vec& dy, const Vec& x, const Vec& g, int64_t rows, int cols,
                          double eps, Vec* dx, Vec* dg, Vec* db) {
  Vec y, mean, rstd;
  RefLayerNorm(x, g, Vec(cols, 0.0), rows, cols, eps, &y, &mean, &rstd);
  dx->assign(x.size(), 0);
  dg->assign(cols, 0);
  db->assign(cols, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double m1 = 0, m2 = 0;
    for (int c = 0; c < cols; ++c) {
      const double xhat = (x[r * cols + c] - mean[r]) * rstd[r];
      m1 += dy[r * cols + c] * g[c];
      m2 += dy[r * cols + c] * g[c] * xhat;
      (*dg)[c] += dy[r * cols + c] * xhat;
      (*db)[c] += dy[r * cols + c];
    }
    m1 /= cols;
    m2 /= cols;
    for (int c = 0; c < cols; ++c) {
      const double xhat = (x[r * cols + c] - mean[r]) * rstd[r];
      (*dx)[r * cols + c] = rstd[r] * (dy[r * cols + c] * g[c] - m1 - xhat * m2);
    }
  }
}

TEST(ReferenceTest, LayerNormBackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(1);
  const int64_t rows = 3;
  const int cols = 7;
  const double eps = 1e-5;
  const Vec x = Random(rng, rows * cols, -2, 3), g = Random(rng, cols, 0.5, 1.5),
            b = Random(rng, cols), w = Random(rng, rows * cols);
  Vec dx, dg, db;
  RefLayerNormBackward(w, x, g, rows, cols, eps, &dx, &dg, &db);
  auto loss = [&](const Vec& xx, const Vec& gg, const Vec& bb) {
    Vec y, m, r;
    RefLayerNorm(xx, gg, bb, rows, cols, eps, &y, &m, &r);
    return WeightedSum(y, w);
  };
  ExpectClose(NumericGradient([&](const Vec& v) { return loss(v, g, b); }, x), dx, kFdTol, "dx");
  ExpectClose(NumericGradient([&](const Vec& v) { return loss(x, v, b); }, g), dg, kFdTol, "dg");
  ExpectClose(NumericGradient([&](const Vec& v) { return loss(x, g, v); }, b), db, kFdTol, "db");
}

TEST_P(OpsTest, LayerNormForwardAndBackward) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [rows, cols] :
         {std::pair<int64_t, int>{1, 1}, {1, 7}, {7, 37}, {37, 129}, {300, 257}}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      const double eps = 1e-5;
      // An offset mean (3) checks that the variance is not computed as E[x^2] - E[x]^2.
      const Vec x = Quantize<T>(Random(rng_, rows * cols, 2, 4));
      const Vec g = Quantize<T>(Random(rng_, cols, 0.5, 1.5));
      const Vec b = Quantize<T>(Random(rng_, cols));
      const Vec dy = Quantize<T>(Random(rng_, rows * cols));
      const Vec dg0 = Quantize<T>(Random(rng_, cols)), db0 = Quantize<T>(Random(rng_, cols));
      auto dx_in = Upload(ops, x), dg_in = Upload(ops, g), db_in = Upload(ops, b);
      DevBuf<T, T> y(ops, rows * cols), mean(ops, rows), rstd(ops, rows);
      ops.LayerNormForward(dx_in.get(), dg_in.get(), db_in.get(), rows, cols, T(eps), y.get(),
                           mean.get(), rstd.get());
      Vec wy, wmean, wrstd;
      RefLayerNorm(x, g, b, rows, cols, eps, &wy, &wmean, &wrstd);
      // rstd can reach 1/sqrt(eps) ~ 316 for cols == 1, so y's error scales with it.
      ExpectClose(Download(ops, y), wy, tol_.Times(10), "LayerNorm y");
      ExpectClose(Download(ops, mean), wmean, tol_, "LayerNorm mean");
      ExpectClose(Download(ops, rstd), wrstd, tol_.Times(10), "LayerNorm rstd");

      Vec wdx, wdg, wdb;
      RefLayerNormBackward(dy, x, g, rows, cols, eps, &wdx, &wdg, &wdb);
      for (int c = 0; c < cols; ++c) {
        wdg[c] += dg0[c];
        wdb[c] += db0[c];
      }
      for (bool alias : {false, true}) {
        SCOPED_TRACE(alias ? "dx aliases dy" : "separate dx");
        auto ddy = Upload(ops, dy), ddg = Upload(ops, dg0), ddb = Upload(ops, db0);
        DevBuf<T, T> dx(ops, rows * cols);
        T* dx_ptr = alias ? ddy.get() : dx.get();
        ops.LayerNormBackward(ddy.get(), dx_in.get(), dg_in.get(), mean.get(), rstd.get(), rows,
                              cols, dx_ptr, ddg.get(), ddb.get());
        // dx is a difference of O(1) terms scaled by rstd: allow for the cancellation.
        const double s = 1 + wrstd[0];
        ExpectClose(Download(ops, dx_ptr, rows * cols), wdx, tol_.Times(10 * s), "dx");
        ExpectClose(Download(ops, ddg), wdg, tol_.Times(10 * std::sqrt(rows)), "dgamma");
        ExpectClose(Download(ops, ddb), wdb, tol_.Times(4), "dbeta");
      }
    }
  });
}

// ---- Activations --------------------------------------------------------------------------

double RefGelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double RefGeluGrad(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) +
         x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}

TEST(ReferenceTest, GeluDerivativeMatchesFiniteDifferences) {
  for (double x = -6; x <= 6; x += 0.37) {
    const double fd = (RefGelu(x + 1e-5) - RefGelu(x - 1e-5)) / 2e-5;
    EXPECT_NEAR(RefGeluGrad(x), fd, 1e-8) << "x=" << x;
  }
  // Known values: gelu(1) = Phi(1) = 0.8413447460685429...
  EXPECT_NEAR(RefGelu(1.0), 0.8413447460685429, 1e-15);
  EXPECT_NEAR(RefGelu(-1.0), -0.15865525393145707, 1e-15);
}

double RefGeluTanh(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
double RefGeluTanhGrad(double x) {
  const double t = std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * std::sqrt(2 / M_PI) * (1 + 3 * 0.044715 * x * x);
}

TEST(ReferenceTest, GeluTanhDerivativeMatchesFiniteDifferences) {
  for (double x = -6; x <= 6; x += 0.37) {
    const double fd = (RefGeluTanh(x + 1e-5) - RefGeluTanh(x - 1e-5)) / 2e-5;
    EXPECT_NEAR(RefGeluTanhGrad(x), fd, 1e-8) << "x=" << x;
  }
  // The tanh form approximates the erf form to ~1e-3 (Hendrycks and Gimpel's bound).
  for (double x = -6; x <= 6; x += 0.37) EXPECT_NEAR(RefGeluTanh(x), RefGelu(x), 1e-3) << x;
  // By hand: gelu_tanh(1) = 0.5 (1 + tanh(0.7978845608 * 1.044715)) = 0.8411919906.
  EXPECT_NEAR(RefGeluTanh(1.0), 0.8411919906082768, 1e-12);
}

// LayerNormInputFromOutput inverts LayerNormForward given its saved statistics.
TEST_P(OpsTest, LayerNormInputFromOutputRecoversTheInput) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [rows, cols] : {std::pair<int64_t, int>{1, 2}, {7, 37}, {300, 257}}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      const Vec x = Quantize<T>(Random(rng_, rows * cols, 2, 4));
      // Gains of both signs, away from zero (where the inverse loses everything).
      Vec g = Random(rng_, cols, 0.5, 1.5);
      for (int c = 0; c < cols; c += 2) g[c] = -g[c];
      g = Quantize<T>(g);
      const Vec b = Quantize<T>(Random(rng_, cols));
      auto dx = Upload(ops, x), dg = Upload(ops, g), db = Upload(ops, b);
      DevBuf<T, T> y(ops, rows * cols), mean(ops, rows), rstd(ops, rows), back(ops, rows * cols);
      ops.LayerNormForward(dx.get(), dg.get(), db.get(), rows, cols, T(1e-5), y.get(), mean.get(),
                           rstd.get());
      ops.LayerNormInputFromOutput(y.get(), dg.get(), db.get(), mean.get(), rstd.get(), rows, cols,
                                   back.get());
      // y carries the input's deviation from the row mean (|x - mean| <= 1 here) to ~1 ulp
      // of y (|y| <= a few): a few ulps of x's spread.
      ExpectClose(Download(ops, back), x, tol_.Times(20), "recovered input");
    }
  });
}

// ResidualLayerNorm* = (Dropout + Add) + LayerNorm: against the float64 reference, and bit for
// bit against the unfused ops on the same backend (CUDA fuses them into one row pass).
TEST_P(OpsTest, ResidualLayerNormMatchesReferenceAndTheUnfusedOps) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [rows, cols] : {std::pair<int64_t, int>{1, 1}, {7, 37}, {37, 129}, {300, 257}}) {
      for (float rate : {0.0f, 0.3f}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                     " rate=" + std::to_string(rate));
        const int64_t n = rows * cols;
        const double eps = 1e-5;
        const DropoutKey key{11, 5, 3, 1};
        const Vec x = Quantize<T>(Random(rng_, n, 2, 4)), sub = Quantize<T>(Random(rng_, n));
        const Vec g = Quantize<T>(Random(rng_, cols, 0.5, 1.5)),
                  b = Quantize<T>(Random(rng_, cols));
        const Vec dy = Quantize<T>(Random(rng_, n));
        Vec want_sum(n);
        for (int64_t i = 0; i < n; ++i) {
          const double keep = rate > 0 ? (RefKeep(key, i, rate) ? 1 / (1 - double(rate)) : 0) : 1;
          want_sum[i] = x[i] + sub[i] * keep;
        }
        Vec wy, wmean, wrstd, wdsum, wdg, wdb;
        RefLayerNorm(want_sum, g, b, rows, cols, eps, &wy, &wmean, &wrstd);
        RefLayerNormBackward(dy, want_sum, g, rows, cols, eps, &wdsum, &wdg, &wdb);
        Vec wdsub(n);
        for (int64_t i = 0; i < n; ++i) {
          wdsub[i] = rate > 0 ? (RefKeep(key, i, rate) ? wdsum[i] / (1 - double(rate)) : 0) : 0;
        }

        auto dx = Upload(ops, x), dsub_in = Upload(ops, sub), dg = Upload(ops, g),
             db = Upload(ops, b);
        DevBuf<T, T> sum(ops, n), y(ops, n), mean(ops, rows), rstd(ops, rows);
        ops.ResidualLayerNormForward(dx.get(), dsub_in.get(), rate, key, dg.get(), db.get(), rows,
                                     cols, T(eps), sum.get(), y.get(), mean.get(), rstd.get());
        ExpectClose(Download(ops, sum), want_sum, tol_, "sum");
        ExpectClose(Download(ops, y), wy, tol_.Times(10), "y");
        // The unfused ops on the same backend: the same bits.
        DevBuf<T, T> sum2(ops, n), y2(ops, n), mean2(ops, rows), rstd2(ops, rows);
        ops.Dropout(dsub_in.get(), sum2.get(), n, rate, key);
        ops.Add(dx.get(), sum2.get(), sum2.get(), n);
        ops.LayerNormForward(sum2.get(), dg.get(), db.get(), rows, cols, T(eps), y2.get(),
                             mean2.get(), rstd2.get());
        EXPECT_EQ(Download(ops, sum), Download(ops, sum2));
        EXPECT_EQ(Download(ops, y), Download(ops, y2));

        auto ddy = Upload(ops, dy);
        DevBuf<T, T> dsum(ops, n), dsub(ops, n), dgam(ops, cols), dbet(ops, cols);
        ops.ResidualLayerNormBackward(ddy.get(), sum.get(), dg.get(), mean.get(), rstd.get(), rows,
                                      cols, rate, key, dsum.get(), dsub.get(), dgam.get(),
                                      dbet.get());
        const double s = 1 + wrstd[0];
        ExpectClose(Download(ops, dsum), wdsum, tol_.Times(10 * s), "dsum");
        if (rate > 0) {
          ExpectClose(Download(ops, dsub), wdsub, tol_.Times(10 * s), "dsub");
        } else {
          ExpectClose(Download(ops, dsub), Vec(n, 0.0), {0, 0}, "dsub untouched at rate 0");
        }
        ExpectClose(Download(ops, dgam), wdg, tol_.Times(10 * std::sqrt(rows)), "dgamma");
        ExpectClose(Download(ops, dbet), wdb, tol_.Times(10 * std::sqrt(rows)), "dbeta");
        DevBuf<T, T> dsum2(ops, n), dsub2(ops, n), dgam2(ops, cols), dbet2(ops, cols);
        ops.LayerNormBackward(ddy.get(), sum.get(), dg.get(), mean.get(), rstd.get(), rows, cols,
                              dsum2.get(), dgam2.get(), dbet2.get());
        if (rate > 0) ops.Dropout(dsum2.get(), dsub2.get(), n, rate, key);
        EXPECT_EQ(Download(ops, dsum), Download(ops, dsum2));
        EXPECT_EQ(Download(ops, dsub), Download(ops, dsub2));
      }
    }
  });
}

TEST_P(OpsTest, GeluForwardBackwardInPlace) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (int64_t n : kSizes) {
      SCOPED_TRACE("n=" + std::to_string(n));
      const Vec x = Quantize<T>(Random(rng_, n, -6, 6)), dy = Quantize<T>(Random(rng_, n));
      Vec wy(n), wdx(n);
      for (int64_t i = 0; i < n; ++i) {
        wy[i] = RefGelu(x[i]);
        wdx[i] = dy[i] * RefGeluGrad(x[i]);
      }
      auto dx = Upload(ops, x), ddy = Upload(ops, dy);
      DevBuf<T, T> y(ops, n), g(ops, n);
      ops.GeluForward(dx.get(), y.get(), n);
      ExpectClose(Download(ops, y), wy, tol_, "GeluForward");
      ops.GeluBackward(dx.get(), ddy.get(), g.get(), n);
      ExpectClose(Download(ops, g), wdx, tol_, "GeluBackward");
      ops.GeluBackward(dx.get(), ddy.get(), ddy.get(), n);  // dx aliases dy
      ExpectClose(Download(ops, ddy), wdx, tol_, "GeluBackward in place");
      ops.GeluForward(dx.get(), dx.get(), n);  // y aliases x
      ExpectClose(Download(ops, dx), wy, tol_, "GeluForward in place");
    }
  });
}

// ActivationForward / ActivationBackward for every activation, against the references above
// (GELU's erf form and its tanh form) and max(x, 0) for ReLU, in place as the model runs them.
TEST_P(OpsTest, ActivationsForwardBackwardInPlace) {
  struct Case {
    Activation act;
    const char* name;
    double (*f)(double);
    double (*df)(double);
  };
  const Case cases[] = {{Activation::kGelu, "gelu", RefGelu, RefGeluGrad},
                        {Activation::kGeluTanh, "gelu_tanh", RefGeluTanh, RefGeluTanhGrad},
                        {Activation::kRelu, "relu", [](double x) { return x > 0 ? x : 0.0; },
                         [](double x) { return x > 0 ? 1.0 : 0.0; }}};
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (const Case& c : cases) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE(std::string(c.name) + " n=" + std::to_string(n));
        Vec x = Quantize<T>(Random(rng_, n, -6, 6));
        x[0] = 0;  // ReLU's kink: derivative 0 there
        const Vec dy = Quantize<T>(Random(rng_, n));
        Vec wy(n), wdx(n);
        for (int64_t i = 0; i < n; ++i) {
          wy[i] = c.f(x[i]);
          wdx[i] = dy[i] * c.df(x[i]);
        }
        auto dx = Upload(ops, x), ddy = Upload(ops, dy);
        DevBuf<T, T> y(ops, n);
        ops.ActivationForward(c.act, dx.get(), y.get(), n);
        ExpectClose(Download(ops, y), wy, tol_, "ActivationForward");
        ops.ActivationBackward(c.act, dx.get(), ddy.get(), ddy.get(), n);  // dx aliases dy
        ExpectClose(Download(ops, ddy), wdx, tol_, "ActivationBackward in place");
        ops.ActivationForward(c.act, dx.get(), dx.get(), n);  // y aliases x
        ExpectClose(Download(ops, dx), wy, tol_, "ActivationForward in place");
      }
    }
  });
}

TEST_P(OpsTest, TanhForwardBackwardInPlace) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (int64_t n : kSizes) {
      SCOPED_TRACE("n=" + std::to_string(n));
      const Vec x = Quantize<T>(Random(rng_, n, -4, 4)), dy = Quantize<T>(Random(rng_, n));
      Vec wy(n);
      for (int64_t i = 0; i < n; ++i) wy[i] = std::tanh(x[i]);
      auto dx = Upload(ops, x), ddy = Upload(ops, dy);
      ops.TanhForward(dx.get(), dx.get(), n);
      const Vec y = Download(ops, dx);
      ExpectClose(y, wy, tol_, "TanhForward in place");
      // Backward from the backend's own y (as the model calls it).
      Vec wdx(n);
      for (int64_t i = 0; i < n; ++i) wdx[i] = dy[i] * (1 - y[i] * y[i]);
      ops.TanhBackward(dx.get(), ddy.get(), ddy.get(), n);
      ExpectClose(Download(ops, ddy), wdx, tol_, "TanhBackward in place");
    }
  });
}

// ---- Attention softmax --------------------------------------------------------------------

// probs for scores [B, H, Sq, Sk]; masked keys 0 (kernels/ops.h: padding, other segments,
// causal); all-masked rows 0.
Vec RefSoftmax(const Vec& s, int B, int H, int Sq, int Sk, double scale, const IVec* segments,
               bool causal) {
  Vec p(s.size(), 0.0);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      for (int q = 0; q < Sq; ++q) {
        const int64_t row = ((int64_t{b} * H + h) * Sq + q) * Sk;
        auto ok = [&](int k) {
          if (segments == nullptr) return !(causal && k > q);
          const int32_t own = Sq == Sk ? (*segments)[b * Sk + q] : 0;
          return testing_util::RefVisible(own, (*segments)[b * Sk + k], causal, q, k);
        };
        double mx = -std::numeric_limits<double>::infinity();
        for (int k = 0; k < Sk; ++k) {
          if (ok(k)) mx = std::max(mx, scale * s[row + k]);
        }
        if (std::isinf(mx)) continue;
        double sum = 0;
        for (int k = 0; k < Sk; ++k) {
          if (ok(k)) sum += std::exp(scale * s[row + k] - mx);
        }
        for (int k = 0; k < Sk; ++k) {
          if (ok(k)) p[row + k] = std::exp(scale * s[row + k] - mx) / sum;
        }
      }
    }
  }
  return p;
}

Vec RefSoftmaxBackward(const Vec& p, const Vec& dp, int64_t rows, int Sk, double scale) {
  Vec ds(p.size());
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0;
    for (int k = 0; k < Sk; ++k) dot += p[r * Sk + k] * dp[r * Sk + k];
    for (int k = 0; k < Sk; ++k) ds[r * Sk + k] = scale * p[r * Sk + k] * (dp[r * Sk + k] - dot);
  }
  return ds;
}

TEST(ReferenceTest, SoftmaxBackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  const int B = 2, H = 1, S = 5;
  const double scale = 0.7;
  const IVec valid = {1, 1, 0, 1, 1, 0, 0, 0, 0, 0};  // batch 1 fully padded
  for (bool causal : {false, true}) {
    const Vec s = Random(rng, B * H * S * S, -2, 2), w = Random(rng, B * H * S * S);
    const Vec p = RefSoftmax(s, B, H, S, S, scale, &valid, causal);
    const Vec ds = RefSoftmaxBackward(p, w, B * H * S, S, scale);
    const Vec fd = NumericGradient(
        [&](const Vec& v) {
          return WeightedSum(RefSoftmax(v, B, H, S, S, scale, &valid, causal), w);
        },
        s);
    ExpectClose(fd, ds, kFdTol, causal ? "causal" : "padding");
  }
}

TEST_P(OpsTest, SoftmaxMasksAndBackward) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    enum Mask { kNone, kPadding, kPacked };
    struct Case {
      int B, H, Sq, Sk;
      Mask mask;
      bool causal;
      double offset;  // added to every score: large values test the max subtraction
    };
    const double scale = 1 / std::sqrt(7.0);
    for (const Case& c :
         {Case{1, 1, 1, 1, kNone, false, 0}, Case{2, 3, 7, 7, kNone, false, 0},
          Case{2, 3, 7, 7, kPadding, false, 0}, Case{1, 2, 9, 9, kNone, true, 0},
          Case{3, 2, 9, 9, kPadding, true, 300}, Case{1, 1, 3, 129, kPadding, false, 0},
          Case{2, 4, 37, 37, kPadding, true, 0}, Case{4, 4, 65, 65, kNone, false, 0},
          Case{3, 2, 37, 37, kPacked, true, 0}, Case{2, 2, 130, 130, kPacked, false, 0}}) {
      SCOPED_TRACE("B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) +
                   " Sq=" + std::to_string(c.Sq) + " Sk=" + std::to_string(c.Sk) +
                   " mask=" + std::to_string(c.mask) + " causal=" + std::to_string(c.causal));
      const int64_t rows = int64_t{c.B} * c.H * c.Sq, n = rows * c.Sk;
      Vec s = Random(rng_, n, -4, 4);
      for (double& v : s) v += c.offset;
      if (c.offset != 0) {
        // Every scaled score overflows float's exp: softmax without max subtraction gives inf/inf.
        ASSERT_GT((c.offset - 4) * scale, std::log(std::numeric_limits<float>::max()));
      }
      s = Quantize<T>(s);
      const Vec dp = Quantize<T>(Random(rng_, n));
      // Padding: batch 0 keeps its keys but the first (so causal row 0 is fully masked), the last
      // batch is fully padded, others random. Packed: sentences of several lengths and a padding
      // tail per row (testing_util::PackedSegments); probabilities across sentences must be 0.
      IVec valid(int64_t{c.B} * c.Sk, 1);
      if (c.mask == kPadding) {
        valid[0] = c.Sk > 1 ? 0 : 1;
        for (int b = 1; b < c.B; ++b) {
          for (int k = 0; k < c.Sk; ++k) valid[b * c.Sk + k] = (b == c.B - 1) ? 0 : (k % 3 != 1);
        }
      } else if (c.mask == kPacked) {
        valid = testing_util::PackedSegments(c.B, c.Sk);
      }
      const bool masked = c.mask != kNone;
      const Vec wp =
          RefSoftmax(s, c.B, c.H, c.Sq, c.Sk, scale, masked ? &valid : nullptr, c.causal);
      auto ds = Upload(ops, s);
      auto dv = UploadInt(ops, valid);
      DevBuf<T, T> probs(ops, n);
      ops.SoftmaxForward(ds.get(), probs.get(), c.B, c.H, c.Sq, c.Sk, T(scale),
                         masked ? dv.get() : nullptr, c.causal);
      const Vec got = Download(ops, probs);
      ExpectClose(got, wp, tol_, "SoftmaxForward");
      for (int64_t i = 0; i < n; ++i) {
        if (wp[i] == 0) {
          ASSERT_EQ(got[i], 0.0) << "masked probability at " << i << " not 0";
        }
      }
      ops.SoftmaxForward(ds.get(), ds.get(), c.B, c.H, c.Sq, c.Sk, T(scale),
                         masked ? dv.get() : nullptr, c.causal);  // probs aliases scores
      ExpectClose(Download(ops, ds), wp, tol_, "SoftmaxForward in place");

      // Backward from the backend's probabilities.
      const Vec wds = RefSoftmaxBackward(got, dp, rows, c.Sk, scale);
      auto ddp = Upload(ops, dp);
      DevBuf<T, T> dsc(ops, n);
      ops.SoftmaxBackward(probs.get(), ddp.get(), dsc.get(), rows, c.Sk, T(scale));
      ExpectClose(Download(ops, dsc), wds, tol_, "SoftmaxBackward");
      ops.SoftmaxBackward(probs.get(), ddp.get(), ddp.get(), rows, c.Sk, T(scale));
      ExpectClose(Download(ops, ddp), wds, tol_, "SoftmaxBackward in place");
    }
  });
}

// ---- Dropout ------------------------------------------------------------------------------

TEST_P(OpsTest, DropoutMaskFollowsPhiloxDefinitionAndScales) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int64_t n = 10007;                               // odd: the last Philox group is partial
    const Vec x = Quantize<T>(Random(rng_, n, 0.5, 1.5));  // nonzero, so zeros mean "dropped"
    const float rate = 0.1f;
    const DropoutKey key{0x123456789abcdefULL, (uint64_t{5} << 32) | 77, 3, 2};
    auto dx = Upload(ops, x);
    DevBuf<T, T> y(ops, n);
    ops.Dropout(dx.get(), y.get(), n, rate, key);
    const Vec got = Download(ops, y);
    Vec want(n);
    const double inv_keep = 1.0 / (1.0 - static_cast<double>(rate));
    for (int64_t i = 0; i < n; ++i) want[i] = RefKeep(key, i, rate) ? x[i] * inv_keep : 0.0;
    ExpectClose(got, want, tol_, "Dropout vs the documented Philox mask");

    // Backward: the same call on the gradient applies the same mask and scale.
    const Vec g = Quantize<T>(Random(rng_, n, 0.5, 1.5));
    auto dg = Upload(ops, g);
    ops.Dropout(dg.get(), dg.get(), n, rate, key);  // in place
    const Vec gg = Download(ops, dg);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(gg[i] == 0, got[i] == 0) << "backward mask differs at " << i;
    }
  });
}

TEST_P(OpsTest, DropoutDependsOnEveryKeyFieldAndKeepsOneMinusRate) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int64_t n = 100003;
    auto ones = Upload(ops, Vec(n, 1.0));
    DevBuf<T, T> y(ops, n);
    auto mask = [&](const DropoutKey& key, float rate) {
      ops.Dropout(ones.get(), y.get(), n, rate, key);
      const Vec v = Download(ops, y);
      std::vector<bool> m(n);
      for (int64_t i = 0; i < n; ++i) m[i] = v[i] != 0;
      return m;
    };
    const DropoutKey base{42, 7, 1, 0};
    const std::vector<bool> m0 = mask(base, 0.1f);
    EXPECT_EQ(m0, mask(base, 0.1f)) << "same key and indices must give the same mask";
    for (auto [name, key] : {std::pair{"seed", DropoutKey{43, 7, 1, 0}},
                             {"step", DropoutKey{42, 8, 1, 0}},
                             {"step high word", DropoutKey{42, 7 + (uint64_t{1} << 32), 1, 0}},
                             {"layer", DropoutKey{42, 7, 2, 0}},
                             {"site", DropoutKey{42, 7, 1, 1}}}) {
      const std::vector<bool> m = mask(key, 0.1f);
      int64_t differ = 0;
      for (int64_t i = 0; i < n; ++i) differ += m[i] != m0[i];
      // Independent masks at rate 0.1 differ on 2 * 0.1 * 0.9 = 18% of elements.
      EXPECT_GT(differ, n / 10) << "changing the " << name << " barely changed the mask";
    }
    for (float rate : {0.1f, 0.5f, 0.9f}) {
      const std::vector<bool> m = mask(base, rate);
      const double kept = static_cast<double>(std::count(m.begin(), m.end(), true));
      const double expect = n * (1.0 - rate);
      const double sigma = std::sqrt(n * rate * (1.0 - rate));
      EXPECT_NEAR(kept, expect, 5 * sigma) << "rate " << rate;
      // Kept elements carry 1 / (1 - rate).
      const Vec v = Download(ops, y);
      for (int64_t i = 0; i < n; ++i) {
        if (v[i] != 0) {
          ASSERT_NEAR(v[i], 1.0 / (1.0 - rate), tol_.atol + tol_.rtol * 10) << "rate " << rate;
        }
      }
    }
    // rate 0 copies.
    const Vec x = Quantize<T>(Random(rng_, n));
    auto dx = Upload(ops, x);
    ops.Dropout(dx.get(), y.get(), n, 0.0f, base);
    ExpectClose(Download(ops, y), x, {0, 0}, "rate 0 copies");
  });
}

// ---- Fused attention ----------------------------------------------------------------------

// The reference backward is the derivative of the reference forward.
TEST(FusedAttentionReference, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(4);
  const int B = 2, S = 5, H = 2, D = 3;
  const IVec valid = {1, 1, 1, 0, 1, 1, 0, 1, 1, 1};
  const RefAttention ref{B, S, H, D, 0.6, &valid, true, 0.3f, DropoutKey{5, 6, 7, 0}};
  const int64_t n = int64_t{B} * S * H * D;
  const Vec q = Random(rng, n), k = Random(rng, n), v = Random(rng, n), w = Random(rng, n);
  Vec dq, dk, dv;
  ref.Backward(q, k, v, w, &dq, &dk, &dv);
  auto loss = [&](const Vec& qq, const Vec& kk, const Vec& vv) {
    Vec out, lse;
    ref.Forward(qq, kk, vv, &out, &lse);
    return WeightedSum(out, w);
  };
  ExpectClose(NumericGradient([&](const Vec& x) { return loss(x, k, v); }, q), dq, kFdTol, "dq");
  ExpectClose(NumericGradient([&](const Vec& x) { return loss(q, x, v); }, k), dk, kFdTol, "dk");
  ExpectClose(NumericGradient([&](const Vec& x) { return loss(q, k, x); }, v), dv, kFdTol, "dv");
}

enum class AttentionMask { kNone, kPadding, kPacked };
struct AttentionCase {
  int B, S, H, D;
  AttentionMask mask;
  bool causal;
  float rate;
};

std::string CaseName(const AttentionCase& c) {
  return "B=" + std::to_string(c.B) + " S=" + std::to_string(c.S) + " H=" + std::to_string(c.H) +
         " D=" + std::to_string(c.D) + " mask=" + std::to_string(static_cast<int>(c.mask)) +
         " causal=" + std::to_string(c.causal) + " rate=" + std::to_string(c.rate);
}

// The case's key mask. Padding: sequence 0 loses its second key, the last sequence is fully
// padded (its queries get no keys: output 0, lse +inf), others every third key. Packed: rows of
// sentences (testing_util::PackedSegments).
IVec AttentionValid(const AttentionCase& c) {
  IVec valid(int64_t{c.B} * c.S, 1);
  if (c.mask == AttentionMask::kPadding) {
    if (c.S > 1) valid[1] = 0;
    for (int b = 1; b < c.B; ++b) {
      for (int s = 0; s < c.S; ++s) valid[b * c.S + s] = b == c.B - 1 ? 0 : (s % 3 != 2);
    }
  } else if (c.mask == AttentionMask::kPacked) {
    valid = testing_util::PackedSegments(c.B, c.S);
  }
  return valid;
}

double LargestAbs(const Vec& x) {
  double m = 0;
  for (double e : x) m = std::max(m, std::fabs(e));
  return m;
}

// dq and dk sum P (dP - D) k (or q) over keys, dP = dout . v, D = dout . out: with bf16 operands
// each term errs relative to |dP| and |D|, not to their difference, which cancels (to 0 exactly
// with one key: the H100 gave 6e-4 against 0 at S = 1 on 2026-12-06). This bounds |dP| and |D|:
// the largest row sum of |dout| times max |v|, scaled up by dropout.
double DpBound(const AttentionCase& c, double scale, const Vec& dout, const Vec& v) {
  double dout_row = 0;
  for (size_t r = 0; r < dout.size() / c.D; ++r) {
    double sum = 0;
    for (int d = 0; d < c.D; ++d) sum += std::fabs(dout[r * c.D + d]);
    dout_row = std::max(dout_row, sum);
  }
  return scale * dout_row * LargestAbs(v) / (1.0 - c.rate);
}

// lse: +inf exactly where the reference's is (queries with no key), close elsewhere.
void ExpectLseClose(const Vec& got_lse, const Vec& want_lse, const Tol& tol) {
  Vec finite_got, finite_want;
  for (size_t i = 0; i < want_lse.size(); ++i) {
    if (std::isinf(want_lse[i])) {
      EXPECT_TRUE(std::isinf(got_lse[i]) && got_lse[i] > 0) << "lse " << i << " " << got_lse[i];
    } else {
      finite_got.push_back(got_lse[i]);
      finite_want.push_back(want_lse[i]);
    }
  }
  ExpectClose(finite_got, finite_want, tol, "lse");
}

// One case of the fused attention forward and backward against RefAttention. With `bf16` (the
// CUDA kernel, which multiplies bf16-rounded operands with fp32 accumulation) errors are a few
// parts in a thousand of the largest value; otherwise `tol` x 10.
template <typename T>
void CheckFusedAttention(Ops<T>& ops, const AttentionCase& c, std::mt19937_64& rng, bool bf16,
                         const Tol& tol) {
  SCOPED_TRACE(CaseName(c));
  const int64_t n = int64_t{c.B} * c.S * c.H * c.D, rows = int64_t{c.B} * c.H * c.S;
  const IVec valid = AttentionValid(c);
  const bool masked = c.mask != AttentionMask::kNone;
  const DropoutKey key{77, 3, 2, 0};
  const RefAttention ref{
      c.B,      c.S,    c.H, c.D, 1 / std::sqrt(double(c.D)), masked ? &valid : nullptr,
      c.causal, c.rate, key};
  const Vec q = Quantize<T>(Random(rng, n, -2, 2)), k = Quantize<T>(Random(rng, n, -2, 2));
  const Vec v = Quantize<T>(Random(rng, n)), dout = Quantize<T>(Random(rng, n));
  Vec want_out, want_lse, want_dq, want_dk, want_dv;
  ref.Forward(q, k, v, &want_out, &want_lse);
  ref.Backward(q, k, v, dout, &want_dq, &want_dk, &want_dv);

  auto dq_in = Upload(ops, q), dk_in = Upload(ops, k), dv_in = Upload(ops, v);
  auto ddout = Upload(ops, dout);
  auto dvalid = UploadInt(ops, valid);
  DevBuf<T, T> out(ops, n), lse(ops, rows), gq(ops, n), gk(ops, n), gv(ops, n), delta(ops, rows);
  const int32_t* kv = masked ? dvalid.get() : nullptr;
  ops.AttentionForward(dq_in.get(), dk_in.get(), dv_in.get(), c.B, c.S, c.H, c.D, T(ref.scale), kv,
                       c.causal, c.rate, key, out.get(), lse.get());
  ops.AttentionBackward(dq_in.get(), dk_in.get(), dv_in.get(), out.get(), ddout.get(), lse.get(),
                        c.B, c.S, c.H, c.D, T(ref.scale), kv, c.causal, c.rate, key, gq.get(),
                        gk.get(), gv.get(), delta.get());
  // `terms`: the size of what an output sums before it cancels, where it does.
  auto tol_for = [&](const Vec& want, double terms = 0) {
    if (!bf16) return tol.Times(10);
    return Tol{1e-2 * std::max(LargestAbs(want), terms), 1e-2};
  };
  const double dp = DpBound(c, ref.scale, dout, v);
  ExpectLseClose(Download(ops, lse), want_lse, bf16 ? Tol{1e-2, 1e-2} : tol.Times(10));
  ExpectClose(Download(ops, out), want_out, tol_for(want_out), "out");
  ExpectClose(Download(ops, gq), want_dq, tol_for(want_dq, dp * LargestAbs(k)), "dq");
  ExpectClose(Download(ops, gk), want_dk, tol_for(want_dk, dp * LargestAbs(q)), "dk");
  ExpectClose(Download(ops, gv), want_dv, tol_for(want_dv), "dv");
}

TEST_P(OpsTest, FusedAttentionForwardAndBackward) {
  const bool bf16 = GetParam() == "cuda_float";
  using M = AttentionMask;
  Run([&](auto& ops) {
    // Head sizes the CUDA kernel has; sequence lengths below, at and across its 64-row tiles;
    // packed rows of sentences whose boundaries cross tiles. On CUDA, head sizes up to 128 take
    // the backward's stored-dS path up to S = 512 (cuda::AttentionStoredDsBytes), and recompute
    // S and dP in the dQ pass beyond: the last case.
    for (const AttentionCase& c :
         std::initializer_list<AttentionCase>{{1, 1, 1, 16, M::kNone, false, 0},
                                              {2, 7, 3, 16, M::kPadding, false, 0},
                                              {2, 37, 2, 32, M::kNone, true, 0.2f},
                                              {3, 64, 1, 64, M::kPadding, true, 0},
                                              {1, 129, 2, 64, M::kPadding, false, 0.1f},
                                              {2, 70, 2, 128, M::kNone, true, 0.3f},
                                              {1, 80, 2, 256, M::kPadding, true, 0.1f},
                                              {3, 150, 2, 32, M::kPacked, true, 0.1f},
                                              {2, 90, 1, 64, M::kPacked, false, 0},
                                              {1, 520, 1, 64, M::kPadding, true, 0.1f}}) {
      CheckFusedAttention(ops, c, rng_, bf16, tol_);
    }
  });
}

// Attention across sentences of a packed row is exactly 0 on the fused path too: changing the
// keys and values of every other sentence leaves a sentence's outputs, lse and gradients
// bitwise unchanged (materialised: SoftmaxMasksAndBackward checks the zero probabilities).
TEST_P(OpsTest, FusedAttentionIgnoresOtherSegmentsExactly) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int B = 2, S = 100, H = 2, D = 32;
    const int64_t n = int64_t{B} * S * H * D, rows = int64_t{B} * H * S;
    const IVec seg = testing_util::PackedSegments(B, S);
    const int32_t kept = 4;  // row 0's fourth sentence: tokens 13 .. 76, across a 64-tile
    const Vec q = Quantize<T>(Random(rng_, n, -2, 2)), dout = Quantize<T>(Random(rng_, n));
    Vec k = Quantize<T>(Random(rng_, n, -2, 2)), v = Quantize<T>(Random(rng_, n));
    auto dseg = UploadInt(ops, seg);
    auto run = [&](const Vec& kk, const Vec& vv, Vec* out, Vec* lse, Vec* dq, Vec* dk, Vec* dv) {
      auto dq_in = Upload(ops, q), dk_in = Upload(ops, kk), dv_in = Upload(ops, vv);
      auto ddout = Upload(ops, dout);
      DevBuf<T, T> o(ops, n), l(ops, rows), gq(ops, n), gk(ops, n), gv(ops, n), delta(ops, rows);
      const DropoutKey key{1, 2, 3, 0};
      ops.AttentionForward(dq_in.get(), dk_in.get(), dv_in.get(), B, S, H, D, T(0.2), dseg.get(),
                           true, 0.1f, key, o.get(), l.get());
      ops.AttentionBackward(dq_in.get(), dk_in.get(), dv_in.get(), o.get(), ddout.get(), l.get(), B,
                            S, H, D, T(0.2), dseg.get(), true, 0.1f, key, gq.get(), gk.get(),
                            gv.get(), delta.get());
      *out = Download(ops, o);
      *lse = Download(ops, l);
      *dq = Download(ops, gq);
      *dk = Download(ops, gk);
      *dv = Download(ops, gv);
    };
    Vec out[2], lse[2], dq[2], dk[2], dv[2];
    run(k, v, &out[0], &lse[0], &dq[0], &dk[0], &dv[0]);
    for (int64_t t = 0; t < int64_t{B} * S; ++t) {
      if (t < S && seg[t] == kept) continue;
      for (int64_t j = 0; j < int64_t{H} * D; ++j) {
        k[t * H * D + j] = Quantize<T>(Vec{k[t * H * D + j] + 1.5})[0];
        v[t * H * D + j] = Quantize<T>(Vec{-v[t * H * D + j] + 0.25})[0];
      }
    }
    run(k, v, &out[1], &lse[1], &dq[1], &dk[1], &dv[1]);
    int checked = 0;
    for (int s = 0; s < S; ++s) {
      if (seg[s] != kept) continue;
      ++checked;
      for (int h = 0; h < H; ++h) {
        ASSERT_EQ(lse[1][int64_t{h} * S + s], lse[0][int64_t{h} * S + s]) << "lse, token " << s;
        for (int j = 0; j < D; ++j) {
          const int64_t i = (int64_t{s} * H + h) * D + j;
          ASSERT_EQ(out[1][i], out[0][i]) << "out, token " << s;
          ASSERT_EQ(dq[1][i], dq[0][i]) << "dq, token " << s;
          ASSERT_EQ(dk[1][i], dk[0][i]) << "dk, token " << s;
          ASSERT_EQ(dv[1][i], dv[0][i]) << "dv, token " << s;
        }
      }
    }
    EXPECT_EQ(checked, 64);
    EXPECT_NE(out[1], out[0]) << "the other sentences' outputs should change";
  });
}

// ---- Embeddings and row gathers ------------------------------------------------------------

TEST_P(OpsTest, EmbeddingForwardAndBackwardWithRepeatedIds) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int vocab = 11;
    for (int d : {1, 7, 129}) {
      for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{600}}) {
        SCOPED_TRACE("d=" + std::to_string(d) + " n=" + std::to_string(n));
        const IVec ids = RandomInts(rng_, n, 0, vocab - 1);  // repeats are certain for n > 11
        const Vec table = Quantize<T>(Random(rng_, int64_t{vocab} * d));
        const Vec out0 = Quantize<T>(Random(rng_, n * d));
        auto dids = UploadInt(ops, ids);
        auto dtable = Upload(ops, table);
        auto dout = Upload(ops, out0);
        ops.EmbeddingForward(dids.get(), dtable.get(), n, d, dout.get(), /*accumulate=*/false);
        Vec want(n * d);
        for (int64_t i = 0; i < n; ++i) {
          for (int c = 0; c < d; ++c) want[i * d + c] = table[int64_t{ids[i]} * d + c];
        }
        ExpectClose(Download(ops, dout), want, {0, 0}, "EmbeddingForward");
        ops.EmbeddingForward(dids.get(), dtable.get(), n, d, dout.get(), /*accumulate=*/true);
        for (double& v : want) v *= 2;
        ExpectClose(Download(ops, dout), want, tol_, "EmbeddingForward accumulate");

        // Backward accumulates into an existing gradient.
        const Vec dy = Quantize<T>(Random(rng_, n * d));
        const Vec dtable0 = Quantize<T>(Random(rng_, int64_t{vocab} * d));
        auto ddy = Upload(ops, dy);
        auto dgrad = Upload(ops, dtable0);
        ops.EmbeddingBackward(dids.get(), ddy.get(), n, d, dgrad.get());
        Vec wgrad = dtable0;
        for (int64_t i = 0; i < n; ++i) {
          for (int c = 0; c < d; ++c) wgrad[int64_t{ids[i]} * d + c] += dy[i * d + c];
        }
        const Vec got = Download(ops, dgrad);
        ExpectClose(got, wgrad, tol_.Times(std::sqrt(n)), "EmbeddingBackward");
        // Deterministic: the same call again gives bit-identical sums.
        auto dgrad2 = Upload(ops, dtable0);
        ops.EmbeddingBackward(dids.get(), ddy.get(), n, d, dgrad2.get());
        ExpectClose(Download(ops, dgrad2), got, {0, 0}, "EmbeddingBackward is deterministic");
      }
    }
  });
}

TEST_P(OpsTest, GatherRowsAndScatterAddRows) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int src_rows = 13;
    for (int d : {1, 7, 129}) {
      for (int64_t m : {int64_t{1}, int64_t{9}, int64_t{301}}) {
        SCOPED_TRACE("d=" + std::to_string(d) + " m=" + std::to_string(m));
        const IVec idx = RandomInts(rng_, m, 0, src_rows - 1);
        const Vec src = Quantize<T>(Random(rng_, int64_t{src_rows} * d));
        auto didx = UploadInt(ops, idx);
        auto dsrc = Upload(ops, src);
        DevBuf<T, T> dst(ops, m * d);
        ops.GatherRows(dsrc.get(), didx.get(), m, d, dst.get());
        Vec want(m * d);
        for (int64_t i = 0; i < m; ++i) {
          for (int c = 0; c < d; ++c) want[i * d + c] = src[int64_t{idx[i]} * d + c];
        }
        ExpectClose(Download(ops, dst), want, {0, 0}, "GatherRows");

        const Vec g = Quantize<T>(Random(rng_, m * d));
        const Vec base = Quantize<T>(Random(rng_, int64_t{src_rows} * d));
        auto dg = Upload(ops, g);
        auto dbase = Upload(ops, base);
        ops.ScatterAddRows(dg.get(), didx.get(), m, d, dbase.get());
        Vec wbase = base;
        for (int64_t i = 0; i < m; ++i) {
          for (int c = 0; c < d; ++c) wbase[int64_t{idx[i]} * d + c] += g[i * d + c];
        }
        ExpectClose(Download(ops, dbase), wbase, tol_.Times(std::sqrt(m)), "ScatterAddRows");
      }
    }
  });
}

// ---- Cross-entropy ------------------------------------------------------------------------

// tensor2tensor's smoothing_cross_entropy from its definition: the target q (1 - eps on the
// label, eps / (V - 1) elsewhere), loss = -sum_v q_v log p_v - H(q), gradient of
// sum_r scale * w_r * loss_r = scale * w_r * (p - q).
void RefSmoothedCrossEntropy(const Vec& x, const IVec& labels, const Vec* w, int64_t rows, int V,
                             double eps, double scale, Vec* losses, Vec* dx) {
  losses->assign(rows, 0);
  dx->assign(x.size(), 0);
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] < 0) continue;
    double mx = x[r * V];
    for (int c = 0; c < V; ++c) mx = std::max(mx, x[r * V + c]);
    double sum = 0;
    for (int c = 0; c < V; ++c) sum += std::exp(x[r * V + c] - mx);
    const double lse = mx + std::log(sum);
    double loss = 0, entropy = 0;
    const double coef = scale * (w ? (*w)[r] : 1.0);
    for (int c = 0; c < V; ++c) {
      const double q = c == labels[r] ? 1 - eps : eps / (V - 1);
      const double log_p = x[r * V + c] - lse;
      loss -= q * log_p;
      if (q > 0) entropy -= q * std::log(q);
      (*dx)[r * V + c] = coef * (std::exp(log_p) - q);
    }
    (*losses)[r] = loss - entropy;
  }
}

// losses and dlogits (gradient of sum_r scale * w_r * loss_r) in double: the one-hot target.
void RefCrossEntropy(const Vec& x, const IVec& labels, const Vec* w, int64_t rows, int V,
                     double scale, Vec* losses, Vec* dx) {
  RefSmoothedCrossEntropy(x, labels, w, rows, V, 0.0, scale, losses, dx);
}

TEST(ReferenceTest, CrossEntropyGradientMatchesFiniteDifferences) {
  std::mt19937_64 rng(3);
  const int64_t rows = 4;
  const int V = 6;
  const Vec x = Random(rng, rows * V, -3, 3), w = {0.5, 2, 1, 0.25};
  const IVec labels = {2, -1, 0, 5};
  Vec losses, dx;
  RefCrossEntropy(x, labels, &w, rows, V, 0.7, &losses, &dx);
  const Vec fd = NumericGradient(
      [&](const Vec& v) {
        Vec l, unused;
        RefCrossEntropy(v, labels, &w, rows, V, 0.7, &l, &unused);
        return 0.7 * WeightedSum(l, w);
      },
      x);
  ExpectClose(fd, dx, kFdTol, "cross-entropy gradient");
}

// Added to the first row's logits in SoftmaxCrossEntropyLossesAndGradient: with logits in
// [95, 105], exp overflows float (exp(88.7) is FLT_MAX) for every one of them.
constexpr double kLargeLogit = 100;
static_assert(kLargeLogit - 5 > 88.73, "must overflow float's exp");

// Cross-entropy losses against the float64 reference with the error float arithmetic really
// makes: a loss is logsumexp(x) - x[label], a difference of terms as large as the row's largest
// |logit| (plus log V), each rounded to T, so the allowed error is a few units of T's epsilon
// times that magnitude: ~2e-5 on the large row and ~2e-6 elsewhere in float.
template <typename T>
void ExpectLossesClose(const Vec& got, const Vec& want, const Vec& logits, int V,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  constexpr double kUlps = 8;
  const double eps = std::numeric_limits<T>::epsilon();
  int bad = 0;
  for (size_t r = 0; r < got.size(); ++r) {
    double magnitude = std::log(static_cast<double>(V)) + 1;
    for (int c = 0; c < V; ++c) magnitude = std::max(magnitude, std::fabs(logits[r * V + c]));
    const double err = std::fabs(got[r] - want[r]);
    const double allowed = kUlps * eps * magnitude;
    if (!(err <= allowed)) {  // also catches NaN
      if (++bad <= 5) {
        ADD_FAILURE() << what << ": row " << r << " got " << got[r] << " want " << want[r]
                      << " (error " << err << ", allowed " << allowed << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " losses off";
}

TEST_P(OpsTest, SoftmaxCrossEntropyLossesAndGradient) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [rows, V] : {std::pair<int64_t, int>{1, 1}, {1, 7}, {9, 37}, {37, 129}, {5, 8193}}) {
      for (bool weighted : {false, true}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " V=" + std::to_string(V) +
                     " weighted=" + std::to_string(weighted));
        Vec x = Random(rng_, rows * V, -5, 5);
        // Row 0 large: exp of each of its logits overflows float, so only a max-subtracted
        // log-sum-exp gives a finite loss there.
        for (int64_t i = 0; i < V; ++i) x[i] += kLargeLogit;
        x = Quantize<T>(x);
        IVec labels = RandomInts(rng_, rows, 0, V - 1);
        for (int64_t r = 1; r < rows; r += 3) labels[r] = -1;  // ignored rows
        const Vec w = Quantize<T>(Random(rng_, rows, 0, 2));
        const double scale = 0.3;
        Vec wl, wdx;
        RefCrossEntropy(x, labels, weighted ? &w : nullptr, rows, V, scale, &wl, &wdx);

        auto dx = Upload(ops, x);
        auto dl = UploadInt(ops, labels);
        auto dw = Upload(ops, w);
        DevBuf<T, T> losses(ops, rows), grad(ops, rows * V);
        // Losses only.
        ops.SoftmaxCrossEntropy(dx.get(), dl.get(), weighted ? dw.get() : nullptr, rows, V,
                                losses.get(), nullptr, T(scale));
        ExpectLossesClose<T>(Download(ops, losses), wl, x, V, "losses (no gradient)");
        ops.SoftmaxCrossEntropy(dx.get(), dl.get(), weighted ? dw.get() : nullptr, rows, V,
                                losses.get(), grad.get(), T(scale));
        ExpectLossesClose<T>(Download(ops, losses), wl, x, V, "losses");
        ExpectClose(Download(ops, grad), wdx, tol_, "dlogits");
        // dlogits aliasing logits.
        ops.SoftmaxCrossEntropy(dx.get(), dl.get(), weighted ? dw.get() : nullptr, rows, V,
                                losses.get(), dx.get(), T(scale));
        ExpectLossesClose<T>(Download(ops, losses), wl, x, V, "losses (in place)");
        ExpectClose(Download(ops, dx), wdx, tol_, "dlogits in place");
      }
    }
  });
}

// A padded vocabulary (kernels/ops.h: rows ld apart, columns V .. ld-1 no class): the padding
// holds logits far larger than the real ones, so any that leaked into the softmax would change
// the loss; the losses and the first V gradient columns must be the unpadded reference's, and
// the padded gradient columns exactly 0 (also where they alias the logits).
TEST_P(OpsTest, CrossEntropyIgnoresPaddedColumns) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    const int64_t rows = 7;
    const int V = 37, ld = 128;
    for (double eps : {0.0, 0.1}) {
      SCOPED_TRACE("eps=" + std::to_string(eps));
      const Vec x = Quantize<T>(Random(rng_, rows * V, -5, 5));
      Vec padded(static_cast<size_t>(rows * ld), 0);
      for (int64_t r = 0; r < rows; ++r) {
        for (int c = 0; c < ld; ++c) padded[r * ld + c] = c < V ? x[r * V + c] : 50.0 + c;
      }
      IVec labels = RandomInts(rng_, rows, 0, V - 1);
      labels[3] = -1;  // an ignored row: all zero gradient
      const Vec w = Quantize<T>(Random(rng_, rows, 0, 2));
      const T eps_t = static_cast<T>(eps);
      Vec wl, wdx;
      RefSmoothedCrossEntropy(x, labels, &w, rows, V, static_cast<double>(eps_t), 0.3, &wl, &wdx);
      auto dx = Upload(ops, padded);
      auto dl = UploadInt(ops, labels);
      auto dw = Upload(ops, w);
      DevBuf<T, T> losses(ops, rows);
      ops.LabelSmoothedCrossEntropy(dx.get(), dl.get(), dw.get(), rows, V, ld, eps_t, losses.get(),
                                    dx.get(), T(0.3));
      ExpectClose(Download(ops, losses), wl, tol_.Times(70), "losses");
      const Vec grad = Download(ops, dx);
      Vec real(static_cast<size_t>(rows * V));
      for (int64_t r = 0; r < rows; ++r) {
        for (int c = 0; c < ld; ++c) {
          if (c < V) {
            real[r * V + c] = grad[r * ld + c];
          } else {
            ASSERT_EQ(grad[r * ld + c], 0.0) << "row " << r << " padded column " << c;
          }
        }
      }
      ExpectClose(real, wdx, tol_, "dlogits of the real columns");
    }
  });
}

TEST(ReferenceTest, SmoothedCrossEntropyByHandAndByFiniteDifferences) {
  // By hand: uniform logits over V = 3 with eps = 0.1: q = (0.9, 0.05, 0.05), p = 1/3, so the
  // loss is log 3 - H(q) = log 3 + 0.9 log 0.9 + 0.1 log 0.05 = 1.0986122887 - 0.0948244641 -
  // 0.2995732274 = 0.7042145972.
  Vec l, g;
  RefSmoothedCrossEntropy({0, 0, 0}, {0}, nullptr, 1, 3, 0.1, 1, &l, &g);
  EXPECT_NEAR(l[0], std::log(3.0) + 0.9 * std::log(0.9) + 0.1 * std::log(0.05), 1e-15);
  EXPECT_NEAR(l[0], 0.7042145972, 1e-9);
  // Logits log q reach the minimum: loss 0 and gradient 0.
  RefSmoothedCrossEntropy({std::log(0.05), std::log(0.9), std::log(0.05)}, {1}, nullptr, 1, 3, 0.1,
                          1, &l, &g);
  EXPECT_NEAR(l[0], 0, 1e-15);
  for (double v : g) EXPECT_NEAR(v, 0, 1e-15);
  std::mt19937_64 rng(5);
  const int64_t rows = 3;
  const int V = 5;
  const Vec x = Random(rng, rows * V, -3, 3), w = {0.5, 2, 1};
  const IVec labels = {4, -1, 0};
  RefSmoothedCrossEntropy(x, labels, &w, rows, V, 0.2, 0.7, &l, &g);
  const Vec fd = NumericGradient(
      [&](const Vec& v) {
        Vec ll, unused;
        RefSmoothedCrossEntropy(v, labels, &w, rows, V, 0.2, 0.7, &ll, &unused);
        return 0.7 * WeightedSum(ll, w);
      },
      x);
  ExpectClose(fd, g, kFdTol, "smoothed cross-entropy gradient");
}

TEST_P(OpsTest, LabelSmoothedCrossEntropyLossesAndGradient) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (auto [rows, V] : {std::pair<int64_t, int>{1, 2}, {9, 37}, {5, 8193}}) {
      for (double eps : {0.0, 0.1, 0.5}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " V=" + std::to_string(V) +
                     " eps=" + std::to_string(eps));
        Vec x = Random(rng_, rows * V, -5, 5);
        for (int64_t i = 0; i < V; ++i) x[i] += 60;  // row 0 large: needs the max subtraction
        x = Quantize<T>(x);
        IVec labels = RandomInts(rng_, rows, 0, V - 1);
        for (int64_t r = 1; r < rows; r += 3) labels[r] = -1;  // ignored rows
        const Vec w = Quantize<T>(Random(rng_, rows, 0, 2));
        const double scale = 0.3;
        const T eps_t = static_cast<T>(eps);
        Vec wl, wdx;
        RefSmoothedCrossEntropy(x, labels, &w, rows, V, static_cast<double>(eps_t), scale, &wl,
                                &wdx);
        auto dx = Upload(ops, x);
        auto dl = UploadInt(ops, labels);
        auto dw = Upload(ops, w);
        DevBuf<T, T> losses(ops, rows), grad(ops, rows * V);
        ops.LabelSmoothedCrossEntropy(dx.get(), dl.get(), dw.get(), rows, V, V, eps_t, losses.get(),
                                      nullptr, T(scale));
        // A loss is a difference of O(|logit|) terms (smoothing weighs them by q, summing to 1).
        const Tol loss_tol = tol_.Times(70);
        ExpectClose(Download(ops, losses), wl, loss_tol, "losses (no gradient)");
        ops.LabelSmoothedCrossEntropy(dx.get(), dl.get(), dw.get(), rows, V, V, eps_t, losses.get(),
                                      grad.get(), T(scale));
        ExpectClose(Download(ops, losses), wl, loss_tol, "losses");
        ExpectClose(Download(ops, grad), wdx, tol_, "dlogits");
        ops.LabelSmoothedCrossEntropy(dx.get(), dl.get(), dw.get(), rows, V, V, eps_t, losses.get(),
                                      dx.get(), T(scale));  // dlogits aliasing logits
        ExpectClose(Download(ops, losses), wl, loss_tol, "losses (in place)");
        ExpectClose(Download(ops, dx), wdx, tol_, "dlogits in place");
      }
    }
  });
}

// ---- Reductions ---------------------------------------------------------------------------

TEST_P(OpsTest, DotAccumulatesAccurately) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{129}, int64_t{70001}, int64_t{1000003}}) {
      SCOPED_TRACE("n=" + std::to_string(n));
      const Vec a = Quantize<T>(Random(rng_, n)), b = Quantize<T>(Random(rng_, n));
      auto da = Upload(ops, a), db = Upload(ops, b);
      DevBuf<T, T> out(ops, 1);
      ops.Dot(da.get(), db.get(), n, out.get());
      double want = 0, sq = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        want += a[i] * b[i];
        sq += a[i] * a[i];
        mag += std::fabs(a[i] * b[i]);
      }
      // The error budget is relative to sum |a_i b_i| (the sum itself may cancel).
      EXPECT_NEAR(Download(ops, out)[0], want, tol_.atol + tol_.rtol * mag) << "Dot";
      ops.Dot(da.get(), da.get(), n, out.get());
      EXPECT_NEAR(Download(ops, out)[0], sq, tol_.atol + tol_.rtol * sq) << "sum of squares";
    }
  });
}

// ---- Optimizers ---------------------------------------------------------------------------

struct RefAdamState {
  Vec w, m, v;
};

// One AdamW (lamb = false) or LAMB step in double, exactly as ops.h states them.
void RefOptimizerStep(RefAdamState* st, const Vec& g, const OptimizerStep& s, bool lamb) {
  const size_t n = g.size();
  const double b1 = s.beta1, b2 = s.beta2;
  const double bc1 = s.bias_correction ? 1 - std::pow(b1, static_cast<double>(s.step)) : 1;
  const double bc2 = s.bias_correction ? 1 - std::pow(b2, static_cast<double>(s.step)) : 1;
  Vec u(n);
  double wn = 0, un = 0;
  for (size_t i = 0; i < n; ++i) {
    const double gs = static_cast<double>(s.grad_scale) * g[i];
    st->m[i] = b1 * st->m[i] + (1 - b1) * gs;
    st->v[i] = b2 * st->v[i] + (1 - b2) * gs * gs;
    u[i] = (st->m[i] / bc1) / (std::sqrt(st->v[i] / bc2) + static_cast<double>(s.eps)) +
           static_cast<double>(s.weight_decay) * st->w[i];
    wn += st->w[i] * st->w[i];
    un += u[i] * u[i];
  }
  const double r = !lamb ? 1.0 : (wn > 0 && un > 0 ? std::sqrt(wn) / std::sqrt(un) : 1.0);
  for (size_t i = 0; i < n; ++i) st->w[i] -= static_cast<double>(s.lr) * r * u[i];
}

TEST_P(OpsTest, AdamWAndLambMatchHandFormulasOverThreeSteps) {
  Run([&](auto& ops) {
    using T = Elem<decltype(ops)>;
    for (bool lamb : {false, true}) {
      for (bool bias_correction : {false, true}) {
        for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{20011}}) {
          for (bool zero_w : {false, true}) {
            if (zero_w && !lamb) continue;  // zero weights matter for LAMB's trust ratio only
            SCOPED_TRACE(std::string(lamb ? "LAMB" : "AdamW") +
                         " bias_correction=" + std::to_string(bias_correction) +
                         " n=" + std::to_string(n) + " zero_w=" + std::to_string(zero_w));
            RefAdamState st{zero_w ? Vec(n, 0.0) : Quantize<T>(Random(rng_, n)), Vec(n, 0.0),
                            Vec(n, 0.0)};
            auto dw = Upload(ops, st.w);
            DevBuf<T, T> dm(ops, n), dv(ops, n), scratch(ops, n);
            OptimizerStep s;
            s.lr = 0.01f;
            s.beta1 = 0.9f;
            s.beta2 = 0.99f;
            s.eps = 1e-6f;
            s.weight_decay = 0.01f;
            s.bias_correction = bias_correction;
            s.grad_scale = 0.5f;
            for (int step = 1; step <= 3; ++step) {
              s.step = step;
              const Vec g = Quantize<T>(Random(rng_, n));
              auto dg = Upload(ops, g);
              if (lamb) {
                ops.Lamb(dw.get(), dg.get(), dm.get(), dv.get(), n, s, scratch.get());
              } else {
                ops.AdamW(dw.get(), dg.get(), dm.get(), dv.get(), n, s);
              }
              RefOptimizerStep(&st, g, s, lamb);
            }
            ExpectClose(Download(ops, dm), st.m, tol_.Times(4), "m");
            ExpectClose(Download(ops, dv), st.v, tol_.Times(4), "v");
            // m / sqrt(v) amplifies relative errors of v near 0; w moves by lr * O(1) per step.
            ExpectClose(Download(ops, dw), st.w, tol_.Times(10), "w");
          }
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, OpsTest,
                         ::testing::Values("cpu_float", "cuda_float", "cpu_double"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace headroom
