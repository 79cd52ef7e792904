// PermuteHeads' CUDA device code (kernels/cuda/permute_kernels.cuh) run on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float>::PermuteHeads
// (kernels/cpu/permute.cc), both directions, on shapes with every dimension 1 somewhere and
// totals that are no multiple of the block, with the launcher's grid and with one block.
//
// Tolerance: none (a copy).
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/permute_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::permute_kernels;

TEST(PermuteKernelEmulation, BothDirectionsMatchTwinBitForBit) {
  CpuOps<float> ops(1);
  const std::array<int, 4> shapes[] = {
      {1, 1, 1, 1}, {1, 5, 3, 16}, {2, 7, 1, 32}, {3, 1, 4, 8}, {2, 9, 3, 24}};
  for (const auto& [B, S, H, D] : shapes) {
    const int64_t n = int64_t{B} * S * H * D;
    const std::vector<float> x = testing_util::RandomFloats(n, -1, 1, static_cast<uint64_t>(n));
    for (bool inverse : {false, true}) {
      std::vector<float> want(x.size(), NAN);
      ops.PermuteHeads(x.data(), want.data(), B, S, H, D, inverse);
      for (unsigned grid : testing_util::GridStrideGrids(n, k::kBlock)) {
        std::vector<float> got(x.size(), NAN);
        testing_util::Launch1D(
            [&] { k::permute_heads_kernel(x.data(), got.data(), B, S, H, D, inverse); }, grid,
            k::kBlock);
        testing_util::ExpectBitEqual(got, want,
                                     "B=" + std::to_string(B) + " S=" + std::to_string(S) +
                                         " H=" + std::to_string(H) + " D=" + std::to_string(D) +
                                         " inverse=" + std::to_string(inverse) +
                                         " grid=" + std::to_string(grid));
      }
    }
  }
}

}  // namespace
}  // namespace headroom
