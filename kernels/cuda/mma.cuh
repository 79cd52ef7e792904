// One warp's tensor-core product through PTX's
// `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32` (D [16, 8] += A [16, 16] x B [16, 8], bf16
// operands, fp32 accumulation), with the register fragments laid out as the PTX ISA documents them
// ("Matrix Fragments for mma.m16n8k16 with floating point type"). Unlike WMMA's opaque fragments,
// the layout is the contract: a kernel knows which row and column every register holds, so it can
// rescale an accumulator by row (the online softmax) or turn one product's accumulator into the
// next one's A operand without going through shared memory.
//
// With lane = threadIdx.x % 32, g = lane / 4 ("groupID") and t = lane % 4
// ("threadID_in_group"), each lane holds, as pairs of bf16 (the lower half of the 32-bit
// register, `.x`, is the lower column or row index):
//   A [16, 16], 4 pairs:  a[0] = (g, 2t .. 2t+1)      a[1] = (g + 8, 2t .. 2t+1)
//                         a[2] = (g, 2t+8 .. 2t+9)    a[3] = (g + 8, 2t+8 .. 2t+9)
//   B [16, 8],  2 pairs:  b[0] = (2t .. 2t+1, g)      b[1] = (2t+8 .. 2t+9, g)      (k, n)
//   C, D [16, 8], 4 floats: d[0], d[1] = (g, 2t), (g, 2t+1); d[2], d[3] = (g + 8, 2t), (g + 8,
//   2t+1)
// So two adjacent n8 accumulators of a product, rounded to bf16 pair by pair, are exactly the A
// fragment of the next product over those 16 columns (flash-attention's P from S).
//
// tests/kernels/cuda_emulation.h implements the same instruction on the CPU from this layout
// (HR_CUDA_EMULATION), so the kernels that use it run in CI.
#ifndef HEADROOM_KERNELS_CUDA_MMA_CUH_
#define HEADROOM_KERNELS_CUDA_MMA_CUH_

#ifndef HR_CUDA_EMULATION
#include <cuda_bf16.h>

#include <cstdint>
#endif

namespace headroom::cuda {

using Bf16x2 = __nv_bfloat162;

// The fragment coordinates of this lane (see the file comment).
struct MmaLane {
  int g;  // groupID: rows g and g + 8 of A and D, column g of B
  int t;  // threadID_in_group: columns 2t, 2t + 1 (+ 8) of A, D; rows of B
};

__device__ __forceinline__ MmaLane ThisMmaLane() {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  return {lane / 4, lane % 4};
}

// d += A x B for the warp (every lane calls it; see the file comment for the fragments).
__device__ __forceinline__ void MmaBf16(float (&d)[4], const Bf16x2 (&a)[4], const Bf16x2 (&b)[2]) {
#ifdef HR_CUDA_EMULATION
  ::headroom::emulation::MmaM16N8K16Bf16(d, a, b);
#else
  const uint32_t* ar = reinterpret_cast<const uint32_t*>(a);
  const uint32_t* br = reinterpret_cast<const uint32_t*>(b);
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]));
#endif
}

// The bf16 pair at p (4-byte aligned: an even element of a row with an even stride).
__device__ __forceinline__ Bf16x2 LoadPair(const __nv_bfloat16* p) {
  return *reinterpret_cast<const Bf16x2*>(p);
}

// x and y rounded to bf16 (nearest even) as one pair, x in the lower half.
__device__ __forceinline__ Bf16x2 RoundPair(float x, float y) {
  return __floats2bfloat162_rn(x, y);
}

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_MMA_CUH_
