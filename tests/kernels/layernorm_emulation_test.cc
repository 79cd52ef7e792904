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
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/layernorm_kernels.cuh"
#include "kernels/cuda/reduce_kernels.cuh"
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

// The forward outputs of the twin (want) and the device (got) against the bounds above
// (testing_util::LayerNormForwardBands); x is the normalised float input.
void ExpectForwardWithinBand(const Shape& s, const std::vector<float>& x,
                             const std::vector<float>& gamma, const std::vector<float>& beta,
                             const std::vector<float>& want_y, const std::vector<float>& want_mean,
                             const std::vector<float>& want_rstd, const std::vector<float>& y,
                             const std::vector<float>& mean, const std::vector<float>& rstd) {
  const testing_util::LayerNormBands b =
      testing_util::LayerNormForwardBands(s.rows, s.cols, x, gamma, beta, want_mean, want_rstd);
  for (int64_t r = 0; r < s.rows; ++r) {
    ASSERT_LE(std::fabs(double{mean[r]} - want_mean[r]), b.mean[r]) << "mean of row " << r;
    ASSERT_LE(std::fabs(double{rstd[r]} - want_rstd[r]), b.rstd[r]) << "rstd " << r;
  }
  for (size_t i = 0; i < want_y.size(); ++i) {
    ASSERT_LE(std::fabs(double{y[i]} - want_y[i]), b.y[i])
        << "y[" << i << "]: got " << y[i] << ", want " << want_y[i];
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

// The band of dx (above) per element.
std::vector<double> BackwardDxBand(const Shape& s, const std::vector<float>& x,
                                   const std::vector<float>& dy, const std::vector<float>& gamma,
                                   const std::vector<float>& mean, const std::vector<float>& rstd) {
  std::vector<double> band(x.size());
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
      band[i] =
          rstd[r] * (dmg + std::fabs(xhat) * dmgx +
                     4 * kUnitRoundoff * (std::fabs(g) + std::fabs(mg) + std::fabs(xhat * mgx)));
    }
  }
  return band;
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
      const std::vector<double> band = BackwardDxBand(s, x, dy, gamma, mean, rstd);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_LE(std::fabs(double{dx[i]} - want_dx[i]), band[i])
            << "dx[" << i << "]: got " << dx[i] << ", want " << want_dx[i];
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
    // y as stored in bf16 (the bf16 instance reads those values; the float one reads them too).
    const std::vector<float> y = testing_util::RandomBf16Floats(n, -2, 2, static_cast<uint64_t>(n));
    const std::vector<__nv_bfloat16> y_bf16 = testing_util::ToDeviceBf16(y);
    const std::vector<float> gamma = RandomFloats(s.cols, 0.5f, 1.5f, 2);
    const std::vector<float> beta = RandomFloats(s.cols, -0.5f, 0.5f, 3);
    const std::vector<float> mean = RandomFloats(s.rows, -0.3f, 0.3f, 4);
    const std::vector<float> rstd = RandomFloats(s.rows, 0.5f, 2, 5);
    std::vector<float> want(n, NAN);
    ops.LayerNormInputFromOutput(y.data(), gamma.data(), beta.data(), mean.data(), rstd.data(),
                                 s.rows, s.cols, want.data());
    for (unsigned grid : testing_util::GridStrideGrids(n, k::kBlock)) {
      std::vector<float> got(n, NAN), got_bf16(n, NAN);
      testing_util::Launch1D(
          [&] {
            k::layernorm_input_from_output_kernel(y.data(), gamma.data(), beta.data(), mean.data(),
                                                  rstd.data(), s.rows, s.cols, got.data());
            k::layernorm_input_from_output_kernel(y_bf16.data(), gamma.data(), beta.data(),
                                                  mean.data(), rstd.data(), s.rows, s.cols,
                                                  got_bf16.data());
          },
          grid, k::kBlock);
      ExpectBitEqual(got, want, Describe(s, 0) + " grid=" + std::to_string(grid));
      ExpectBitEqual(got_bf16, want, Describe(s, 0) + " bf16 y, grid=" + std::to_string(grid));
    }
  }
}

// ---- The packed kernels (16-byte vectors), float and bf16 instances ---------------------------
// Rows of widths that are multiples of 8 (one chunk per lane up to eight; 2048 is beyond the
// float instance's eight chunks of 4 per lane, so only the instances with a bf16 tensor run it),
// all float, all bf16, and the fp32 residual stream's mixes. A bf16 tensor is read as bf16
// (the twin reads the same values), and a bf16 output is the twin's float output rounded
// to bf16, within one bf16 ulp plus the float band of the float instance (the band matters only
// near 0, where a bf16 ulp is small). mean, rstd, dgamma and dbeta are fp32 within their float
// bands. The residual sum and the dropout masks are bit for bit.
const Shape kPackedShapes[] = {{1, 8}, {9, 40}, {17, 256}, {3, 776}, {2, 1000}, {2, 2048}};

// Whether rows of s.cols fit the packed kernels in chunks of kN.
bool PackedShapeFits(const Shape& s, int kN) { return k::PackedShapeError(s.cols, kN, {}).empty(); }

// Runs f(std::integral_constant<int, kPacks>) as the device code on `grid` blocks, with the
// kPacks the launchers pick for cols in chunks of kN.
template <typename F>
void LaunchPacked(int cols, int kN, unsigned grid, F&& f) {
  const int packs = k::PacksPerLane(cols, kN);
  const bool launched = k::WithPacksPerLane(
      packs, [&](auto p) { testing_util::Launch1D([&] { f(p); }, grid, k::kBlock); });
  ASSERT_TRUE(launched) << "cols " << cols;
}

// Storage types X for x, U for sub, S for the sum, Y for y.
template <typename X, typename U, typename S, typename Y>
void CheckPackedForward() {
  using testing_util::FromDevice;
  using testing_util::Stored;
  using testing_util::ToDevice;
  constexpr int kN = cuda::Chunk<X, U, S, Y>::kSize;
  CpuOps<float> ops(1);
  for (const Shape& s : kPackedShapes) {
    if (!PackedShapeFits(s, kN)) continue;
    for (float rate : {-1.0f, 0.0f, 0.1f, 1.0f}) {  // -1: plain LayerNorm (no sub)
      SCOPED_TRACE(Describe(s, rate));
      const bool residual = rate >= 0;
      const int64_t n = s.rows * s.cols;
      const std::vector<float> x = Stored<X>(RandomFloats(n, -2, 3, static_cast<uint64_t>(n)));
      const std::vector<float> sub =
          Stored<U>(RandomFloats(n, -1, 1, static_cast<uint64_t>(n) + 1));
      const std::vector<float> gamma = RandomFloats(s.cols, 0.5f, 1.5f, 2);
      const std::vector<float> beta = RandomFloats(s.cols, -0.5f, 0.5f, 3);
      std::vector<float> want_sum(n, NAN), want_y(n, NAN), want_mean(s.rows), want_rstd(s.rows);
      if (residual) {
        ops.ResidualLayerNormForward(x.data(), sub.data(), rate, kKey, gamma.data(), beta.data(),
                                     s.rows, s.cols, kEps, want_sum.data(), want_y.data(),
                                     want_mean.data(), want_rstd.data());
      } else {
        ops.LayerNormForward(x.data(), gamma.data(), beta.data(), s.rows, s.cols, kEps,
                             want_y.data(), want_mean.data(), want_rstd.data());
      }
      const k::ElementDropout drop =
          residual ? k::MakeElementDropout(rate, kKey.seed, kKey.step, kKey.layer, kKey.site)
                   : k::ElementDropout{};
      const std::vector<X> x_d = ToDevice<X>(x);
      const std::vector<U> sub_d = ToDevice<U>(sub);
      std::vector<S> sum_d(n);
      std::vector<Y> y_d(n);
      std::vector<float> mean(s.rows, NAN), rstd(s.rows, NAN);
      LaunchPacked(s.cols, kN, RowBlocks(s.rows), [&](auto p) {
        k::layernorm_forward_packed_kernel<X, U, S, Y, decltype(p)::value>(
            x_d.data(), residual ? sub_d.data() : nullptr, drop, sum_d.data(), gamma.data(),
            beta.data(), s.rows, s.cols, kEps, y_d.data(), mean.data(), rstd.data());
      });
      // Both normalise the float input: the float sum (not its stored rounding) when residual.
      const std::vector<float>& normalised = residual ? want_sum : x;
      const testing_util::LayerNormBands b = testing_util::LayerNormForwardBands(
          s.rows, s.cols, normalised, gamma, beta, want_mean, want_rstd);
      for (int64_t r = 0; r < s.rows; ++r) {
        ASSERT_LE(std::fabs(double{mean[r]} - want_mean[r]), b.mean[r]) << "mean of row " << r;
        ASSERT_LE(std::fabs(double{rstd[r]} - want_rstd[r]), b.rstd[r]) << "rstd " << r;
      }
      testing_util::ExpectStoredWithin<Y>(FromDevice(y_d), want_y, b.y, "y");
      if (!residual) continue;
      ExpectBitEqual(FromDevice(sum_d), Stored<S>(want_sum), "residual sum (mask and add)");
      if constexpr (std::is_same_v<X, S>) {
        std::vector<S> in_place = x_d;  // sum may overwrite x (the residual stream)
        std::vector<Y> y2(n);
        LaunchPacked(s.cols, kN, RowBlocks(s.rows), [&](auto p) {
          k::layernorm_forward_packed_kernel<X, U, S, Y, decltype(p)::value>(
              in_place.data(), sub_d.data(), drop, in_place.data(), gamma.data(), beta.data(),
              s.rows, s.cols, kEps, y2.data(), mean.data(), rstd.data());
        });
        ExpectBitEqual(FromDevice(in_place), FromDevice(sum_d), "residual sum in place");
        ExpectBitEqual(FromDevice(y2), FromDevice(y_d), "y with the sum in place");
      }
    }
  }
}

using Bf16 = __nv_bfloat16;

TEST(LayerNormKernelEmulation, PackedForwardFloatWithinBandOfTwin) {
  CheckPackedForward<float, float, float, float>();
}

TEST(LayerNormKernelEmulation, PackedForwardBf16WithinOneUlpOfTwin) {
  CheckPackedForward<Bf16, Bf16, Bf16, Bf16>();
}

// The fp32 residual stream: bf16 x, sub and y, the sum stored in fp32 (bit for bit the twin's).
TEST(LayerNormKernelEmulation, PackedForwardBf16WithFp32SumWithinOneUlpOfTwin) {
  CheckPackedForward<Bf16, Bf16, float, Bf16>();
}

// Pre-LN with bf16 activations: the LayerNorm of the fp32 residual stream, stored as bf16.
TEST(LayerNormKernelEmulation, PackedForwardFp32InputBf16OutputWithinOneUlpOfTwin) {
  CheckPackedForward<float, float, float, Bf16>();
}

// dgamma and dbeta against a float64 sum of the same terms: the device adds rows + 1 terms
// (the rows and the starting value) in some fixed order, each dgamma term dy * xhat carrying 3
// roundings (xhat's two, the product): within (rows + 3) u of the sum of the magnitudes.
void ExpectParameterGradientsWithinBand(
    const Shape& s, const std::vector<float>& x, const std::vector<float>& dy,
    const std::vector<float>& mean, const std::vector<float>& rstd,
    const std::vector<float>& start_dgamma, const std::vector<float>& start_dbeta,
    const std::vector<float>& dgamma, const std::vector<float>& dbeta) {
  for (int c = 0; c < s.cols; ++c) {
    double dg = start_dgamma[c], db = start_dbeta[c];
    double dg_abs = std::fabs(dg), db_abs = std::fabs(db);
    for (int64_t r = 0; r < s.rows; ++r) {
      const int64_t i = r * s.cols + c;
      const double xhat = (double{x[i]} - mean[r]) * rstd[r];
      dg += dy[i] * xhat;
      db += dy[i];
      dg_abs += std::fabs(dy[i] * xhat);
      db_abs += std::fabs(dy[i]);
    }
    const double k_terms = static_cast<double>(s.rows + 3) * kUnitRoundoff;
    ASSERT_LE(std::fabs(double{dgamma[c]} - dg), k_terms * dg_abs) << "dgamma[" << c << "]";
    ASSERT_LE(std::fabs(double{dbeta[c]} - db), k_terms * db_abs) << "dbeta[" << c << "]";
  }
}

// Storage types DY for dy, X for x, DX for dx (over dy in place when DX is DY), DS for dsub.
template <typename DY, typename X, typename DX, typename DS>
void CheckPackedBackward() {
  using testing_util::FromDevice;
  using testing_util::Stored;
  using testing_util::ToDevice;
  constexpr int kN = cuda::Chunk<DY, X, DX, DS>::kSize;
  constexpr bool kInPlace = std::is_same_v<DX, DY>;
  CpuOps<float> ops(1);
  for (const Shape& s : kPackedShapes) {
    if (!PackedShapeFits(s, kN)) continue;
    for (float rate : {0.0f, 0.1f}) {
      SCOPED_TRACE(Describe(s, rate));
      const int64_t n = s.rows * s.cols;
      const std::vector<float> x = Stored<X>(RandomFloats(n, -2, 3, static_cast<uint64_t>(n)));
      const std::vector<float> dy =
          Stored<DY>(RandomFloats(n, -1, 1, static_cast<uint64_t>(n) + 1));
      const std::vector<float> gamma = RandomFloats(s.cols, 0.5f, 1.5f, 2);
      const std::vector<float> mean = RandomFloats(s.rows, -0.3f, 0.3f, 3);
      const std::vector<float> rstd = RandomFloats(s.rows, 0.5f, 2, 4);
      const std::vector<float> start_dgamma = RandomFloats(s.cols, -1, 1, 5);
      const std::vector<float> start_dbeta = RandomFloats(s.cols, -1, 1, 6);
      std::vector<float> want_dx(n, NAN), want_dsub(n, NAN);
      std::vector<float> want_dgamma = start_dgamma, want_dbeta = start_dbeta;
      ops.ResidualLayerNormBackward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(),
                                    s.rows, s.cols, rate, kKey, want_dx.data(), want_dsub.data(),
                                    want_dgamma.data(), want_dbeta.data());
      const std::vector<double> band = BackwardDxBand(s, x, dy, gamma, mean, rstd);
      const k::ElementDropout drop =
          rate > 0 ? k::MakeElementDropout(rate, kKey.seed, kKey.step, kKey.layer, kKey.site)
                   : k::ElementDropout{};
      const std::vector<X> x_d = ToDevice<X>(x);
      const std::vector<DY> dy_d = ToDevice<DY>(dy);
      for (unsigned grid : {RowBlocks(s.rows), 1u}) {  // the launcher's, and one striding block
        std::vector<DX> dx_d(n);
        std::vector<DS> dsub_d(n);
        const DY* dy_p = dy_d.data();
        if constexpr (kInPlace) {  // dx overwrites dy, as the model does
          dx_d = dy_d;
          dy_p = dx_d.data();
        }
        std::vector<float> parts(2 * grid * static_cast<size_t>(s.cols), NAN);
        float* part_dgamma = parts.data();
        float* part_dbeta = parts.data() + grid * static_cast<size_t>(s.cols);
        LaunchPacked(s.cols, kN, grid, [&](auto p) {
          k::layernorm_backward_packed_kernel<DY, X, DX, DS, decltype(p)::value>(
              dy_p, x_d.data(), gamma.data(), mean.data(), rstd.data(), s.rows, s.cols, dx_d.data(),
              drop, rate > 0 ? dsub_d.data() : nullptr, part_dgamma, part_dbeta);
        });
        std::vector<float> dgamma = start_dgamma, dbeta = start_dbeta;
        testing_util::Launch1D(
            [&] {
              cuda::reduce_kernels::column_sums_final_kernel<true>(part_dbeta, part_dgamma,
                                                                   static_cast<int>(grid), s.cols,
                                                                   dbeta.data(), dgamma.data());
            },
            static_cast<unsigned>(cuda::CeilDiv(s.cols, 256)), 256);
        const std::string what = "grid=" + std::to_string(grid);
        testing_util::ExpectStoredWithin<DX>(FromDevice(dx_d), want_dx, band, "dx " + what);
        ExpectParameterGradientsWithinBand(s, x, dy, mean, rstd, start_dgamma, start_dbeta, dgamma,
                                           dbeta);
        if (rate == 0.0f) continue;
        // dsub = dropout(dx): the same mask bit for bit (zero exactly where the twin's is), the
        // kept values scaled by 1 / (1 - rate) within the scaled dx band.
        const std::vector<float> dsub = FromDevice(dsub_d);
        std::vector<double> dsub_band(band.size());
        for (size_t i = 0; i < band.size(); ++i) {
          dsub_band[i] = band[i] / (1 - rate) + 2 * kUnitRoundoff * std::fabs(want_dsub[i]);
          ASSERT_EQ(dsub[i] == 0.0f, want_dsub[i] == 0.0f) << "dsub mask at " << i << " " << what;
        }
        testing_util::ExpectStoredWithin<DS>(dsub, want_dsub, dsub_band, "dsub " + what);
      }
    }
  }
}

TEST(LayerNormKernelEmulation, PackedBackwardFloatWithinBandOfTwin) {
  CheckPackedBackward<float, float, float, float>();
}

TEST(LayerNormKernelEmulation, PackedBackwardBf16WithinOneUlpOfTwin) {
  CheckPackedBackward<Bf16, Bf16, Bf16, Bf16>();
}

// The fp32 residual stream's backward: fp32 dy, sum and dsum, bf16 dsub.
TEST(LayerNormKernelEmulation, PackedBackwardFp32ResidualBf16DsubWithinOneUlpOfTwin) {
  CheckPackedBackward<float, float, float, Bf16>();
}

// Pre-LN's backward with bf16 activations: bf16 dy and dx, the fp32 residual stream as x.
TEST(LayerNormKernelEmulation, PackedBackwardBf16GradientOfFp32InputWithinOneUlpOfTwin) {
  CheckPackedBackward<Bf16, float, Bf16, Bf16>();
}

// Shapes the packed kernels do not take are refused with a reason, before any launch.
TEST(LayerNormKernelEmulation, PackedShapeErrorNamesTheProblem) {
  EXPECT_EQ(k::PackedShapeError(1024, 8, {}), "");
  EXPECT_NE(k::PackedShapeError(1001, 8, {}).find("no positive multiple of 8"), std::string::npos);
  EXPECT_NE(k::PackedShapeError(4096, 8, {}).find("up to 2048"), std::string::npos);
  const std::vector<float> row(16);
  EXPECT_NE(k::PackedShapeError(8, 4, {row.data() + 1}).find("16-byte aligned"), std::string::npos);
  EXPECT_EQ(k::PacksPerLane(776, 8), 4);  // 97 packs: 4 per lane
  EXPECT_EQ(k::PacksPerLane(256, 8), 1);
}

}  // namespace
}  // namespace headroom
