// Bf16 against hand-worked bit patterns: round to nearest with ties to even on the 16 discarded
// bits, overflow to infinity at half an ulp past the largest finite bf16, signed zeros,
// subnormals, NaN kept quiet with its sign, and exact widening.
#include "base/bf16.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace headroom {
namespace {

float FromBits32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

TEST(Bf16Test, ExactValuesKeepTheirUpperBits) {
  EXPECT_EQ(Bf16(1.0f).bits(), 0x3F80);  // 1.0f = 0x3F800000
  EXPECT_EQ(Bf16(-2.0f).bits(), 0xC000);
  EXPECT_EQ(Bf16(0.5f).bits(), 0x3F00);
  EXPECT_EQ(Bf16(0.0f).bits(), 0x0000);
  EXPECT_EQ(Bf16(-0.0f).bits(), 0x8000);
  EXPECT_EQ(Bf16(std::numeric_limits<float>::infinity()).bits(), 0x7F80);
  EXPECT_EQ(Bf16(-std::numeric_limits<float>::infinity()).bits(), 0xFF80);
}

TEST(Bf16Test, RoundsToNearestAndTiesToEven) {
  // 1 + 2^-8 lies halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): ties to 0x3F80.
  EXPECT_EQ(Bf16(FromBits32(0x3F808000u)).bits(), 0x3F80);
  // 1 + 3 * 2^-8 lies halfway between 0x3F81 (odd) and 0x3F82 (even): ties to 0x3F82.
  EXPECT_EQ(Bf16(FromBits32(0x3F818000u)).bits(), 0x3F82);
  // Just below and just above the halfway point round down and up.
  EXPECT_EQ(Bf16(FromBits32(0x3F807FFFu)).bits(), 0x3F80);
  EXPECT_EQ(Bf16(FromBits32(0x3F808001u)).bits(), 0x3F81);
  // The carry runs into the exponent: 2 - 2^-8 (0x3FFF8000) is halfway between 0x3FFF (odd)
  // and 2.0 (0x4000).
  EXPECT_EQ(Bf16(FromBits32(0x3FFF8000u)).bits(), 0x4000);
  // pi = 0x40490FDB: the discarded 0x0FDB is below half, so 0x4049 = 3.140625.
  EXPECT_EQ(Bf16(3.14159265f).bits(), 0x4049);
  EXPECT_EQ(RoundToBf16(3.14159265f), 3.140625f);
  // Negative values round on magnitude (symmetric).
  EXPECT_EQ(Bf16(FromBits32(0xBF818000u)).bits(), 0xBF82);
}

TEST(Bf16Test, OverflowAndSubnormals) {
  // The largest finite bf16 is 0x7F7F = (2 - 2^-7) * 2^127; FLT_MAX (0x7F7FFFFF) is more than
  // half an ulp above it, so it rounds to infinity, as cvt.rn does.
  EXPECT_EQ(Bf16(std::numeric_limits<float>::max()).bits(), 0x7F80);
  EXPECT_EQ(Bf16(FromBits32(0x7F7F7FFFu)).bits(), 0x7F7F);
  // The smallest float subnormal, 2^-149 (0x00000001), is far below bf16's smallest
  // subnormal 2^-133 (0x0001) and rounds to +0; 2^-133 itself is exact.
  EXPECT_EQ(Bf16(FromBits32(0x00000001u)).bits(), 0x0000);
  EXPECT_EQ(Bf16(FromBits32(0x00010000u)).bits(), 0x0001);
  EXPECT_EQ(static_cast<float>(Bf16::FromBits(0x0001)), std::ldexp(1.0f, -133));
}

TEST(Bf16Test, NanStaysQuietNanWithItsSign) {
  // A signalling NaN whose payload lies only in the discarded bits must not become infinity.
  const Bf16 snan(FromBits32(0x7F800001u));
  EXPECT_TRUE(std::isnan(static_cast<float>(snan)));
  EXPECT_EQ(snan.bits(), 0x7FC0);
  const Bf16 negative_nan(FromBits32(0xFFC00000u));
  EXPECT_TRUE(std::isnan(static_cast<float>(negative_nan)));
  EXPECT_EQ(negative_nan.bits() & 0x8000, 0x8000);
  // An all-ones NaN must not carry into the sign.
  EXPECT_EQ(Bf16(FromBits32(0x7FFFFFFFu)).bits(), 0x7FFF);
}

TEST(Bf16Test, WideningIsExactAndRoundTrips) {
  for (uint32_t b = 0; b <= 0xFFFF; ++b) {
    const Bf16 x = Bf16::FromBits(static_cast<uint16_t>(b));
    const float f = static_cast<float>(x);
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    ASSERT_EQ(u, b << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(Bf16(f).bits(), b) << std::hex << b;
    }
  }
}

}  // namespace
}  // namespace headroom
