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
// increasing row order in float, the twin's sequence of additions.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <algorithm>
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

}  // namespace
}  // namespace headroom
