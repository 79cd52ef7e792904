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
//
// The residual variants (Ops::ResidualLayerNormForward / Backward) fold the post-LN block's
// hidden dropout and residual add into the same row pass: forward writes
// sum = x + dropout(sub) while reading the row (then normalises sum), backward writes
// dsub = dropout(dx) beside dx. The mask and scale are Dropout's, element by element
// (kernels/philox.h: index row * cols + c), with the same single multiply, so the results are
// bit-identical to Dropout + Add + LayerNormForward (and LayerNormBackward + Dropout).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/philox.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarpSize;

// Dropout's mask applied to one element at a time (kernels/cuda/dropout.cu draws four at once;
// here a lane's elements are 32 apart, so each has its own Philox call).
struct ElementDropout {
  bool active = false;  // rate > 0
  uint32_t threshold = 0;
  float keep_scale = 1;
  uint64_t seed = 0, step = 0;
  uint32_t layer = 0, site = 0;

  __device__ float Apply(float v, int64_t i) const {
    if (!active) return v;
    const Philox4x32 w = DropoutWords(seed, step, layer, site, static_cast<uint64_t>(i) >> 2);
    const int j = static_cast<int>(i & 3);
    const uint32_t word = j == 0 ? w.v[0] : j == 1 ? w.v[1] : j == 2 ? w.v[2] : w.v[3];
    // __fmul_rn: a product never contracted into an FMA with the add that follows (Dropout
    // rounds it on its own).
    return word >= threshold ? __fmul_rn(v, keep_scale) : 0.0f;
  }
};

ElementDropout MakeElementDropout(float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                  uint32_t site) {
  ElementDropout d;
  d.active = rate > 0.0f;
  d.threshold = DropoutThreshold(rate);
  // rate >= 1 drops everything (Dropout fills zeros): a keep scale of 0 zeroes the rare word
  // that still passes the threshold.
  d.keep_scale = rate >= 1.0f ? 0.0f : static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
  d.seed = seed;
  d.step = step;
  d.layer = layer;
  d.site = site;
  return d;
}

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

// One thread per element (rows of any width): x = (y - beta) / gamma / rstd + mean.
__global__ void layernorm_input_from_output_kernel(const float* __restrict__ y,
                                                   const float* __restrict__ gamma,
                                                   const float* __restrict__ beta,
                                                   const float* __restrict__ mean,
                                                   const float* __restrict__ rstd, int64_t rows,
                                                   int cols, float* __restrict__ x) {
  const int64_t total = rows * cols;
  for (int64_t e = GlobalThread(); e < total; e += GridThreads()) {
    const int64_t r = e / cols;
    const int c = static_cast<int>(e % cols);
    x[e] = (y[e] - beta[c]) / gamma[c] * (1.0f / rstd[r]) + mean[r];
  }
}

unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)); }

}  // namespace

void LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                            int cols, float eps, float* y, float* mean, float* rstd,
                            const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_forward_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      x, nullptr, ElementDropout{}, nullptr, gamma, beta, rows, cols, eps, y, mean, rstd);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchResidualLayerNormForward(const float* x, const float* sub, float rate, uint64_t seed,
                                    uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, float* sum, float* y, float* mean, float* rstd,
                                    const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_forward_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      x, sub, MakeElementDropout(rate, seed, step, layer, site), sum, gamma, beta, rows, cols, eps,
      y, mean, rstd);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                             const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                             float* dbeta, float* colsum_scratch, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  // Parameter gradients first: dx may overwrite dy.
  LaunchColumnSums(dy, x, mean, rstd, rows, cols, dbeta, dgamma, colsum_scratch, ctx);
  layernorm_backward_dx_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      dy, x, gamma, mean, rstd, rows, cols, dx, ElementDropout{}, nullptr);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                     const float* mean, const float* rstd, int64_t rows, int cols,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* dsum, float* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch,
                                     const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  LaunchColumnSums(dy, sum, mean, rstd, rows, cols, dbeta, dgamma, colsum_scratch, ctx);
  layernorm_backward_dx_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      dy, sum, gamma, mean, rstd, rows, cols, dsum,
      MakeElementDropout(rate, seed, step, layer, site), rate > 0.0f ? dsub : nullptr);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, int64_t rows, int cols,
                                    float* x, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_input_from_output_kernel<<<GridStrideBlocks(rows * cols, kBlock), kBlock, 0,
                                       ctx.stream>>>(y, gamma, beta, mean, rstd, rows, cols, x);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
