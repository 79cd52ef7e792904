// Test helpers for the bf16 suites (Bf16ActivationOps, CpuBf16Ops): random fp32 values whose bits
// reach below bf16's mantissa, their bf16 rounding, and a stand-in for a backend that is not the
// CPU (both wrappers round host memory and refuse one).
#ifndef HEADROOM_TESTS_KERNELS_BF16_TEST_UTIL_H_
#define HEADROOM_TESTS_KERNELS_BF16_TEST_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "base/bf16.h"
#include "kernels/forwarding_ops.h"
#include "kernels/ops.h"

namespace headroom::testing_util {

// n normal values (standard deviation `scale`): rounding to bf16 changes almost every one.
inline std::vector<float> Values(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// v with every element rounded to bf16 (nearest, ties to even).
inline std::vector<float> Rounded(std::vector<float> v) {
  for (float& x : v) x = RoundToBf16(x);
  return v;
}

// Whether every element of v is a bf16 value.
inline bool AllBf16(const std::vector<float>& v) {
  for (float x : v) {
    if (RoundToBf16(x) != x) return false;
  }
  return true;
}

// A CPU backend that reports itself as a GPU.
class NotCpuOps : public ForwardingOps<float> {
 public:
  using ForwardingOps<float>::ForwardingOps;
  DeviceKind device() const override { return DeviceKind::kCuda; }
};

}  // namespace headroom::testing_util

#endif  // HEADROOM_TESTS_KERNELS_BF16_TEST_UTIL_H_
