// The reductions' CUDA device code (kernels/cuda/reduce_kernels.cuh) run on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twins, which sum in double: Dot (both passes:
// block partials, then one block of kDotMaxBlocks = 1024 threads over them) against
// CpuOps<float>::Dot, the column sums against BiasBackward (dy only) and against
// LayerNormBackward's dbeta and dgamma (with x, mean, rstd); one chunk (the kernel adds to the
// outputs) and several (partials, then the final pass in chunk order), ragged row and column
// counts (no multiple of the 32-column tile or the 16 row lanes; one row; one column); and the bias
// sums of bf16 dy (the kernel's __nv_bfloat16 instance).
//
// Tolerance, from the standard bound for floating-point summation: a sum of m float terms, in
// any order, is within (m - 1) u sum |terms| of the exact sum (u = 2^-24, each addition rounds
// with relative error at most u), and the twin's double sum is exact to far below that. Dot's
// terms are themselves rounded products (one more u each), and the column sums' xhat terms
// g * ((x - mean) * rstd) carry three roundings against the twin's one: the bound used is
// (m + 4) u sum |terms|, with m the number of terms plus the initial value of the output.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/reduce_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::reduce_kernels;
using testing_util::RandomFloats;

constexpr double kUnitRoundoff = 0x1p-24;
constexpr int kDotMaxBlocks = 1024;  // kernels/cuda/launch.h: threads of the final Dot block

// The bound above for m terms of total magnitude `sum_abs`.
double SumBound(int64_t m, double sum_abs) {
  return static_cast<double>(m + 4) * kUnitRoundoff * sum_abs;
}

// Dot as LaunchDot runs it, with `blocks` blocks of the first pass (the launcher uses
// min(ceil(n / 256), 1024); 3 make every thread stride for n > 768).
float EmulatedDot(const std::vector<float>& a, const std::vector<float>& b, unsigned blocks) {
  const int64_t n = static_cast<int64_t>(a.size());
  std::vector<float> partials(kDotMaxBlocks, NAN);
  float out = NAN;
  testing_util::Launch1D([&] { k::dot_partial_kernel(a.data(), b.data(), n, partials.data()); },
                         blocks, k::kDotBlock);
  testing_util::Launch1D(
      [&] { k::dot_final_kernel(partials.data(), static_cast<int>(blocks), &out); }, 1,
      kDotMaxBlocks);
  return out;
}

TEST(ReduceKernelEmulation, DotWithinSummationBoundOfTwin) {
  CpuOps<float> ops(1);
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{256}, int64_t{2053}, int64_t{9000}}) {
    const std::vector<float> a = RandomFloats(n, -2, 2, static_cast<uint64_t>(n));
    const std::vector<float> b = RandomFloats(n, -2, 2, static_cast<uint64_t>(n) + 1);
    float want = NAN;
    ops.Dot(a.data(), b.data(), n, &want);
    double sum_abs = 0;
    for (int64_t i = 0; i < n; ++i) sum_abs += std::fabs(double{a[i]} * b[i]);
    const unsigned launcher_blocks =
        static_cast<unsigned>(std::min<int64_t>(cuda::CeilDiv(n, k::kDotBlock), kDotMaxBlocks));
    for (unsigned blocks : {launcher_blocks, 3u}) {
      const float got = EmulatedDot(a, b, blocks);
      EXPECT_LE(std::fabs(double{got} - want), SumBound(n, sum_abs))
          << "n=" << n << " blocks=" << blocks << ": got " << got << ", want " << want;
    }
  }
}

struct ColumnCase {
  int64_t rows;
  int cols;
  int64_t rows_per_chunk;  // >= rows: one chunk (the direct path)
};

// Runs the column-sum kernels as LaunchColumnSums does for `rows_per_chunk`, adding to dsum and
// (with x) dxhat.
template <bool kXhat, typename A = float>
void EmulatedColumnSums(const ColumnCase& c, const std::vector<A>& dy,
                        const std::vector<std::type_identity_t<A>>* x,
                        const std::vector<float>* mean, const std::vector<float>* rstd,
                        std::vector<float>& dsum, std::vector<float>& dxhat) {
  const int64_t chunks = cuda::CeilDiv(c.rows, c.rows_per_chunk);
  const bool direct = chunks == 1;
  std::vector<float> part_sum(static_cast<size_t>(chunks * c.cols), NAN);
  std::vector<float> part_xhat(static_cast<size_t>(chunks * c.cols), NAN);
  float* out_sum = direct ? dsum.data() : part_sum.data();
  float* out_xhat = direct ? dxhat.data() : part_xhat.data();
  const A* xp = kXhat ? x->data() : nullptr;
  const float* mp = kXhat ? mean->data() : nullptr;
  const float* rp = kXhat ? rstd->data() : nullptr;
  emulation::Launch(
      [&] {
        k::column_sums_kernel<kXhat, A>(dy.data(), xp, mp, rp, c.rows, c.cols, c.rows_per_chunk,
                                        direct, out_sum, out_xhat);
      },
      emulation::Dim3{static_cast<unsigned>(cuda::CeilDiv(c.cols, k::kColTile)),
                      static_cast<unsigned>(chunks), 1},
      emulation::Dim3{k::kColTile, k::kRowLanes, 1}, 0);
  if (direct) return;
  constexpr int kFinalBlock = 256;  // as the launcher
  testing_util::Launch1D(
      [&] {
        k::column_sums_final_kernel<kXhat>(part_sum.data(), part_xhat.data(),
                                           static_cast<int>(chunks), c.cols, dsum.data(),
                                           dxhat.data());
      },
      static_cast<unsigned>(cuda::CeilDiv(c.cols, kFinalBlock)), kFinalBlock);
}

const ColumnCase kColumnCases[] = {{1, 1, 128},    {5, 33, 128},  {37, 70, 10},
                                   {300, 40, 128}, {129, 1, 128}, {64, 300, 16}};

// The bias column sums of dy stored as A against BiasBackward on the same values. The
// __nv_bfloat16 instance (the bias gradient of bf16 activations) reads bf16 dy widened exactly
// and sums in fp32: the float band above.
template <typename A>
void CheckBiasColumnSums() {
  CpuOps<float> ops(1);
  for (const ColumnCase& c : kColumnCases) {
    const std::vector<float> dy = testing_util::Stored<A>(RandomFloats(c.rows * c.cols, -1, 1, 5));
    const std::vector<float> start = RandomFloats(c.cols, -1, 1, 6);  // the outputs add
    std::vector<float> want = start, got = start, unused;
    ops.BiasBackward(dy.data(), c.rows, c.cols, want.data());
    EmulatedColumnSums<false, A>(c, testing_util::ToDevice<A>(dy), nullptr, nullptr, nullptr, got,
                                 unused);
    for (int col = 0; col < c.cols; ++col) {
      double sum_abs = std::fabs(start[col]);
      for (int64_t r = 0; r < c.rows; ++r) sum_abs += std::fabs(dy[r * c.cols + col]);
      EXPECT_LE(std::fabs(double{got[col]} - want[col]), SumBound(c.rows + 1, sum_abs))
          << "rows=" << c.rows << " cols=" << c.cols << " rows_per_chunk=" << c.rows_per_chunk
          << " column " << col;
    }
  }
}

TEST(ReduceKernelEmulation, BiasColumnSumsWithinSummationBoundOfTwin) {
  CheckBiasColumnSums<float>();
}

TEST(ReduceKernelEmulation, BiasColumnSumsOfBf16DyWithinSummationBoundOfTwin) {
  CheckBiasColumnSums<__nv_bfloat16>();
}

TEST(ReduceKernelEmulation, LayerNormParameterColumnSumsWithinSummationBoundOfTwin) {
  CpuOps<float> ops(1);
  for (const ColumnCase& c : kColumnCases) {
    const int64_t n = c.rows * c.cols;
    const std::vector<float> dy = RandomFloats(n, -1, 1, 7), x = RandomFloats(n, -3, 3, 8);
    const std::vector<float> mean = RandomFloats(c.rows, -0.5f, 0.5f, 9);
    const std::vector<float> rstd = RandomFloats(c.rows, 0.5f, 2, 10);
    const std::vector<float> gamma = RandomFloats(c.cols, 0.5f, 1.5f, 11);
    const std::vector<float> start_beta = RandomFloats(c.cols, -1, 1, 12);
    const std::vector<float> start_gamma = RandomFloats(c.cols, -1, 1, 13);
    std::vector<float> want_beta = start_beta, want_gamma = start_gamma, dx(n);
    ops.LayerNormBackward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), c.rows,
                          c.cols, dx.data(), want_gamma.data(), want_beta.data());
    std::vector<float> got_beta = start_beta, got_gamma = start_gamma;
    EmulatedColumnSums<true>(c, dy, &x, &mean, &rstd, got_beta, got_gamma);
    for (int col = 0; col < c.cols; ++col) {
      double abs_beta = std::fabs(start_beta[col]), abs_gamma = std::fabs(start_gamma[col]);
      for (int64_t r = 0; r < c.rows; ++r) {
        const double g = dy[r * c.cols + col];
        abs_beta += std::fabs(g);
        abs_gamma += std::fabs(g * (x[r * c.cols + col] - mean[r]) * rstd[r]);
      }
      const std::string what = "rows=" + std::to_string(c.rows) +
                               " cols=" + std::to_string(c.cols) + " column " + std::to_string(col);
      EXPECT_LE(std::fabs(double{got_beta[col]} - want_beta[col]), SumBound(c.rows + 1, abs_beta))
          << "dbeta " << what;
      EXPECT_LE(std::fabs(double{got_gamma[col]} - want_gamma[col]),
                SumBound(c.rows + 1, abs_gamma))
          << "dgamma " << what;
    }
  }
}

}  // namespace
}  // namespace headroom
