// kernels/cuda/mma.cuh's MmaBf16 (PTX mma.sync m16n8k16, bf16 operands, fp32 accumulation) as
// tests/kernels/cuda_emulation.h implements it, against a float64 product: each lane builds its
// fragments with the PTX ISA's per-element formulas (mma_fragment_layout.h), so a transcription
// slip in the emulation or in mma.cuh's pair form shows as a wrong product. The attention
// kernels (attention_emulation_test.cc) rely on this layout; mma_cuda_test.cc runs the same
// check on a GPU.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cuda/mma.cuh"
#include "tests/kernels/mma_fragment_layout.h"

namespace headroom {
namespace {

namespace L = testing_util::mma_layout;

TEST(MmaEmulation, ProductAtThePtxFragmentPositions) {
  constexpr int kWarps = 2;  // the second warp checks that warps do not share slots
  std::vector<float> d(kWarps * 32 * 4, NAN);
  emulation::Launch(
      [&] {
        const int thread = static_cast<int>(threadIdx.x), lane = thread % 32, w = thread / 32;
        cuda::Bf16x2 a[4], b[2];
        for (int p = 0; p < 4; ++p) {
          a[p] = __floats2bfloat162_rn(
              L::Value(w, L::ARow(lane, 2 * p), L::ACol(lane, 2 * p)),
              L::Value(w, L::ARow(lane, 2 * p + 1), L::ACol(lane, 2 * p + 1)));
        }
        for (int p = 0; p < 2; ++p) {
          b[p] = __floats2bfloat162_rn(L::Value(w + 3, L::BRow(lane, 2 * p), L::BCol(lane)),
                                       L::Value(w + 3, L::BRow(lane, 2 * p + 1), L::BCol(lane)));
        }
        float acc[4];
        for (int i = 0; i < 4; ++i) acc[i] = L::Start(L::CRow(lane, i), L::CCol(lane, i));
        cuda::MmaBf16(acc, a, b);  // twice: the second call uses the other slot set
        cuda::MmaBf16(acc, a, b);
        for (int i = 0; i < 4; ++i) d[static_cast<size_t>(thread * 4 + i)] = acc[i];
      },
      1, 1, kWarps * 32, 0);

  for (int w = 0; w < kWarps; ++w) {
    for (int lane = 0; lane < 32; ++lane) {
      for (int i = 0; i < 4; ++i) {
        const int r = L::CRow(lane, i), c = L::CCol(lane, i);
        EXPECT_EQ(d[static_cast<size_t>((w * 32 + lane) * 4 + i)], L::Expected(w, w + 3, r, c, 2))
            << "warp " << w << " lane " << lane << " element " << i << " (" << r << ", " << c
            << ")";
      }
    }
  }
}

}  // namespace
}  // namespace headroom
