// The optimizer kernels' CUDA device code (kernels/cuda/optimizer_kernels.cuh, with
// reduce_kernels.cuh's Dot for LAMB's norms) run on the CPU under tests/kernels/cuda_emulation.h
// against the CPU twin, CpuOps<float>::AdamW / Lamb (kernels/cpu/optimizer.cc), with and without
// bias correction, weight decay and gradient scaling, on ragged sizes with the launcher's grid
// and with one striding block. The update's scalars are built as cuda_ops.cc builds them: the
// step's floats, the bias-correction factors in double, inverted, then rounded to float.
//
// Tolerances. AdamW and LAMB's direction (m, v and u) are the same float formula in the same
// order as the twin, with a correctly rounded sqrt on both sides, and the emulation build
// contracts nothing into an FMA: bit for bit. (nvcc contracts b1 * m + (1 - b1) * g and the like
// into FMAs on the GPU; the cuda_float op tests (tests/kernels/ops_test.cc) bound that on a GPU.)
// LAMB's apply step uses the trust ratio sqrt(||w||^2) / sqrt(||u||^2) from the device's float Dot
// (each norm within (n + 4) u of the twin's double sum, u = 2^-24, summation bound of the reduce
// test), so the step lr * ratio is within (n + 10) u relative, and w - step * u_i within (n + 11) u
// |step u_i| + 2 u |w| of the twin. The bf16 mirror of the weights (written in the same pass) is
// the new w rounded to nearest even: bit for bit against RoundToBf16 of the device's w (AdamW: of
// the twin's, the same bits), within one bf16 ulp of the twin's rounded w (LAMB).
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/optimizer_kernels.cuh"
#include "kernels/cuda/reduce_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::optimizer_kernels;
using testing_util::ExpectBitEqual;
using testing_util::RandomFloats;

constexpr double kUnitRoundoff = 0x1p-24;

std::vector<OptimizerStep> Steps() {
  OptimizerStep plain;
  plain.lr = 1e-3f;
  OptimizerStep corrected;
  corrected.lr = 2e-2f;
  corrected.weight_decay = 0.01f;
  corrected.bias_correction = true;
  corrected.step = 3;
  corrected.grad_scale = 0.5f;
  return {plain, corrected};
}

struct State {
  std::vector<float> w, g, m, v;
};

State RandomState(int64_t n) {
  return {RandomFloats(n, -1, 1, static_cast<uint64_t>(n)),
          RandomFloats(n, -0.1f, 0.1f, static_cast<uint64_t>(n) + 1),
          RandomFloats(n, -0.05f, 0.05f, static_cast<uint64_t>(n) + 2),
          RandomFloats(n, 0, 0.01f, static_cast<uint64_t>(n) + 3)};
}

TEST(OptimizerKernelEmulation, AdamWMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  for (const OptimizerStep& s : Steps()) {
    for (int64_t n : testing_util::RaggedSizes()) {
      State want = RandomState(n);
      const State start = want;
      ops.AdamW(want.w.data(), want.g.data(), want.m.data(), want.v.data(), n, s);
      for (unsigned grid : testing_util::GridStrideGrids(n, k::kBlock)) {
        for (bool with_mirror : {false, true}) {
          State got = start;
          std::vector<__nv_bfloat16> mirror(n, __float2bfloat16(NAN));
          testing_util::Launch1D(
              [&] {
                k::adamw_kernel(got.w.data(), got.g.data(), got.m.data(), got.v.data(), n,
                                cuda::ToAdamParams(s), with_mirror ? mirror.data() : nullptr);
              },
              grid, k::kBlock);
          const std::string what = "n=" + std::to_string(n) + " grid=" + std::to_string(grid) +
                                   " bias_correction=" + std::to_string(s.bias_correction) +
                                   " mirror=" + std::to_string(with_mirror);
          ExpectBitEqual(got.w, want.w, "w " + what);
          ExpectBitEqual(got.m, want.m, "m " + what);
          ExpectBitEqual(got.v, want.v, "v " + what);
          // The bf16 mirror is the twin's weights rounded to nearest even (w is bit-equal).
          if (with_mirror) {
            ExpectBitEqual(testing_util::FromDeviceBf16(mirror),
                           testing_util::RoundedToBf16(want.w), "mirror " + what);
          }
        }
      }
    }
  }
}

// LAMB's three stages as LaunchLamb runs them: the direction, the two Dots (launcher's grid;
// 1024-thread final blocks are the emulation's slowest launches, so they run once per case),
// then the apply step with both grids.
TEST(OptimizerKernelEmulation, LambMatchesTwinWithinNormBand) {
  CpuOps<float> ops(1);
  for (const OptimizerStep& s : Steps()) {
    for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{1001}, int64_t{2053}}) {
      State want = RandomState(n);
      const State start = want;
      std::vector<float> want_u(n, NAN);
      ops.Lamb(want.w.data(), want.g.data(), want.m.data(), want.v.data(), n, s, want_u.data());
      const cuda::AdamParams p = cuda::ToAdamParams(s);
      std::vector<float> norms(2, NAN), partials(1024, NAN);
      for (unsigned grid : testing_util::GridStrideGrids(n, k::kBlock)) {
        const std::string what = "n=" + std::to_string(n) + " grid=" + std::to_string(grid) +
                                 " bias_correction=" + std::to_string(s.bias_correction);
        State got = start;
        std::vector<float> u(n, NAN);
        testing_util::Launch1D(
            [&] {
              k::lamb_direction_kernel(got.w.data(), got.g.data(), got.m.data(), got.v.data(),
                                       u.data(), n, p);
            },
            grid, k::kBlock);
        ExpectBitEqual(u, want_u, "u " + what);
        ExpectBitEqual(got.m, want.m, "m " + what);
        ExpectBitEqual(got.v, want.v, "v " + what);
        if (std::isnan(norms[0])) {  // LaunchDot's two passes on w, then on u
          const unsigned dot_blocks = static_cast<unsigned>(
              std::min<int64_t>(cuda::CeilDiv(n, cuda::reduce_kernels::kDotBlock), 1024));
          for (int j = 0; j < 2; ++j) {
            const float* x = j == 0 ? got.w.data() : u.data();
            testing_util::Launch1D(
                [&] { cuda::reduce_kernels::dot_partial_kernel(x, x, n, partials.data()); },
                dot_blocks, cuda::reduce_kernels::kDotBlock);
            testing_util::Launch1D(
                [&] {
                  cuda::reduce_kernels::dot_final_kernel(partials.data(),
                                                         static_cast<int>(dot_blocks), &norms[j]);
                },
                1, 1024);
          }
        }
        std::vector<__nv_bfloat16> mirror(n, __float2bfloat16(NAN));
        testing_util::Launch1D(
            [&] {
              k::lamb_apply_kernel(got.w.data(), u.data(), n, p.lr, norms.data(), mirror.data());
            },
            grid, k::kBlock);
        // The bf16 mirror: the device's own new weights rounded to nearest even, bit for bit,
        // so within one bf16 ulp of the twin's rounded weights (w is within its band of them).
        ExpectBitEqual(testing_util::FromDeviceBf16(mirror), testing_util::RoundedToBf16(got.w),
                       "mirror " + what);
        testing_util::ExpectWithinBf16Ulp(testing_util::FromDeviceBf16(mirror),
                                          testing_util::RoundedToBf16(want.w), "mirror " + what);
        double ws = 0, us = 0;
        for (int64_t i = 0; i < n; ++i) {
          ws += double{start.w[i]} * start.w[i];
          us += double{u[i]} * u[i];
        }
        const double step = s.lr * std::sqrt(ws) / std::sqrt(us);
        for (int64_t i = 0; i < n; ++i) {
          const double bound = (n + 11) * kUnitRoundoff * std::fabs(step * u[i]) +
                               2 * kUnitRoundoff * std::fabs(want.w[i]);
          ASSERT_LE(std::fabs(double{got.w[i]} - want.w[i]), bound)
              << "w[" << i << "] " << what << ": got " << got.w[i] << ", want " << want.w[i];
        }
      }
    }
  }
}

}  // namespace
}  // namespace headroom
