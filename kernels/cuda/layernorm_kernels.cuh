// The device code of LayerNorm (kernels/cuda/layernorm.cu): one warp per row, forward (with the
// fused residual add and dropout of the post-LN block) and the dx pass of backward (with the
// fused dropout of dsub), and the input-from-output reconstruction. The parameter gradients are
// reduce_kernels.cuh's column sums. Beside them the packed kernels, templated on the activation
// storage (float or __nv_bfloat16, kernels/cuda/storage.cuh): the row held in registers as fp32
// with 16-byte vector loads and stores (warp_rows.cuh, shared with the embedding kernel), the
// residual + dropout + LayerNorm forward with one Philox call per four elements, and LayerNorm
// backward in one pass with deterministic per-block dgamma/dbeta partials. Dropout's mask
// (ElementDropout, MakeElementDropout) is warp_rows.cuh's. A header of its own so that
// tests/kernels/layernorm_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/layernorm.cc and Ops'
// Dropout + Add + LayerNorm composition); only layernorm.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_LAYERNORM_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_LAYERNORM_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/cuda/warp_rows.cuh"

namespace headroom::cuda::layernorm_kernels {

constexpr int kBlock = kRowBlock;
constexpr int kRowsPerBlock = kRowsPerRowBlock;
// The shared row helpers (warp_rows.cuh), also by this family's name.
using ::headroom::cuda::ChunkColumn;
using ::headroom::cuda::ElementDropout;
using ::headroom::cuda::MakeElementDropout;
using ::headroom::cuda::NormalizeRow;
using ::headroom::cuda::PackedShapeError;
using ::headroom::cuda::PacksPerLane;
using ::headroom::cuda::WithPacksPerLane;

// With `sub` null: y = LayerNorm(x). Otherwise sum = x + dropout(sub) is written first and
// normalised (each lane rereads only what it wrote). x and sum_out carry no __restrict__: the
// row is reread through the pointer it was written by, which must not become a read-only
// (non-coherent) load.
__global__ void layernorm_forward_kernel(const float* x, const float* __restrict__ sub,
                                         ElementDropout drop, float* sum_out,
                                         const float* __restrict__ gamma,
                                         const float* __restrict__ beta, int64_t rows, int cols,
                                         float eps, float* __restrict__ y, float* __restrict__ mean,
                                         float* __restrict__ rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together: shuffles stay full-warp
  const float* xr = x + row * cols;
  if (sub != nullptr) {
    float* sr = sum_out + row * cols;
    const float* ur = sub + row * cols;
    for (int c = lane; c < cols; c += kWarpSize) sr[c] = xr[c] + drop.Apply(ur[c], row * cols + c);
    xr = sr;
  }
  float sum = 0.0f;
  for (int c = lane; c < cols; c += kWarpSize) sum += xr[c];
  const float mu = WarpSum(sum) / cols;
  float sq = 0.0f;
  for (int c = lane; c < cols; c += kWarpSize) {
    const float d = xr[c] - mu;
    sq += d * d;
  }
  const float rs = 1.0f / sqrtf(WarpSum(sq) / cols + eps);
  float* yr = y + row * cols;
  for (int c = lane; c < cols; c += kWarpSize) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// No __restrict__ on dy and dx: they may alias.
// With dsub non-null, also dsub = dropout(dx).
__global__ void layernorm_backward_dx_kernel(const float* dy, const float* __restrict__ x,
                                             const float* __restrict__ gamma,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ rstd, int64_t rows, int cols,
                                             float* dx, ElementDropout drop,
                                             float* __restrict__ dsub) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const float* dyr = dy + row * cols;
  const float* xr = x + row * cols;
  const float mu = mean[row], rs = rstd[row];
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int c = lane; c < cols; c += kWarpSize) {
    const float g = dyr[c] * gamma[c];
    sum_g += g;
    sum_gx += g * ((xr[c] - mu) * rs);
  }
  const float mg = WarpSum(sum_g) / cols;
  const float mgx = WarpSum(sum_gx) / cols;
  float* dxr = dx + row * cols;
  for (int c = lane; c < cols; c += kWarpSize) {
    const float xhat = (xr[c] - mu) * rs;
    const float v = rs * (dyr[c] * gamma[c] - mg - xhat * mgx);
    dxr[c] = v;
    if (dsub != nullptr) dsub[row * cols + c] = drop.Apply(v, row * cols + c);
  }
}

// One thread per element (rows of any width): x = (y - beta) / gamma / rstd + mean, from y stored
// as Y (float or bf16) into fp32 x.
template <typename Y>
__global__ void layernorm_input_from_output_kernel(const Y* __restrict__ y,
                                                   const float* __restrict__ gamma,
                                                   const float* __restrict__ beta,
                                                   const float* __restrict__ mean,
                                                   const float* __restrict__ rstd, int64_t rows,
                                                   int cols, float* __restrict__ x) {
  const int64_t total = rows * cols;
  for (int64_t e = GlobalThread(); e < total; e += GridThreads()) {
    const int64_t r = e / cols;
    const int c = static_cast<int>(e % cols);
    x[e] = (ToFloat(y[e]) - beta[c]) / gamma[c] * (1.0f / rstd[r]) + mean[r];
  }
}

// One warp per row, as layernorm_forward_kernel: with `sub` null y = LayerNorm(x); otherwise
// sum = x + dropout(sub) is computed in fp32, stored as S in sum_out, and that fp32 sum (not its
// stored rounding) is normalised. Each tensor has its storage type: X for x, U for sub, S for the
// sum (fp32 for an fp32 residual stream), Y for y. x and sum_out may alias when X is S (each lane
// reads its chunks before it writes them).
template <typename X, typename U, typename S, typename Y, int kPacks>
__global__ void __launch_bounds__(kBlock)
    layernorm_forward_packed_kernel(const X* x, const U* __restrict__ sub, ElementDropout drop,
                                    S* sum_out, const float* __restrict__ gamma,
                                    const float* __restrict__ beta, int64_t rows, int cols,
                                    float eps, Y* __restrict__ y, float* __restrict__ mean,
                                    float* __restrict__ rstd) {
  constexpr int kN = Chunk<X, U, S, Y>::kSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together: shuffles stay full-warp
  const int64_t base = row * cols;
  float v[kPacks][kN];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int c = ChunkColumn<kN>(k, lane);
    if (c >= cols) break;
    LoadElements(x + base + c, v[k]);
    if (sub != nullptr) {
      float s[kN];
      LoadElements(sub + base + c, s);
      drop.ApplyGroups(s, base + c);
#pragma unroll
      for (int j = 0; j < kN; ++j) v[k][j] = v[k][j] + s[j];
      StoreElements(sum_out + base + c, v[k]);
    }
  }
  NormalizeRow<Y, kN, kPacks>(v, row, cols, lane, gamma, beta, eps, ElementDropout{}, y, mean,
                              rstd);
}

// LayerNorm backward in one pass over dy and x (from DRAM; the second read of a row hits L1).
// Warps stride over the rows (warp w of block b takes rows b * kRowsPerBlock + w, then
// gridDim.x * kRowsPerBlock further, ...). Per row the lane reads its dy and x packs, forms the
// two row means of dy * gamma and dy * gamma * xhat, then reads the packs again (from L1: keeping
// them in registers would cost the second block per SM; 126 registers at kPacks = 4 on sm_90),
// writes dx = rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)) (and, with dsub
// non-null, dsub = dropout(dx), from the fp32 dx), and adds dy * xhat and dy to its own
// columns' fp32 accumulators. The block then adds its warps' accumulators in warp order and
// stores one partial row per block at part_dgamma / part_dbeta[blockIdx.x * cols + c];
// reduce_kernels::column_sums_final_kernel adds those in block order into dgamma and dbeta. Every
// order is fixed by the grid: deterministic. Storage types: DY for dy, X for x, DX for dx (fp32
// for an fp32 residual stream's gradient), DS for dsub. dx may alias dy when DX is DY (a lane
// reads each dy chunk of the row before it writes that chunk's dx); x may alias neither.
template <typename DY, typename X, typename DX, typename DS, int kPacks>
__global__ void __launch_bounds__(kBlock)
    layernorm_backward_packed_kernel(const DY* dy, const X* __restrict__ x,
                                     const float* __restrict__ gamma,
                                     const float* __restrict__ mean, const float* __restrict__ rstd,
                                     int64_t rows, int cols, DX* dx, ElementDropout drop,
                                     DS* __restrict__ dsub, float* __restrict__ part_dgamma,
                                     float* __restrict__ part_dbeta) {
  constexpr int kN = Chunk<DY, X, DX, DS>::kSize;
  __shared__ float shared_dg[kRowsPerBlock][kWarpSize * kN];
  __shared__ float shared_db[kRowsPerBlock][kWarpSize * kN];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  float dg[kPacks][kN], db[kPacks][kN];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
#pragma unroll
    for (int j = 0; j < kN; ++j) dg[k][j] = db[k][j] = 0.0f;
  }
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t base = row * cols;
    const float mu = mean[row], rs = rstd[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int c = ChunkColumn<kN>(k, lane);
      if (c >= cols) break;
      float d[kN], xv[kN], g[kN];
      LoadElements(dy + base + c, d);
      LoadElements(x + base + c, xv);
      LoadElements(gamma + c, g);
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        const float gj = d[j] * g[j], xhat = (xv[j] - mu) * rs;
        sum_g += gj;
        sum_gx += gj * xhat;
        dg[k][j] += d[j] * xhat;
        db[k][j] += d[j];
      }
    }
    const float mg = WarpSum(sum_g) / cols;
    const float mgx = WarpSum(sum_gx) / cols;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int c = ChunkColumn<kN>(k, lane);
      if (c >= cols) break;
      float d[kN], xv[kN], g[kN], out[kN];
      LoadElements(dy + base + c, d);  // again (from L1): fewer registers, more blocks
      LoadElements(x + base + c, xv);
      LoadElements(gamma + c, g);
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        const float xhat = (xv[j] - mu) * rs;
        out[j] = rs * (d[j] * g[j] - mg - xhat * mgx);
      }
      StoreElements(dx + base + c, out);
      if (dsub != nullptr) {
        drop.ApplyGroups(out, base + c);
        StoreElements(dsub + base + c, out);
      }
    }
  }
  // The block's warps in warp order, one pack index at a time: thread t adds column
  // k * 32 * kN + t of the 8 warps.
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      shared_dg[warp][lane * kN + j] = dg[k][j];
      shared_db[warp][lane * kN + j] = db[k][j];
    }
    __syncthreads();
    for (int t = threadIdx.x; t < kWarpSize * kN; t += blockDim.x) {
      const int c = k * kWarpSize * kN + t;
      if (c >= cols) break;
      float sg = 0.0f, sb = 0.0f;
      for (int w = 0; w < kRowsPerBlock; ++w) {
        sg += shared_dg[w][t];
        sb += shared_db[w][t];
      }
      part_dgamma[static_cast<int64_t>(blockIdx.x) * cols + c] = sg;
      part_dbeta[static_cast<int64_t>(blockIdx.x) * cols + c] = sb;
    }
    __syncthreads();
  }
}

}  // namespace headroom::cuda::layernorm_kernels

#endif  // HEADROOM_KERNELS_CUDA_LAYERNORM_KERNELS_CUH_
