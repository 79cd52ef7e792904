// The elementwise kernels' CUDA device code (kernels/cuda/elementwise_kernels.cuh: Fill, Scale,
// Add, Axpy, the bias add and the GEMM's C = beta * C) run on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float> (kernels/cpu/elementwise.cc
// and, for C = beta * C, its Gemm with alpha = 0), on ragged sizes with the launcher's grid and
// with one block (every thread strides).
//
// Tolerance: none. Each element is one float operation (or, for Axpy, a product then a sum) in
// the same order as the twin, and the emulation build contracts nothing into an FMA, so the
// results must be bit-identical. (On the GPU nvcc contracts Axpy's y + alpha * x into one FMA,
// a difference of at most 1 ulp that the cuda_float op tests (tests/kernels/ops_test.cc) bound on a
// GPU.)
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::elementwise_kernels;
using testing_util::ExpectBitEqual;
using testing_util::GridStrideGrids;
using testing_util::Launch1D;
using testing_util::RaggedSizes;
using testing_util::RandomFloats;

// Calls run(n, grid, what) for every ragged size and both grids.
void ForEachSizeAndGrid(const std::function<void(int64_t, unsigned, const std::string&)>& run) {
  for (int64_t n : RaggedSizes()) {
    for (unsigned grid : GridStrideGrids(n, k::kBlock)) {
      run(n, grid, "n=" + std::to_string(n) + " grid=" + std::to_string(grid));
    }
  }
}

TEST(ElementwiseKernelEmulation, FillScaleAddAxpyMatchTwinBitForBit) {
  CpuOps<float> ops(1);
  ForEachSizeAndGrid([&](int64_t n, unsigned grid, const std::string& what) {
    const std::vector<float> a = RandomFloats(n, -3, 3, static_cast<uint64_t>(n));
    const std::vector<float> b = RandomFloats(n, -3, 3, static_cast<uint64_t>(n) + 7);

    std::vector<float> got(a.size(), NAN), want(a.size(), NAN);
    Launch1D([&] { k::fill_kernel(got.data(), n, 0.375f); }, grid, k::kBlock);
    ops.Fill(want.data(), n, 0.375f);
    ExpectBitEqual(got, want, "fill " + what);

    got = a;
    want = a;
    Launch1D([&] { k::scale_kernel(got.data(), n, -1.7f); }, grid, k::kBlock);
    ops.Scale(want.data(), n, -1.7f);
    ExpectBitEqual(got, want, "scale " + what);

    got.assign(a.size(), NAN);
    Launch1D([&] { k::add_kernel(a.data(), b.data(), got.data(), n); }, grid, k::kBlock);
    ops.Add(a.data(), b.data(), want.data(), n);
    ExpectBitEqual(got, want, "add " + what);
    got = a;  // in place: out aliases a (the residual add)
    Launch1D([&] { k::add_kernel(got.data(), b.data(), got.data(), n); }, grid, k::kBlock);
    ExpectBitEqual(got, want, "add in place " + what);

    got = b;
    want = b;
    Launch1D([&] { k::axpy_kernel(0.3f, a.data(), got.data(), n); }, grid, k::kBlock);
    ops.Axpy(0.3f, a.data(), want.data(), n);
    ExpectBitEqual(got, want, "axpy " + what);
  });
}

// Rows of one column up to rows wider than a block, the element count no multiple of the width.
TEST(ElementwiseKernelEmulation, AddBiasMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  for (const auto& [rows, cols] : {std::pair{1, 1}, {5, 1}, {1, 300}, {7, 33}, {19, 260}}) {
    const int64_t n = int64_t{rows} * cols;
    const std::vector<float> x = RandomFloats(n, -2, 2, static_cast<uint64_t>(n));
    const std::vector<float> bias = RandomFloats(cols, -1, 1, static_cast<uint64_t>(cols) + 3);
    std::vector<float> want = x;
    ops.AddBias(want.data(), bias.data(), rows, cols);
    for (unsigned grid : GridStrideGrids(n, k::kBlock)) {
      std::vector<float> got = x;
      Launch1D([&] { k::add_bias_kernel(got.data(), bias.data(), n, cols); }, grid, k::kBlock);
      ExpectBitEqual(got, want,
                     "add_bias " + std::to_string(rows) + "x" + std::to_string(cols) +
                         " grid=" + std::to_string(grid));
    }
  }
}

// C = beta * C on `batch` matrices with padding columns (ldc > cols) that must stay untouched,
// beta = 0 writing exact zeros over NaN; grid.y below the row count, so blocks stride over rows
// and matrices (the launcher caps grid.y at 65535). The twin is the CPU GEMM with alpha = 0.
TEST(ElementwiseKernelEmulation, ScaleMatricesMatchesTwinGemmBitForBit) {
  CpuOps<float> ops(1);
  struct Case {
    int rows, cols, ldc, batch;
    float beta;
    unsigned grid_y;
  };
  for (const Case& c : {Case{1, 1, 1, 1, 0.5f, 1}, Case{3, 300, 301, 2, -2.0f, 6},
                        Case{5, 7, 9, 3, 0.0f, 4}, Case{4, 256, 260, 1, 1.5f, 4}}) {
    const int64_t stride = int64_t{c.rows} * c.ldc + 5;  // a gap between matrices too
    std::vector<float> C = RandomFloats(stride * c.batch, -2, 2, 11);
    if (c.beta == 0.0f) {
      for (int64_t b = 0; b < c.batch; ++b) C[static_cast<size_t>(b * stride)] = NAN;
    }
    std::vector<float> want = C;
    const std::vector<float> zeros_a(static_cast<size_t>(c.rows), 0.0f);
    const std::vector<float> zeros_b(static_cast<size_t>(c.cols), 0.0f);
    ops.GemmStridedBatched(Trans::kNo, Trans::kNo, c.rows, c.cols, 1, 0.0f, zeros_a.data(), 1, 0,
                           zeros_b.data(), c.cols, 0, c.beta, want.data(), c.ldc, stride, c.batch);
    std::vector<float> got = C;
    emulation::Launch(
        [&] {
          k::scale_matrices_kernel(got.data(), c.rows, c.cols, c.ldc, stride, c.batch, c.beta);
        },
        emulation::Dim3{static_cast<unsigned>(cuda::CeilDiv(c.cols, k::kBlock)), c.grid_y, 1},
        emulation::Dim3{static_cast<unsigned>(k::kBlock), 1, 1}, 0);
    ExpectBitEqual(got, want, "scale_matrices rows=" + std::to_string(c.rows));
  }
}

}  // namespace
}  // namespace headroom
