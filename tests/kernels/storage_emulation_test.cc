// The bf16 instances of the storage-templated elementwise and data-movement kernels (Convert,
// Scale, Add of the fp32 residual and a bf16 output, AddBias, Dropout into bf16 from bf16 or fp32,
// PermuteHeads, GatherRows, ScatterAddRows of bf16 rows into fp32), their device code run on the
// CPU under tests/kernels/cuda_emulation.h against the CPU twin: CpuOps<float> on the bf16 inputs
// widened exactly, its bf16 outputs rounded by base/bf16.h (an implementation independent of the
// emulation's __float2bfloat16), its fp32 outputs as they are.
//
// Tolerance: none. Each element is one fp32 operation (or none) on the same operands in the
// same order on both sides, rounded once to its storage; the scatter adds each id's rows in the
// twin's order.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/dropout_kernels.cuh"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "kernels/cuda/embedding_kernels.cuh"
#include "kernels/cuda/permute_kernels.cuh"
#include "kernels/philox.h"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

using bf16 = __nv_bfloat16;
using testing_util::ExpectBitEqual;
using testing_util::FromDeviceBf16;
using testing_util::GridStrideGrids;
using testing_util::Launch1D;
using testing_util::RaggedSizes;
using testing_util::RandomBf16Floats;
using testing_util::RandomFloats;
using testing_util::RoundedToBf16;
using testing_util::ToDeviceBf16;

constexpr int kBlock = 256;

TEST(StorageKernelEmulation, ConvertRoundsToNearestEvenAndWidensExactly) {
  for (int64_t n : RaggedSizes()) {
    // Values with bits below bf16's, so the rounding matters (ties included by chance).
    const std::vector<float> x = RandomFloats(n, -3, 3, 7);
    for (unsigned grid : GridStrideGrids(n, kBlock)) {
      std::vector<bf16> y(static_cast<size_t>(n));
      Launch1D([&] { cuda::elementwise_kernels::convert_kernel(x.data(), y.data(), n); }, grid,
               kBlock);
      const std::vector<float> rounded = FromDeviceBf16(y);
      ExpectBitEqual(rounded, RoundedToBf16(x), "to bf16, n=" + std::to_string(n));
      std::vector<float> back(static_cast<size_t>(n));
      Launch1D([&] { cuda::elementwise_kernels::convert_kernel(y.data(), back.data(), n); }, grid,
               kBlock);
      ExpectBitEqual(back, rounded, "to float, n=" + std::to_string(n));
    }
  }
}

TEST(StorageKernelEmulation, ScaleAndResidualAddMatchTwinBitForBit) {
  CpuOps<float> ops(1);
  for (int64_t n : RaggedSizes()) {
    const std::vector<float> x = RandomBf16Floats(n, -2, 2, 1);
    const std::vector<float> residual = RandomFloats(n, -2, 2, 2);
    std::vector<float> scaled = x;
    ops.Scale(scaled.data(), n, 0.37f);
    std::vector<float> sum(static_cast<size_t>(n));
    ops.Add(residual.data(), x.data(), sum.data(), n);
    for (unsigned grid : GridStrideGrids(n, kBlock)) {
      std::vector<bf16> got = ToDeviceBf16(x);
      Launch1D([&] { cuda::elementwise_kernels::scale_kernel(got.data(), n, 0.37f); }, grid,
               kBlock);
      ExpectBitEqual(FromDeviceBf16(got), RoundedToBf16(scaled), "Scale n=" + std::to_string(n));
      const std::vector<bf16> b = ToDeviceBf16(x);
      std::vector<float> out = residual;  // in place: out aliases a
      Launch1D([&] { cuda::elementwise_kernels::add_kernel(out.data(), b.data(), out.data(), n); },
               grid, kBlock);
      ExpectBitEqual(out, sum, "Add n=" + std::to_string(n));
    }
  }
}

// The bias of a bf16 Linear (CudaOps adds it after the product): x + bias in fp32, rounded once.
TEST(StorageKernelEmulation, AddBiasToBf16MatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  for (const auto& [rows, cols] : {std::pair<int64_t, int>{1, 1}, {7, 130}, {33, 8}}) {
    const int64_t n = rows * cols;
    const std::vector<float> x = RandomBf16Floats(n, -2, 2, 3);
    const std::vector<float> bias = RandomFloats(cols, -1, 1, 4);
    std::vector<float> want = x;
    ops.AddBias(want.data(), bias.data(), rows, cols);
    for (unsigned grid : GridStrideGrids(n, kBlock)) {
      std::vector<bf16> got = ToDeviceBf16(x);
      Launch1D(
          [&] { cuda::elementwise_kernels::add_bias_kernel(got.data(), bias.data(), n, cols); },
          grid, kBlock);
      ExpectBitEqual(FromDeviceBf16(got), RoundedToBf16(want),
                     "AddBias " + std::to_string(rows) + " x " + std::to_string(cols));
    }
  }
}

TEST(StorageKernelEmulation, DropoutIntoBf16MatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  const DropoutKey key{77, 3, 2, 1};
  for (int64_t n : RaggedSizes()) {
    const std::vector<float> x = RandomBf16Floats(n, -2, 2, 5);
    const std::vector<float> wide = RandomFloats(n, -2, 2, 6);  // an fp32 gradient
    for (float rate : {0.1f, 0.5f}) {
      std::vector<float> want(static_cast<size_t>(n)), want_wide(static_cast<size_t>(n));
      ops.Dropout(x.data(), want.data(), n, rate, key);
      ops.Dropout(wide.data(), want_wide.data(), n, rate, key);
      const uint32_t threshold = DropoutThreshold(rate);
      const float keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
      auto run = [&](auto* src, bf16* dst) {
        Launch1D(
            [&] {
              cuda::dropout_kernels::dropout_kernel(src, dst, n, threshold, keep_scale, key.seed,
                                                    key.step, key.layer, key.site);
            },
            cuda::GridStrideBlocks((n + 3) / 4, kBlock), kBlock);
      };
      std::vector<bf16> got = ToDeviceBf16(x);
      run(got.data(), got.data());  // in place
      ExpectBitEqual(FromDeviceBf16(got), RoundedToBf16(want),
                     "bf16 -> bf16, rate " + std::to_string(rate));
      std::vector<bf16> from_wide(static_cast<size_t>(n));
      run(wide.data(), from_wide.data());
      ExpectBitEqual(FromDeviceBf16(from_wide), RoundedToBf16(want_wide),
                     "fp32 -> bf16, rate " + std::to_string(rate));
    }
  }
}

TEST(StorageKernelEmulation, PermuteHeadsMovesBf16Exactly) {
  CpuOps<float> ops(1);
  const int B = 2, S = 5, H = 3, D = 7;
  const int64_t n = int64_t{B} * S * H * D;
  const std::vector<float> x = RandomBf16Floats(n, -1, 1, 9);
  for (bool inverse : {false, true}) {
    std::vector<float> want(static_cast<size_t>(n));
    ops.PermuteHeads(x.data(), want.data(), B, S, H, D, inverse);
    const std::vector<bf16> src = ToDeviceBf16(x);
    std::vector<bf16> got(static_cast<size_t>(n));
    Launch1D(
        [&] {
          cuda::permute_kernels::permute_heads_kernel(src.data(), got.data(), B, S, H, D, inverse);
        },
        cuda::GridStrideBlocks(n, kBlock), kBlock);
    ExpectBitEqual(FromDeviceBf16(got), want, inverse ? "merge" : "split");
  }
}

TEST(StorageKernelEmulation, GatherAndScatterAddOfBf16RowsMatchTwinBitForBit) {
  namespace k = cuda::embedding_kernels;
  CpuOps<float> ops(1);
  const int64_t m = 37;
  const int d = 130, rows = 7;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> pick(0, rows - 1);
  std::vector<int32_t> idx(static_cast<size_t>(m));
  for (int32_t& v : idx) v = pick(rng);
  const std::vector<float> table = RandomBf16Floats(int64_t{rows} * d, -1, 1, 4);
  const std::vector<float> src = RandomBf16Floats(m * d, -1, 1, 5);

  std::vector<float> gathered(static_cast<size_t>(m * d));
  ops.GatherRows(table.data(), idx.data(), m, d, gathered.data());
  const std::vector<bf16> table_dev = ToDeviceBf16(table);
  std::vector<bf16> got(static_cast<size_t>(m * d));
  Launch1D(
      [&] { k::embedding_forward_kernel(idx.data(), table_dev.data(), m, d, got.data(), false); },
      cuda::GridStrideBlocks(m * d, k::kBlock), k::kBlock);
  ExpectBitEqual(FromDeviceBf16(got), gathered, "GatherRows");

  // Into an fp32 gradient, each id's rows added in increasing i as the twin.
  const std::vector<float> start = RandomFloats(int64_t{rows} * d, -1, 1, 6);
  std::vector<float> want = start;
  ops.ScatterAddRows(src.data(), idx.data(), m, d, want.data());
  std::vector<int32_t> pos(static_cast<size_t>(m));
  std::iota(pos.begin(), pos.end(), 0);
  std::stable_sort(pos.begin(), pos.end(), [&](int32_t a, int32_t b) { return idx[a] < idx[b]; });
  std::vector<int32_t> sorted(static_cast<size_t>(m));
  for (size_t j = 0; j < pos.size(); ++j) sorted[j] = idx[pos[j]];
  const std::vector<bf16> src_dev = ToDeviceBf16(src);
  std::vector<float> dst = start;
  emulation::Launch(
      [&] {
        k::scatter_add_sorted_kernel(src_dev.data(), sorted.data(), pos.data(), m, d, dst.data());
      },
      emulation::Dim3{static_cast<unsigned>(m),
                      static_cast<unsigned>(cuda::CeilDiv(d, k::kScatterBlock)), 1},
      emulation::Dim3{k::kScatterBlock, 1, 1}, 0);
  ExpectBitEqual(dst, want, "ScatterAddRows");
}

}  // namespace
}  // namespace headroom
