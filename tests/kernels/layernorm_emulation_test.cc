// LayerNorm's CUDA device code (kernels/cuda/layernorm_kernels.cuh) run on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float> (kernels/cpu/layernorm.cc,
// and Ops' Dropout + Add + LayerNorm composition for the fused residual variants): forward,
// the fused residual + dropout + LayerNorm forward, the dx pass of backward with and without
// the fused dropout of dsub, and the input-from-output reconstruction; one row, rows no multiple
// of the 8 rows (warps) of a block (the other warps leave at once), widths below, at and above a
// warp and no multiple of it, in place where the op allows it. (The parameter gradients are the
// reduce test's column sums.)
//
// Tolerances (u = 2^-24). Exact where the device does what the twin does in float: the residual
// sum x + dropout(sub) (one product, one sum: Dropout then Add), the dropout of dsub given dx,
// the input-from-output formula. The statistics differ in summation: the device sums a row of
// `cols` floats in float, the twin in double, so the mean is within (cols + 2) u mean|x| and,
// the centred squares summing to the variance with the mean's error cancelling to first order
// (the centred values sum to 0), rstd within (cols + 8) u relative. The outputs then move by
// what those errors move them plus four roundings of the element formula:
//   y:  |dmu| |rstd gamma| + |x - mu| |rstd gamma| drstd + 4 u (|xhat gamma| + |beta|);
//   dx: rstd (dmg + |xhat| dmgx + 4 u (|dy gamma| + |mg| + |xhat mgx|)), with dmg and dmgx the
//       summation bounds of mean(dy gamma) and mean(dy gamma xhat) ((cols + 3) u of the mean
//       magnitudes).
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/layernorm_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::layernorm_kernels;
using testing_util::ExpectBitEqual;
using testing_util::RandomFloats;

constexpr double kUnitRoundoff = 0x1p-24;
constexpr float kEps = 1e-5f;
const DropoutKey kKey{1234, 5, 3, 2};

struct Shape {
  int64_t rows;
  int cols;
};
const Shape kShapes[] = {{1, 1}, {1, 5}, {7, 32}, {9, 33}, {17, 100}, {3, 300}};

unsigned RowBlocks(int64_t rows) {
  return static_cast<unsigned>(cuda::CeilDiv(rows, k::kRowsPerBlock));
}

std::string Describe(const Shape& s, float rate) {
  return "rows=" + std::to_string(s.rows) + " cols=" + std::to_string(s.cols) +
         " rate=" + std::to_string(rate);
}

// The forward outputs of the twin (want) and the device (got) against the bounds above.
void ExpectForwardWithinBand(const Shape& s, const std::vector<float>& x,
                             const std::vector<float>& gamma, const std::vector<float>& beta,
                             const std::vector<float>& want_y, const std::vector<float>& want_mean,
                             const std::vector<float>& want_rstd, const std::vector<float>& y,
                             const std::vector<float>& mean, const std::vector<float>& rstd) {
  for (int64_t r = 0; r < s.rows; ++r) {
    double abs_sum = 0;
    for (int c = 0; c < s.cols; ++c) abs_sum += std::fabs(x[r * s.cols + c]);
    const double dmu = (s.cols + 2) * kUnitRoundoff * abs_sum / s.cols;
    const double drstd = (s.cols + 8) * kUnitRoundoff;
    ASSERT_LE(std::fabs(double{mean[r]} - want_mean[r]), dmu) << "mean of row " << r;
    ASSERT_LE(std::fabs(double{rstd[r]} - want_rstd[r]), drstd * want_rstd[r]) << "rstd " << r;
    for (int c = 0; c < s.cols; ++c) {
      const int64_t i = r * s.cols + c;
      const double rg = std::fabs(double{want_rstd[r]} * gamma[c]);
      const double centred = std::fabs(double{x[i]} - want_mean[r]);
      const double bound =
          dmu * rg + centred * rg * drstd + 4 * kUnitRoundoff * (centred * rg + std::fabs(beta[c]));
      ASSERT_LE(std::fabs(double{y[i]} - want_y[i]), bound)
          << "y[" << i << "]: got " << y[i] << ", want " << want_y[i];
    }
  }
}

TEST(LayerNormKernelEmulation, ForwardAndResidualForwardWithinBandOfTwin) {
  CpuOps<float> ops(1);
  for (const Shape& s : kShapes) {
    for (float rate : {0.0f, 0.1f, 0.5f, 1.0f}) {
      SCOPED_TRACE(Describe(s, rate));
      const int64_t n = s.rows * s.cols;
      const std::vector<float> x = RandomFloats(n, -2, 3, static_cast<uint64_t>(n));
      const std::vector<float> sub = RandomFloats(n, -1, 1, static_cast<uint64_t>(n) + 1);
      const std::vector<float> gamma = RandomFloats(s.cols, 0.5f, 1.5f, 2);
      const std::vector<float> beta = RandomFloats(s.cols, -0.5f, 0.5f, 3);
      std::vector<float> want_sum(n, NAN), want_y(n, NAN), want_mean(s.rows), want_rstd(s.rows);
      std::vector<float> sum(n, NAN), y(n, NAN), mean(s.rows, NAN), rstd(s.rows, NAN);
      if (rate == 0.0f) {  // plain LayerNorm: the launcher passes no sub and no dropout
        ops.LayerNormForward(x.data(), gamma.data(), beta.data(), s.rows, s.cols, kEps,
                             want_y.data(), want_mean.data(), want_rstd.data());
        testing_util::Launch1D(
            [&] {
              k::layernorm_forward_kernel(x.data(), nullptr, k::ElementDropout{}, nullptr,
                                          gamma.data(), beta.data(), s.rows, s.cols, kEps, y.data(),
                                          mean.data(), rstd.data());
            },
            RowBlocks(s.rows), k::kBlock);
        ExpectForwardWithinBand(s, x, gamma, beta, want_y, want_mean, want_rstd, y, mean, rstd);
        continue;
      }
      ops.ResidualLayerNormForward(x.data(), sub.data(), rate, kKey, gamma.data(), beta.data(),
                                   s.rows, s.cols, kEps, want_sum.data(), want_y.data(),
                                   want_mean.data(), want_rstd.data());
      const k::ElementDropout drop =
          k::MakeElementDropout(rate, kKey.seed, kKey.step, kKey.layer, kKey.site);
      testing_util::Launch1D(
          [&] {
            k::layernorm_forward_kernel(x.data(), sub.data(), drop, sum.data(), gamma.data(),
                                        beta.data(), s.rows, s.cols, kEps, y.data(), mean.data(),
                                        rstd.data());
          },
          RowBlocks(s.rows), k::kBlock);
      ExpectBitEqual(sum, want_sum, "residual sum");
      ExpectForwardWithinBand(s, want_sum, gamma, beta, want_y, want_mean, want_rstd, y, mean,
                              rstd);
      std::vector<float> in_place = x;  // sum may overwrite x (the residual stream)
      std::vector<float> y2(n, NAN), mean2(s.rows, NAN), rstd2(s.rows, NAN);
      testing_util::Launch1D(
          [&] {
            k::layernorm_forward_kernel(in_place.data(), sub.data(), drop, in_place.data(),
                                        gamma.data(), beta.data(), s.rows, s.cols, kEps, y2.data(),
                                        mean2.data(), rstd2.data());
          },
          RowBlocks(s.rows), k::kBlock);
      ExpectBitEqual(in_place, sum, "residual sum in place");
      ExpectBitEqual(y2, y, "y with the sum in place");
    }
  }
}

TEST(LayerNormKernelEmulation, BackwardAndResidualBackwardWithinBandOfTwin) {
  CpuOps<float> ops(1);
  for (const Shape& s : kShapes) {
    for (float rate : {0.0f, 0.1f, 0.5f}) {
      SCOPED_TRACE(Describe(s, rate));
      const int64_t n = s.rows * s.cols;
      const std::vector<float> x = RandomFloats(n, -2, 3, static_cast<uint64_t>(n));
      const std::vector<float> dy = RandomFloats(n, -1, 1, static_cast<uint64_t>(n) + 1);
      const std::vector<float> gamma = RandomFloats(s.cols, 0.5f, 1.5f, 2);
      const std::vector<float> mean = RandomFloats(s.rows, -0.3f, 0.3f, 3);
      const std::vector<float> rstd = RandomFloats(s.rows, 0.5f, 2, 4);
      std::vector<float> want_dx(n, NAN), dgamma(s.cols, 0), dbeta(s.cols, 0);
      ops.LayerNormBackward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), s.rows,
                            s.cols, want_dx.data(), dgamma.data(), dbeta.data());
      const k::ElementDropout drop =
          rate > 0 ? k::MakeElementDropout(rate, kKey.seed, kKey.step, kKey.layer, kKey.site)
                   : k::ElementDropout{};
      std::vector<float> dx = dy, dsub(n, NAN);  // dx overwrites dy in place, as the model does
      testing_util::Launch1D(
          [&] {
            k::layernorm_backward_dx_kernel(dx.data(), x.data(), gamma.data(), mean.data(),
                                            rstd.data(), s.rows, s.cols, dx.data(), drop,
                                            rate > 0 ? dsub.data() : nullptr);
          },
          RowBlocks(s.rows), k::kBlock);
      for (int64_t r = 0; r < s.rows; ++r) {
        double mg = 0, mgx = 0, abs_g = 0, abs_gx = 0;
        for (int c = 0; c < s.cols; ++c) {
          const int64_t i = r * s.cols + c;
          const double g = double{dy[i]} * gamma[c], xhat = (double{x[i]} - mean[r]) * rstd[r];
          mg += g / s.cols;
          mgx += g * xhat / s.cols;
          abs_g += std::fabs(g) / s.cols;
          abs_gx += std::fabs(g * xhat) / s.cols;
        }
        const double dmg = (s.cols + 3) * kUnitRoundoff * abs_g;
        const double dmgx = (s.cols + 3) * kUnitRoundoff * abs_gx;
        for (int c = 0; c < s.cols; ++c) {
          const int64_t i = r * s.cols + c;
          const double g = double{dy[i]} * gamma[c], xhat = (double{x[i]} - mean[r]) * rstd[r];
          const double bound =
              rstd[r] *
              (dmg + std::fabs(xhat) * dmgx +
               4 * kUnitRoundoff * (std::fabs(g) + std::fabs(mg) + std::fabs(xhat * mgx)));
          ASSERT_LE(std::fabs(double{dx[i]} - want_dx[i]), bound)
              << "dx[" << i << "]: got " << dx[i] << ", want " << want_dx[i];
        }
      }
      if (rate == 0.0f) continue;
      // dsub is Dropout(dx) of the device's own dx, mask and product bit for bit.
      std::vector<float> want_dsub(n, NAN);
      ops.Dropout(dx.data(), want_dsub.data(), n, rate, kKey);
      ExpectBitEqual(dsub, want_dsub, "dsub");
    }
  }
}

TEST(LayerNormKernelEmulation, InputFromOutputMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  for (const Shape& s : kShapes) {
    const int64_t n = s.rows * s.cols;
    const std::vector<float> y = RandomFloats(n, -2, 2, static_cast<uint64_t>(n));
    const std::vector<float> gamma = RandomFloats(s.cols, 0.5f, 1.5f, 2);
    const std::vector<float> beta = RandomFloats(s.cols, -0.5f, 0.5f, 3);
    const std::vector<float> mean = RandomFloats(s.rows, -0.3f, 0.3f, 4);
    const std::vector<float> rstd = RandomFloats(s.rows, 0.5f, 2, 5);
    std::vector<float> want(n, NAN);
    ops.LayerNormInputFromOutput(y.data(), gamma.data(), beta.data(), mean.data(), rstd.data(),
                                 s.rows, s.cols, want.data());
    for (unsigned grid : testing_util::GridStrideGrids(n, k::kBlock)) {
      std::vector<float> got(n, NAN);
      testing_util::Launch1D(
          [&] {
            k::layernorm_input_from_output_kernel(y.data(), gamma.data(), beta.data(), mean.data(),
                                                  rstd.data(), s.rows, s.cols, got.data());
          },
          grid, k::kBlock);
      ExpectBitEqual(got, want, Describe(s, 0) + " grid=" + std::to_string(grid));
    }
  }
}

}  // namespace
}  // namespace headroom
