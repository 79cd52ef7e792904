// The CPU backend's vectorised float paths against their definitions: cpu_math::ErfFloat (the
// polynomial erf behind float GELU) against double erf on a dense grid, and the multi-lane
// Philox dropout against the scalar DropoutWords of kernels/philox.h, bit for bit, on vectors
// long enough to be split between threads and to end in partial blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/philox.h"

namespace headroom {
namespace {

using cpu_math::ErfFloat;

TEST(ErfFloatTest, RelativeErrorBelow1e7OnADenseGrid) {
  double worst = 0;
  float worst_x = 0;
  auto check = [&](float x) {
    const double want = std::erf(static_cast<double>(x));
    const double got = ErfFloat(x);
    if (want == 0) {
      EXPECT_EQ(got, 0.0) << "x=" << x;
      return;
    }
    const double rel = std::fabs(got - want) / std::fabs(want);
    if (rel > worst) {
      worst = rel;
      worst_x = x;
    }
  };
  // 2^22 points on [-5, 5] (spacing ~2.4e-6) cover both pieces, their seam at |x| = 1 and the
  // clamp at 4.
  constexpr int kPoints = 1 << 22;
  for (int i = 0; i <= kPoints; ++i) check(-5.0f + 10.0f * static_cast<float>(i) / kPoints);
  // Tiny and denormal inputs (erf(x) ~ 2x/sqrt(pi)), by powers of two and in between.
  for (float x = 1e-38f; x < 1e-3f; x *= 1.001f) {
    check(x);
    check(-x);
  }
  // Every float just around the seam.
  for (float x = 0.999f; x < 1.001f; x = std::nextafter(x, 2.0f)) check(x);
  EXPECT_LT(worst, 1e-7) << "worst at x=" << worst_x;
}

TEST(ErfFloatTest, IsOddAndSaturatesAtOne) {
  for (float x : {0.0f, 1e-30f, 0.3f, 0.999f, 1.0f, 2.7f, 3.9f, 4.0f, 7.0f}) {
    EXPECT_EQ(ErfFloat(-x), -ErfFloat(x)) << "x=" << x;
  }
  EXPECT_EQ(ErfFloat(0.0f), 0.0f);
  EXPECT_EQ(ErfFloat(4.0f), 1.0f);
  EXPECT_EQ(ErfFloat(100.0f), 1.0f);
  EXPECT_EQ(ErfFloat(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(ErfFloat(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(ErfFloat(std::numeric_limits<float>::quiet_NaN())));
}

TEST(CpuDropoutTest, LongVectorsMatchScalarPhiloxBitForBit) {
  CpuOps<float> ops(2);
  const DropoutKey key{0xfedcba9876543210ULL, (uint64_t{3} << 32) | 11, 5, 1};
  const float rate = 0.1f;
  const uint32_t threshold = DropoutThreshold(rate);
  const float scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{65}, int64_t{(1 << 20) + 7}}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = 1.0f + static_cast<float>(i % 97) / 97.0f;
    std::vector<float> y(n, -1.0f);
    ops.Dropout(x.data(), y.data(), n, rate, key);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const Philox4x32 w =
          DropoutWords(key.seed, key.step, key.layer, key.site, static_cast<uint64_t>(i >> 2));
      const float want = w.v[i & 3] >= threshold ? x[i] * scale : 0.0f;
      if (y[i] != want && bad++ < 5)
        ADD_FAILURE() << "i=" << i << " got " << y[i] << " want " << want;
    }
    EXPECT_EQ(bad, 0);
    ops.Dropout(x.data(), x.data(), n, rate, key);  // in place
    EXPECT_EQ(x, y);
  }
}

}  // namespace
}  // namespace headroom
