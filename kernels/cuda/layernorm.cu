// LayerNorm forward and backward over the last dimension.
//
// One warp per row (llm.c's layernorm kernel 3 idea): a row of d = 256..4096 floats is read by
// 32 lanes with coalesced strides, the statistics come from warp shuffles (no shared memory, no
// block barrier), and the row stays in L1/L2 between the passes. The variance is two-pass (mean
// first, then the centred squares), as on the CPU, so large means do not cancel. Backward
// computes the parameter gradients FIRST, as deterministic column sums (reduce.cu), because dx
// may alias dy and the dx kernel overwrites it; then one warp per row computes
//   dx = rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)).
// Within the dx kernel every lane reads all of its dy elements (two reduction passes) before
// the shuffles that end them, and writes dx[i] only where it read dy[i]: in place is safe.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarpSize;

__global__ void layernorm_forward_kernel(const float* __restrict__ x,
                                         const float* __restrict__ gamma,
                                         const float* __restrict__ beta, int64_t rows, int cols,
                                         float eps, float* __restrict__ y, float* __restrict__ mean,
                                         float* __restrict__ rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together: shuffles stay full-warp
  const float* xr = x + row * cols;
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
__global__ void layernorm_backward_dx_kernel(const float* dy, const float* __restrict__ x,
                                             const float* __restrict__ gamma,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ rstd, int64_t rows, int cols,
                                             float* dx) {
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
    dxr[c] = rs * (dyr[c] * gamma[c] - mg - xhat * mgx);
  }
}

unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)); }

}  // namespace

void LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                            int cols, float eps, float* y, float* mean, float* rstd,
                            const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_forward_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(x, gamma, beta, rows, cols,
                                                                       eps, y, mean, rstd);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                             const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                             float* dbeta, float* colsum_scratch, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  // Parameter gradients first: dx may overwrite dy.
  LaunchColumnSums(dy, x, mean, rstd, rows, cols, dbeta, dgamma, colsum_scratch, ctx);
  layernorm_backward_dx_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(dy, x, gamma, mean, rstd,
                                                                           rows, cols, dx);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
