// The embedding kernels' CUDA device code (kernels/cuda/embedding_kernels.cuh) run on the CPU
// under tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float> (kernels/cpu/
// embedding.cc): the gather forward (EmbeddingForward / GatherRows, overwriting and
// accumulating) on the launcher's grid and one striding block, and the scatter-add backward
// (EmbeddingBackward / ScatterAddRows) over ids with long runs of repeats, rows wider than the
// 128-column tile, one row, one column. The launcher sorts (id, row) pairs with CUB's stable
// radix sort; the test stands in std::stable_sort, which by definition gives the same order
// (ids ascending, equal ids in increasing row), and runs the iota kernel that numbers the rows.
//
// Tolerance: none. The gather copies or adds once; the scatter-add adds each id's rows in
// increasing row order in float, the twin's sequence of additions. (The fused embedding +
// LayerNorm + dropout kernel, at the end, has LayerNorm's bands.)
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/embedding_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::embedding_kernels;
using testing_util::ExpectBitEqual;
using testing_util::RandomFloats;

struct Case {
  int64_t m;  // rows looked up
  int d;
  int vocab;
};
const Case kCases[] = {{1, 1, 1}, {1, 130, 3}, {40, 3, 5}, {37, 130, 7}, {300, 17, 2}};

std::vector<int32_t> RandomIds(const Case& c) {
  std::mt19937 rng(static_cast<uint32_t>(c.m * 31 + c.d));
  std::uniform_int_distribution<int32_t> id(0, c.vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(c.m));
  for (int32_t& v : ids) v = id(rng);
  return ids;
}

std::string Describe(const Case& c) {
  return "m=" + std::to_string(c.m) + " d=" + std::to_string(c.d) +
         " vocab=" + std::to_string(c.vocab);
}

TEST(EmbeddingKernelEmulation, ForwardMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  for (const Case& c : kCases) {
    const std::vector<int32_t> ids = RandomIds(c);
    const std::vector<float> table = RandomFloats(int64_t{c.vocab} * c.d, -1, 1, 1);
    const std::vector<float> start = RandomFloats(c.m * c.d, -1, 1, 2);
    for (bool accumulate : {false, true}) {
      std::vector<float> want = start;
      ops.EmbeddingForward(ids.data(), table.data(), c.m, c.d, want.data(), accumulate);
      for (unsigned grid : testing_util::GridStrideGrids(c.m * c.d, k::kBlock)) {
        std::vector<float> got = start;
        testing_util::Launch1D(
            [&] {
              k::embedding_forward_kernel(ids.data(), table.data(), c.m, c.d, got.data(),
                                          accumulate);
            },
            grid, k::kBlock);
        ExpectBitEqual(got, want,
                       Describe(c) + " accumulate=" + std::to_string(accumulate) +
                           " grid=" + std::to_string(grid));
      }
    }
  }
}

TEST(EmbeddingKernelEmulation, ScatterAddMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  for (const Case& c : kCases) {
    const std::vector<int32_t> ids = RandomIds(c);
    const std::vector<float> src = RandomFloats(c.m * c.d, -1, 1, 3);
    const std::vector<float> start = RandomFloats(int64_t{c.vocab} * c.d, -1, 1, 4);
    std::vector<float> want = start;
    ops.ScatterAddRows(src.data(), ids.data(), c.m, c.d, want.data());

    std::vector<int32_t> pos(static_cast<size_t>(c.m), -1);
    testing_util::Launch1D([&] { k::iota_kernel(pos.data(), c.m); },
                           cuda::GridStrideBlocks(c.m, k::kBlock), k::kBlock);
    std::vector<int32_t> expected_pos(static_cast<size_t>(c.m));
    std::iota(expected_pos.begin(), expected_pos.end(), 0);
    ASSERT_EQ(pos, expected_pos) << "iota " << Describe(c);
    std::stable_sort(pos.begin(), pos.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
    std::vector<int32_t> sorted_ids(static_cast<size_t>(c.m));
    for (size_t j = 0; j < pos.size(); ++j) sorted_ids[j] = ids[pos[j]];

    std::vector<float> got = start;
    emulation::Launch(
        [&] {
          k::scatter_add_sorted_kernel(src.data(), sorted_ids.data(), pos.data(), c.m, c.d,
                                       got.data());
        },
        emulation::Dim3{static_cast<unsigned>(c.m),
                        static_cast<unsigned>(cuda::CeilDiv(c.d, k::kScatterBlock)), 1},
        emulation::Dim3{k::kScatterBlock, 1, 1}, 0);
    ExpectBitEqual(got, want, Describe(c));
  }
}

// ---- The fused embedding sum + LayerNorm + dropout (packed rows): float, bf16, and the model's
// bf16 instance with the sum (the residual stream) in float ---------------------------------------
// The twin is the model's sequence of ops (model/transformer.cc EmbeddingsForward): the word
// lookup, Scale, the accumulating position and token-type lookups, LayerNormForward (post-LN),
// Dropout. The sum is the same float operations: bit for bit (rounded to bf16 as stored). The
// statistics and the output have LayerNorm's bands (testing_util::LayerNormForwardBands), the
// output's scaled by the dropout's 1 / (1 - rate) plus that multiply's rounding, and for bf16 one
// bf16 ulp more (ExpectStoredWithin); the mask bit for bit (zero exactly where the twin's is).
// Pre-LN (no LayerNorm) the output is dropout(sum): bit for bit.
struct FusedCase {
  int64_t rows;
  int d, vocab;
  bool token_types, post_ln;
  float word_scale, rate;
};
const FusedCase kFusedCases[] = {{9, 40, 7, true, true, 1, 0.1f},
                                 {17, 256, 30, false, true, 16, 0},
                                 {3, 776, 5, true, false, 1, 0.1f},
                                 {2, 1000, 3, true, true, 1, 0.5f},
                                 {2, 2048, 3, false, true, 1, 0.1f}};
const DropoutKey kEmbeddingKey{99, 4, 1000, 0};

template <typename S, typename A>
void CheckEmbeddingLayerNorm() {
  constexpr int kChunk = cuda::Chunk<S, A>::kSize;
  using testing_util::FromDevice;
  using testing_util::Stored;
  CpuOps<float> ops(1);
  for (const FusedCase& c : kFusedCases) {
    if (!cuda::PackedShapeError(c.d, kChunk, {}).empty()) continue;
    const std::string what = "rows=" + std::to_string(c.rows) + " d=" + std::to_string(c.d) +
                             " post_ln=" + std::to_string(c.post_ln) +
                             " rate=" + std::to_string(c.rate);
    const int64_t n = c.rows * c.d;
    const Case lookup{c.rows, c.d, c.vocab};
    const std::vector<int32_t> ids = RandomIds(lookup);
    std::vector<int32_t> positions(static_cast<size_t>(c.rows)), types(static_cast<size_t>(c.rows));
    for (int64_t r = 0; r < c.rows; ++r) {
      positions[r] = static_cast<int32_t>(r % 5);
      types[r] = static_cast<int32_t>(r % 2);
    }
    const std::vector<float> word = RandomFloats(int64_t{c.vocab} * c.d, -1, 1, 1);
    const std::vector<float> pos = RandomFloats(int64_t{5} * c.d, -1, 1, 2);
    const std::vector<float> type = RandomFloats(int64_t{2} * c.d, -1, 1, 3);
    const std::vector<float> gamma = RandomFloats(c.d, 0.5f, 1.5f, 4);
    const std::vector<float> beta = RandomFloats(c.d, -0.5f, 0.5f, 5);
    constexpr float kEps = 1e-12f;
    std::vector<float> want_sum(n), want_y(n), want_mean(c.rows), want_rstd(c.rows);
    ops.EmbeddingForward(ids.data(), word.data(), c.rows, c.d, want_sum.data(), false);
    if (c.word_scale != 1) ops.Scale(want_sum.data(), n, c.word_scale);
    ops.EmbeddingForward(positions.data(), pos.data(), c.rows, c.d, want_sum.data(), true);
    if (c.token_types) {
      ops.EmbeddingForward(types.data(), type.data(), c.rows, c.d, want_sum.data(), true);
    }
    if (c.post_ln) {
      ops.LayerNormForward(want_sum.data(), gamma.data(), beta.data(), c.rows, c.d, kEps,
                           want_y.data(), want_mean.data(), want_rstd.data());
    } else {
      want_y = want_sum;
    }
    if (c.rate > 0) ops.Dropout(want_y.data(), want_y.data(), n, c.rate, kEmbeddingKey);

    std::vector<S> sum(n);
    std::vector<A> y(n);
    std::vector<float> mean(c.rows, NAN), rstd(c.rows, NAN);
    const cuda::ElementDropout drop = cuda::MakeElementDropout(
        c.rate, kEmbeddingKey.seed, kEmbeddingKey.step, kEmbeddingKey.layer, kEmbeddingKey.site);
    const int packs = cuda::PacksPerLane(c.d, kChunk);
    ASSERT_TRUE(cuda::WithPacksPerLane(packs, [&](auto p) {
      testing_util::Launch1D(
          [&] {
            k::embedding_layernorm_forward_kernel<S, A, decltype(p)::value>(
                ids.data(), word.data(), c.word_scale, positions.data(), pos.data(),
                c.token_types ? types.data() : nullptr, type.data(), c.rows, c.d,
                c.post_ln ? gamma.data() : nullptr, beta.data(), kEps, drop, sum.data(), y.data(),
                mean.data(), rstd.data());
          },
          static_cast<unsigned>(cuda::CeilDiv(c.rows, cuda::kRowsPerRowBlock)), cuda::kRowBlock);
    })) << what;
    if (!c.post_ln) {
      ExpectBitEqual(FromDevice(y), Stored<A>(want_y), "pre-LN output " + what);
      continue;
    }
    ExpectBitEqual(FromDevice(sum), Stored<S>(want_sum), "sum " + what);
    const testing_util::LayerNormBands b = testing_util::LayerNormForwardBands(
        c.rows, c.d, want_sum, gamma, beta, want_mean, want_rstd);
    for (int64_t r = 0; r < c.rows; ++r) {
      ASSERT_LE(std::fabs(double{mean[r]} - want_mean[r]), b.mean[r]) << "mean " << r << what;
      ASSERT_LE(std::fabs(double{rstd[r]} - want_rstd[r]), b.rstd[r]) << "rstd " << r << what;
    }
    const std::vector<float> got = FromDevice(y);
    std::vector<double> band(b.y.size());
    for (size_t i = 0; i < band.size(); ++i) {
      band[i] = b.y[i] / (1 - c.rate) + 0x1p-23 * std::fabs(want_y[i]);
      ASSERT_EQ(got[i] == 0.0f, want_y[i] == 0.0f) << "mask at " << i << " " << what;
    }
    testing_util::ExpectStoredWithin<A>(got, want_y, band, "output " + what);
  }
}

TEST(EmbeddingKernelEmulation, FusedLayerNormDropoutFloatWithinBandOfTwin) {
  CheckEmbeddingLayerNorm<float, float>();
}

TEST(EmbeddingKernelEmulation, FusedLayerNormDropoutBf16WithinOneUlpOfTwin) {
  CheckEmbeddingLayerNorm<__nv_bfloat16, __nv_bfloat16>();
}

// CudaOps' Ops<float, Bf16> instance: the sum is the model's fp32 residual stream, bit for bit.
TEST(EmbeddingKernelEmulation, FusedLayerNormDropoutFp32SumBf16OutputWithinOneUlpOfTwin) {
  CheckEmbeddingLayerNorm<float, __nv_bfloat16>();
}

}  // namespace
}  // namespace headroom
