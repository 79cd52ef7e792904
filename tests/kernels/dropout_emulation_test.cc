// Dropout's CUDA device code (kernels/cuda/dropout_kernels.cuh) run on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float>::Dropout
// (kernels/cpu/dropout.cc, which draws its Philox words 16 groups at a time with its own code):
// the masks and the kept values must agree bit for bit, on ragged sizes (no multiple of the
// 4-element Philox group or of the block), several rates and keys, with the launcher's grid and
// with one block (every thread strides), out of place and in place.
//
// Tolerance: none. The mask is a pure function of (key, element index) and a kept element is
// one product x * keep_scale with keep_scale = float(1 / (1 - rate)) computed in double, as the
// launcher (kernels/cuda/dropout.cu) and the twin both do.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/dropout_kernels.cuh"
#include "kernels/philox.h"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::dropout_kernels;
using testing_util::ExpectBitEqual;
using testing_util::GridStrideGrids;
using testing_util::Launch1D;
using testing_util::RaggedSizes;
using testing_util::RandomFloats;

TEST(DropoutKernelEmulation, MaskAndValuesMatchTwinBitForBit) {
  CpuOps<float> ops(1);
  const DropoutKey keys[] = {{77, 3, 2, 1}, {0x123456789ABCDEFull, 1ull << 33, 11, 7}};
  for (const DropoutKey& key : keys) {
    for (float rate : {0.1f, 0.5f, 0.9f}) {
      const uint32_t threshold = DropoutThreshold(rate);
      const float keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
      for (int64_t n : RaggedSizes()) {
        // Inputs away from 0, so a dropped element (0) never equals a kept one.
        std::vector<float> x = RandomFloats(n, 0.5f, 2.0f, static_cast<uint64_t>(n));
        std::vector<float> want(x.size(), NAN);
        ops.Dropout(x.data(), want.data(), n, rate, key);
        const int64_t groups = (n + 3) / 4;
        for (unsigned grid : GridStrideGrids(groups, k::kBlock)) {
          const std::string what = "rate=" + std::to_string(rate) + " n=" + std::to_string(n) +
                                   " grid=" + std::to_string(grid) +
                                   " seed=" + std::to_string(key.seed);
          std::vector<float> got(x.size(), NAN);
          Launch1D(
              [&] {
                k::dropout_kernel(x.data(), got.data(), n, threshold, keep_scale, key.seed,
                                  key.step, key.layer, key.site);
              },
              grid, k::kBlock);
          ExpectBitEqual(got, want, what);
          std::vector<float> in_place = x;
          Launch1D(
              [&] {
                k::dropout_kernel(in_place.data(), in_place.data(), n, threshold, keep_scale,
                                  key.seed, key.step, key.layer, key.site);
              },
              grid, k::kBlock);
          ExpectBitEqual(in_place, want, what + " in place");
        }
      }
    }
  }
}

}  // namespace
}  // namespace headroom
