// Device helpers shared by the .cu files: warp and block reductions, grid sizing.
//
// Every reduction here combines values in a fixed tree (butterfly shuffles within a warp, then
// the warp results in warp order), so a kernel's result depends only on its launch shape and
// the data, never on scheduling: the backend is deterministic run to run.
//
// tests/kernels/cuda_emulation.h compiles this file for the CPU (HR_CUDA_EMULATION: it provides
// the CUDA built-ins itself), so the emulated kernels use these very helpers.
#ifndef HEADROOM_KERNELS_CUDA_COMMON_CUH_
#define HEADROOM_KERNELS_CUDA_COMMON_CUH_

#ifndef HR_CUDA_EMULATION
#include <cuda_runtime.h>
#endif

#include <cstdint>

namespace headroom::cuda {

inline constexpr int kWarpSize = 32;
// Grid-stride kernels launch at most this many blocks; each thread then loops.
inline constexpr int64_t kMaxGridStrideBlocks = 65536;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n items with `block` threads (n > 0).
inline unsigned GridStrideBlocks(int64_t n, int block) {
  const int64_t blocks = CeilDiv(n, block);
  return static_cast<unsigned>(blocks < kMaxGridStrideBlocks ? blocks : kMaxGridStrideBlocks);
}

// Butterfly sums: every lane ends with the same total.
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `shared` holds 32 floats; the leading barrier lets consecutive calls reuse it.
__device__ __forceinline__ float BlockSum(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0f;
  return WarpSum(v);
}

__device__ __forceinline__ float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  return WarpMax(v);
}

// Index of this thread in a 1-D grid, and the grid's thread count (64-bit: n may pass 2^31).
__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridThreads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_COMMON_CUH_
