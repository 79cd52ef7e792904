// Exp for the CPU backend's hot loops: a branch-free float exp the compiler can vectorise, and
// std::exp for double.
//
// glibc's expf is accurate but a scalar call, so a loop over a 30K-word vocabulary row or a
// softmax row runs one element at a time. Exp<float> is Cephes' expf (range reduction by
// n = round(x / ln 2) with ln 2 split in two, a degree-5 polynomial, 2^n built in the exponent
// bits): relative error below 2e-7 (~2 ulp), no branches, no calls. Inputs are clamped to
// [-87, 88]: below that the true value (< 1.7e-38) is returned as ~1.6e-38 instead of a
// denormal or 0, which is invisible next to the row's sum (>= 1 where it is used: exp(x - max)).
// The loops vectorise only with -fno-trapping-math (kernels/CMakeLists.txt): otherwise GCC keeps
// the clamp as a branch around the float->int conversion. Exp<double> stays std::exp, so
// CpuOps<double> keeps full precision for gradient checks.
//
// ErfFloat is a branch-free erf for GELU: glibc's erff is a scalar call with branches, ~8 ns an
// element in GELU backward. Two pieces, both always computed and blended with a select:
//   |x| < 1:     erf(x) = x + x * P(x^2)                 (P: degree 6, erf(x)/x - 1)
//   1 <= |x|:    erf(x) = 1 - exp(-x^2) * Q(|x| - 2.5)   (Q: degree 11, erfc(x) exp(x^2))
// with |x| clamped to 4 (erf(x) rounds to 1 in float from |x| ~ 3.92). The coefficients are
// weighted least-squares fits (Chebyshev nodes, relative error) rounded to float; writing the
// small piece as x + x * P keeps the leading term exact. Measured against double erf on a dense
// grid (tests/kernels/fast_math_test.cc): relative error below 1e-7 (about 1.3 ulp). Evaluated
// in float without FMA contraction (ISO C++ mode), so every build of a loop gives the same bits.
#ifndef HEADROOM_KERNELS_CPU_FAST_MATH_H_
#define HEADROOM_KERNELS_CPU_FAST_MATH_H_

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace headroom::cpu_math {

inline float ExpFloat(float x) {
  // Plain selects, not std::min/max (whose reference returns defeat GCC's if-conversion).
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round x / ln 2 to nearest with the 1.5 * 2^23 trick (no SSE4.1 round instruction needed).
  constexpr float kMagic = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kMagic) - kMagic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

inline float ErfFloat(float x) {
  const float ax0 = std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu);
  const float ax = ax0 > 4.0f ? 4.0f : ax0;
  const float u = ax * ax;
  // |x| < 1.
  float p = 7.898209878476337e-05f;
  p = p * u + -0.0008024353883229196f;
  p = p * u + 0.00519005348905921f;
  p = p * u + -0.026854809373617172f;
  p = p * u + 0.11283612251281738f;
  p = p * u + -0.3761262893676758f;
  p = p * u + 0.12837916612625122f;
  const float small = ax + ax * p;
  // |x| >= 1.
  const float s = ax - 2.5f;
  float q = -3.835798736417928e-07f;
  q = q * s + 1.6588418247920345e-06f;
  q = q * s + -4.009343228972284e-06f;
  q = q * s + 1.4425777408177964e-05f;
  q = q * s + -5.8942707255482674e-05f;
  q = q * s + 0.00021283204841893166f;
  q = q * s + -0.0007337129791267216f;
  q = q * s + 0.0024660928174853325f;
  q = q * s + -0.008001474663615227f;
  q = q * s + 0.024938173592090607f;
  q = q * s + -0.0743473619222641f;
  q = q * s + 0.21080635488033295f;
  const float large = 1.0f - ExpFloat(-u) * q;
  const float r = ax < 1.0f ? small : large;
  // Sign of x back on (erf is odd); bit operations, not copysign, so the loop stays branch-free.
  return std::bit_cast<float>(std::bit_cast<uint32_t>(r) |
                              (std::bit_cast<uint32_t>(x) & 0x80000000u));
}

template <typename T>
inline T Exp(T x) {
  return std::exp(x);
}
template <>
inline float Exp<float>(float x) {
  return ExpFloat(x);
}

// erf: ErfFloat for float, std::erf for double (full precision for gradient checks).
template <typename T>
inline T Erf(T x) {
  return std::erf(x);
}
template <>
inline float Erf<float>(float x) {
  return ErfFloat(x);
}

// sum_i x[i] in double with four accumulators (a single chain is bound by the add latency).
template <typename T>
inline double SumAsDouble(const T* x, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i];
    s1 += x[i + 1];
    s2 += x[i + 2];
    s3 += x[i + 3];
  }
  for (; i < n; ++i) s0 += x[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace headroom::cpu_math

#endif  // HEADROOM_KERNELS_CPU_FAST_MATH_H_
