// The device code of the reductions (kernels/cuda/reduce.cu): Dot's two passes (block partials,
// then one block over the partials) and the chunked column sums (bias and LayerNorm parameter
// gradients) with their final pass over the chunks. A header of its own so that
// tests/kernels/reduce_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/reduce.cc, elementwise.cc,
// layernorm.cc); only reduce.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_REDUCE_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_REDUCE_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda::reduce_kernels {

constexpr int kDotBlock = 256;
constexpr int kColTile = 32;   // columns per block (one warp wide: coalesced row segments)
constexpr int kRowLanes = 16;  // threads per column inside a block
constexpr int kMinRowsPerChunk = 128;

__global__ void dot_partial_kernel(const float* a, const float* b, int64_t n,
                                   float* __restrict__ partials) {
  __shared__ float shared[kWarpSize];
  float acc = 0.0f;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) acc += a[i] * b[i];
  acc = BlockSum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block of kDotMaxBlocks threads.
__global__ void dot_final_kernel(const float* __restrict__ partials, int count,
                                 float* __restrict__ out) {
  __shared__ float shared[kWarpSize];
  float v = static_cast<int>(threadIdx.x) < count ? partials[threadIdx.x] : 0.0f;
  v = BlockSum(v, shared);
  if (threadIdx.x == 0) *out = v;
}

// Block (kColTile, kRowLanes); grid (column tiles, chunks). Chunk k covers rows
// [k * rows_per_chunk, min(rows, (k + 1) * rows_per_chunk)). With `direct` (one chunk) the sums
// are added to out_sum/out_xhat; otherwise they are stored at [chunk * cols + c] of the partial
// buffers out_sum/out_xhat. dy and x are stored as A (float, or __nv_bfloat16 read widened:
// the bias gradient of bf16 activations); every sum is fp32.
template <bool kXhat, typename A = float>
__global__ void column_sums_kernel(const A* __restrict__ dy, const A* __restrict__ x,
                                   const float* __restrict__ mean, const float* __restrict__ rstd,
                                   int64_t rows, int cols, int64_t rows_per_chunk, bool direct,
                                   float* out_sum, float* out_xhat) {
  __shared__ float part_sum[kRowLanes][kColTile + 1];
  __shared__ float part_xhat[kRowLanes][kColTile + 1];
  const int c = blockIdx.x * kColTile + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  float s = 0.0f, sx = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const float g = ToFloat(dy[r * cols + c]);
      s += g;
      if constexpr (kXhat) sx += g * ((ToFloat(x[r * cols + c]) - mean[r]) * rstd[r]);
    }
  }
  part_sum[threadIdx.y][threadIdx.x] = s;
  if constexpr (kXhat) part_xhat[threadIdx.y][threadIdx.x] = sx;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  s = 0.0f;
  sx = 0.0f;
  for (int lane = 0; lane < kRowLanes; ++lane) {
    s += part_sum[lane][threadIdx.x];
    if constexpr (kXhat) sx += part_xhat[lane][threadIdx.x];
  }
  if (direct) {
    out_sum[c] += s;
    if constexpr (kXhat) out_xhat[c] += sx;
  } else {
    const int64_t at = static_cast<int64_t>(blockIdx.y) * cols + c;
    out_sum[at] = s;
    if constexpr (kXhat) out_xhat[at] = sx;
  }
}

// Thread per column: adds the `chunks` partials in chunk order to the outputs.
template <bool kXhat>
__global__ void column_sums_final_kernel(const float* __restrict__ part_sum,
                                         const float* __restrict__ part_xhat, int chunks, int cols,
                                         float* __restrict__ dsum, float* __restrict__ dxhat_sum) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f, sx = 0.0f;
  for (int k = 0; k < chunks; ++k) {
    s += part_sum[static_cast<int64_t>(k) * cols + c];
    if constexpr (kXhat) sx += part_xhat[static_cast<int64_t>(k) * cols + c];
  }
  dsum[c] += s;
  if constexpr (kXhat) dxhat_sum[c] += sx;
}

}  // namespace headroom::cuda::reduce_kernels

#endif  // HEADROOM_KERNELS_CUDA_REDUCE_KERNELS_CUH_
