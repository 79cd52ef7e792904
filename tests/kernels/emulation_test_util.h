// Helpers of the kernel emulation tests (tests/kernels/*_emulation_test.cc), which run the CUDA
// device code of kernels/cuda/*_kernels.cuh on the CPU under tests/kernels/cuda_emulation.h and
// compare it with the CPU twin (CpuOps<float>): seeded inputs, the grids a grid-stride kernel is
// run with, and the comparisons, bit for bit, within a band of float32 ulps, and (bf16
// activations) within one bf16 ulp.
//
// Include after tests/kernels/cuda_emulation.h and the kernel header.
#ifndef HEADROOM_TESTS_KERNELS_EMULATION_TEST_UTIL_H_
#define HEADROOM_TESTS_KERNELS_EMULATION_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "base/bf16.h"

namespace headroom::testing_util {

// The sizes the elementwise kernels run on: one element, sizes that are no multiple of a warp, a
// block (256) or a Philox group (4), exactly one block, and several blocks.
inline const std::vector<int64_t>& RaggedSizes() {
  static const std::vector<int64_t> sizes = {1, 3, 37, 256, 1001, 2053};
  return sizes;
}

// n floats uniform in [lo, hi), reproducible from `seed`.
inline std::vector<float> RandomFloats(int64_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// The grids a grid-stride kernel over `items` is run with: the launcher's
// (cuda::GridStrideBlocks) and a single block, so that every thread also takes the stride.
inline std::vector<unsigned> GridStrideGrids(int64_t items, int block) {
  return {cuda::GridStrideBlocks(items, block), 1u};
}

// Runs a 1-D kernel of `block` threads on `grid` blocks, no dynamic shared memory.
inline void Launch1D(const std::function<void()>& kernel, unsigned grid, int block) {
  emulation::Launch(kernel, grid, 1, static_cast<unsigned>(block), 0);
}

// got[i] == want[i] bit for bit (NaN payloads included), for every i.
inline void ExpectBitEqual(const std::vector<float>& got, const std::vector<float>& want,
                           const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t g, w;
    std::memcpy(&g, &got[i], 4);
    std::memcpy(&w, &want[i], 4);
    ASSERT_EQ(g, w) << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
  }
}

// |got[i] - want[i]| <= ulps * FLT_EPSILON * scale[i] for every i: a band of `ulps` float32 ulps
// of the magnitude scale[i] (the largest term the element's formula rounds). Each test states
// how it derives `ulps` and `scale`. NaN anywhere fails.
inline void ExpectWithinUlps(const std::vector<float>& got, const std::vector<double>& want,
                             const std::vector<double>& scale, double ulps,
                             const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(scale.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const double bound = ulps * FLT_EPSILON * scale[i];
    ASSERT_FALSE(std::isnan(got[i])) << what << "[" << i << "] is NaN";
    ASSERT_LE(std::fabs(got[i] - want[i]), bound)
        << what << "[" << i << "]: got " << got[i] << ", want " << want[i] << " (band " << ulps
        << " ulps of " << scale[i] << ")";
  }
}

inline std::vector<double> Widen(const std::vector<float>& x) {
  return std::vector<double>(x.begin(), x.end());
}

// LayerNorm forward's bands against the twin (derived in tests/kernels/layernorm_emulation_test.cc;
// u = 2^-24), from the normalised float input x [rows, cols], gamma, beta and the twin's mean and
// rstd: the device's mean within mean[r] of the twin's, rstd within rstd[r] (absolute), and the
// output element i within y[i].
struct LayerNormBands {
  std::vector<double> mean, rstd, y;
};
inline LayerNormBands LayerNormForwardBands(int64_t rows, int cols, const std::vector<float>& x,
                                            const std::vector<float>& gamma,
                                            const std::vector<float>& beta,
                                            const std::vector<float>& want_mean,
                                            const std::vector<float>& want_rstd) {
  constexpr double u = 0x1p-24;
  LayerNormBands b;
  b.y.resize(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double abs_sum = 0;
    for (int c = 0; c < cols; ++c) abs_sum += std::fabs(x[r * cols + c]);
    const double dmu = (cols + 2) * u * abs_sum / cols;
    const double drstd = (cols + 8) * u;
    b.mean.push_back(dmu);
    b.rstd.push_back(drstd * want_rstd[r]);
    for (int c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const double rg = std::fabs(double{want_rstd[r]} * gamma[c]);
      const double centred = std::fabs(double{x[i]} - want_mean[r]);
      b.y[i] = dmu * rg + centred * rg * drstd + 4 * u * (centred * rg + std::fabs(beta[c]));
    }
  }
  return b;
}

// ---- bf16 activations ----------------------------------------------------------------------
// The bf16 kernels' CPU twin is the CpuOps<float> op on the bf16 inputs (widened exactly), its
// activation outputs rounded to bf16 by base/bf16.h (RoundToBf16: an implementation independent
// of the emulation's __float2bfloat16).

// x with every element rounded to the nearest bf16 (ties to even), as floats.
inline std::vector<float> RoundedToBf16(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = RoundToBf16(x[i]);
  return r;
}

// n bf16 values uniform in [lo, hi) (rounded floats), reproducible from `seed`.
inline std::vector<float> RandomBf16Floats(int64_t n, float lo, float hi, uint64_t seed) {
  return RoundedToBf16(RandomFloats(n, lo, hi, seed));
}

// x as device bf16 (x's elements must be bf16 values already: the conversion is then exact).
inline std::vector<__nv_bfloat16> ToDeviceBf16(const std::vector<float>& x) {
  std::vector<__nv_bfloat16> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = __float2bfloat16(x[i]);
  return r;
}

// Device bf16 widened to float (exact).
inline std::vector<float> FromDeviceBf16(const std::vector<__nv_bfloat16>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = EmulatedFloat(x[i]);
  return r;
}

// Values (already of the storage type) as device storage A (float or __nv_bfloat16) and back, and
// float results as A would store them (unchanged, or rounded to bf16).
template <typename A>
std::vector<A> ToDevice(const std::vector<float>& x) {
  if constexpr (std::is_same_v<A, float>) {
    return x;
  } else {
    return ToDeviceBf16(x);
  }
}
template <typename A>
std::vector<float> FromDevice(const std::vector<A>& x) {
  if constexpr (std::is_same_v<A, float>) {
    return x;
  } else {
    return FromDeviceBf16(x);
  }
}
template <typename A>
std::vector<float> Stored(const std::vector<float>& x) {
  if constexpr (std::is_same_v<A, float>) {
    return x;
  } else {
    return RoundedToBf16(x);
  }
}

// The spacing of bf16 values (8 significant bits) at |v|: 2^(floor(log2 |v|) - 7); 0 for v == 0.
inline double Bf16Ulp(double v) {
  if (v == 0) return 0;
  int e;
  std::frexp(v, &e);  // |v| = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, e - 8);
}

// got[i] within one bf16 ulp of want[i] (the larger of the two values' ulps, so a step across a
// power of two counts once), plus band[i] when a band is given: the device and the twin each
// round a float result to bf16 (half an ulp each), and those float results differ by at most the
// float band (0 where they are bit-identical; for an elementwise kernel so much smaller than a
// bf16 ulp that it is left out, the band of a kernel with a row reduction matters only where the
// value is near 0). NaN anywhere fails.
inline void ExpectWithinBf16Ulp(const std::vector<float>& got, const std::vector<float>& want,
                                const std::string& what, const std::vector<double>& band = {}) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_TRUE(band.empty() || band.size() == want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << "[" << i << "] is NaN";
    const double bound =
        std::max(Bf16Ulp(got[i]), Bf16Ulp(want[i])) + (band.empty() ? 0.0 : band[i]);
    ASSERT_LE(std::fabs(double{got[i]} - want[i]), bound)
        << what << "[" << i << "]: got " << got[i] << ", want " << want[i] << " (1 bf16 ulp"
        << (band.empty() ? "" : " + " + std::to_string(band[i])) << ")";
  }
}

// An activation output stored as A against the twin's float result `want`: within band[i] for
// float; for bf16, within one bf16 ulp plus band[i] of want rounded to bf16 (ExpectWithinBf16Ulp).
template <typename A>
void ExpectStoredWithin(const std::vector<float>& got, const std::vector<float>& want,
                        const std::vector<double>& band, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if constexpr (std::is_same_v<A, float>) {
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_FALSE(std::isnan(got[i])) << what << "[" << i << "] is NaN";
      ASSERT_LE(std::fabs(double{got[i]} - want[i]), band[i])
          << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
    }
  } else {
    ExpectWithinBf16Ulp(got, RoundedToBf16(want), what, band);
  }
}

}  // namespace headroom::testing_util

#endif  // HEADROOM_TESTS_KERNELS_EMULATION_TEST_UTIL_H_
