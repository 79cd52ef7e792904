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

template <typename T>
inline T Exp(T x) {
  return std::exp(x);
}
template <>
inline float Exp<float>(float x) {
  return ExpFloat(x);
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
