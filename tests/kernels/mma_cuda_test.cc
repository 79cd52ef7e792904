// kernels/cuda/mma.cuh's MmaBf16 on the GPU itself: one warp's fragments built from the PTX
// ISA's per-element formulas (mma_fragment_layout.h), the product compared for equality with a
// float64 one at the ISA's accumulator positions. mma_emulation_test.cc checks the CPU
// emulation the same way; together they show that the emulation, the kernels' reading of the
// layout and the hardware agree. Skips without a GPU (tests/cuda_skip.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/cuda_skip.h"
#include "tests/kernels/mma_cuda_check.h"
#include "tests/kernels/mma_fragment_layout.h"

namespace headroom {
namespace {

namespace L = testing_util::mma_layout;

TEST(MmaCuda, ProductAtThePtxFragmentPositions) {
  HR_SKIP_WITHOUT_CUDA();
  std::string error;
  const std::vector<float> d = testing_util::RunMmaOnGpu(&error);
  ASSERT_EQ(d.size(), 32u * 4) << error;
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const int r = L::CRow(lane, i), c = L::CCol(lane, i);
      EXPECT_EQ(d[static_cast<size_t>(lane * 4 + i)], L::Expected(0, 3, r, c, 2))
          << "lane " << lane << " element " << i << " (" << r << ", " << c << ")";
    }
  }
}

}  // namespace
}  // namespace headroom
