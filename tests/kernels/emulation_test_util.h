// Helpers of the kernel emulation tests (tests/kernels/*_emulation_test.cc), which run the CUDA
// device code of kernels/cuda/*_kernels.cuh on the CPU under tests/kernels/cuda_emulation.h and
// compare it with the CPU twin (CpuOps<float>): seeded inputs, the grids a grid-stride kernel is
// run with, and the two comparisons, bit for bit and within a band of float32 ulps.
//
// Include after tests/kernels/cuda_emulation.h and the kernel header.
#ifndef HEADROOM_TESTS_KERNELS_EMULATION_TEST_UTIL_H_
#define HEADROOM_TESTS_KERNELS_EMULATION_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

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

}  // namespace headroom::testing_util

#endif  // HEADROOM_TESTS_KERNELS_EMULATION_TEST_UTIL_H_
