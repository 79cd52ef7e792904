// The device code of LayerNorm (kernels/cuda/layernorm.cu): one warp per row, forward (with the
// fused residual add and dropout of the post-LN block) and the dx pass of backward (with the
// fused dropout of dsub), and the input-from-output reconstruction; ElementDropout is Dropout's
// mask one element at a time, and MakeElementDropout its host-side construction from the rate.
// The parameter gradients are reduce_kernels.cuh's column sums. A header of its own so that
// tests/kernels/layernorm_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/layernorm.cc and Ops'
// Dropout + Add + LayerNorm composition); only layernorm.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_LAYERNORM_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_LAYERNORM_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace headroom::cuda::layernorm_kernels {

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

inline ElementDropout MakeElementDropout(float rate, uint64_t seed, uint64_t step, uint32_t layer,
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

}  // namespace headroom::cuda::layernorm_kernels

#endif  // HEADROOM_KERNELS_CUDA_LAYERNORM_KERNELS_CUH_
