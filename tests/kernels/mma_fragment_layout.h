// The PTX ISA's fragment formulas for mma.sync m16n8k16 with bf16 operands ("Matrix Fragments
// for mma.m16n8k16 with floating point type"), element by element (a0..a7, b0..b3, c0..c3 with
// groupID = lane >> 2 and threadID_in_group = lane % 4), written out independently of the pair
// form kernels/cuda/mma.cuh documents and uses, and the test operands both mma tests multiply:
// mma_emulation_test.cc (the CPU emulation) and mma_cuda_test.cc (the GPU itself) build each
// lane's fragments from these and compare the product with a float64 one at these positions.
#ifndef HEADROOM_TESTS_KERNELS_MMA_FRAGMENT_LAYOUT_H_
#define HEADROOM_TESTS_KERNELS_MMA_FRAGMENT_LAYOUT_H_

// Host and device functions under nvcc and the emulation, plain functions elsewhere.
#if defined(__CUDACC__) || defined(HR_CUDA_EMULATION)
#define HR_MMA_LAYOUT_FN __host__ __device__ inline
#else
#define HR_MMA_LAYOUT_FN inline
#endif

namespace headroom::testing_util::mma_layout {

// A [16, 16] element i (0..7) of `lane`.
HR_MMA_LAYOUT_FN int ARow(int lane, int i) {
  return (lane >> 2) + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0);
}
HR_MMA_LAYOUT_FN int ACol(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
// B [16, 8] element i (0..3).
HR_MMA_LAYOUT_FN int BRow(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
HR_MMA_LAYOUT_FN int BCol(int lane) { return lane >> 2; }
// C, D [16, 8] element i (0..3).
HR_MMA_LAYOUT_FN int CRow(int lane, int i) { return (lane >> 2) + (i >= 2 ? 8 : 0); }
HR_MMA_LAYOUT_FN int CCol(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

// Operand values: halves in [-2.5, 2.5], exact in bf16, so every product and partial sum of a
// 16-term dot product is exact in fp32 and the result compares for equality.
HR_MMA_LAYOUT_FN float Value(int seed, int r, int c) {
  return static_cast<float>(((seed * 7 + r * 5 + c * 3) % 11) - 5) / 2;
}
// The accumulator's start value at (r, c).
HR_MMA_LAYOUT_FN float Start(int r, int c) { return static_cast<float>(r - c); }

// The expected result at (r, c) after `products` MmaBf16 calls with A = Value(seed_a, ., .) and
// B = Value(seed_b, ., .), from the start value.
inline double Expected(int seed_a, int seed_b, int r, int c, int products) {
  double want = Start(r, c);
  for (int k = 0; k < 16; ++k) want += products * double{Value(seed_a, r, k)} * Value(seed_b, k, c);
  return want;
}

}  // namespace headroom::testing_util::mma_layout

#endif  // HEADROOM_TESTS_KERNELS_MMA_FRAGMENT_LAYOUT_H_
