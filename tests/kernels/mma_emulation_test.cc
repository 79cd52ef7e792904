// kernels/cuda/mma.cuh's MmaBf16 (PTX mma.sync m16n8k16, bf16 operands, fp32 accumulation) as
// tests/kernels/cuda_emulation.h implements it, against a float64 product. Each lane builds its
// fragments with the PTX ISA's per-element formulas ("Matrix Fragments for mma.m16n8k16 with
// floating point type", element index i of a0..a7, b0..b3, c0..c3), written out here
// independently of the pair form that mma.cuh documents and the emulation uses, so a
// transcription slip in either shows as a wrong product. The attention forward
// (attention_emulation_test.cc) relies on this layout for its P = A fragment step.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/mma.cuh"

namespace headroom {
namespace {

// The PTX ISA's fragment element -> matrix position, with g = lane >> 2, t = lane % 4.
int ARow(int lane, int i) { return (lane >> 2) + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0); }
int ACol(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
int BRow(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
int BCol(int lane) { return lane >> 2; }
int CRow(int lane, int i) { return (lane >> 2) + (i >= 2 ? 8 : 0); }
int CCol(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

// Small integers and halves: exact in bf16, and every product and sum exact in fp32.
float Value(int seed, int r, int c) {
  return static_cast<float>(((seed * 7 + r * 5 + c * 3) % 11) - 5) / 2;
}

TEST(MmaEmulation, ProductAtThePtxFragmentPositions) {
  constexpr int kWarps = 2;  // the second warp checks that warps do not share slots
  std::vector<float> d(kWarps * 32 * 4, NAN);
  emulation::Launch(
      [&] {
        const int thread = static_cast<int>(threadIdx.x), lane = thread % 32, w = thread / 32;
        cuda::Bf16x2 a[4], b[2];
        for (int p = 0; p < 4; ++p) {
          a[p] = __floats2bfloat162_rn(Value(w, ARow(lane, 2 * p), ACol(lane, 2 * p)),
                                       Value(w, ARow(lane, 2 * p + 1), ACol(lane, 2 * p + 1)));
        }
        for (int p = 0; p < 2; ++p) {
          b[p] = __floats2bfloat162_rn(Value(w + 3, BRow(lane, 2 * p), BCol(lane)),
                                       Value(w + 3, BRow(lane, 2 * p + 1), BCol(lane)));
        }
        float acc[4];
        for (int i = 0; i < 4; ++i) acc[i] = static_cast<float>(CRow(lane, i) - CCol(lane, i));
        cuda::MmaBf16(acc, a, b);  // twice: the second call uses the other slot set
        cuda::MmaBf16(acc, a, b);
        for (int i = 0; i < 4; ++i) d[static_cast<size_t>(thread * 4 + i)] = acc[i];
      },
      1, 1, kWarps * 32, 0);

  for (int w = 0; w < kWarps; ++w) {
    for (int lane = 0; lane < 32; ++lane) {
      for (int i = 0; i < 4; ++i) {
        const int r = CRow(lane, i), c = CCol(lane, i);
        double want = r - c;
        for (int k = 0; k < 16; ++k) want += 2.0 * Value(w, r, k) * Value(w + 3, k, c);
        EXPECT_EQ(d[static_cast<size_t>((w * 32 + lane) * 4 + i)], want)
            << "warp " << w << " lane " << lane << " element " << i << " (" << r << ", " << c
            << ")";
      }
    }
  }
}

}  // namespace
}  // namespace headroom
