// The device code of the optimizer updates (kernels/cuda/optimizer.cu): AdamW in one elementwise
// pass, LAMB's direction and apply passes (its norms come from reduce_kernels.cuh's Dot). A
// header of its own so that tests/kernels/optimizer_emulation_test.cc runs exactly this code on
// the CPU under tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/optimizer.cc);
// only optimizer.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_OPTIMIZER_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_OPTIMIZER_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/adam_params.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda::optimizer_kernels {

constexpr int kBlock = 256;

// Updates m and v at i and returns the Adam direction u (with decoupled weight decay).
__device__ __forceinline__ float AdamDirection(float w, float g, float* m, float* v,
                                               const AdamParams& p) {
  const float gs = p.grad_scale * g;
  const float mi = p.beta1 * *m + (1.0f - p.beta1) * gs;
  const float vi = p.beta2 * *v + (1.0f - p.beta2) * gs * gs;
  *m = mi;
  *v = vi;
  return (mi * p.inv_bc1) / (sqrtf(vi * p.inv_bc2) + p.eps) + p.weight_decay * w;
}

// With `mirror` non-null, also mirror[i] = the updated w[i] rounded to nearest even: the bf16
// copy of the weights that the bf16 GEMMs read.
__global__ void adamw_kernel(float* __restrict__ w, const float* __restrict__ g,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, AdamParams p,
                             __nv_bfloat16* __restrict__ mirror) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float updated = w[i] - p.lr * AdamDirection(w[i], g[i], m + i, v + i, p);
    w[i] = updated;
    if (mirror != nullptr) mirror[i] = __float2bfloat16(updated);
  }
}

__global__ void lamb_direction_kernel(const float* __restrict__ w, const float* __restrict__ g,
                                      float* __restrict__ m, float* __restrict__ v,
                                      float* __restrict__ u, int64_t n, AdamParams p) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    u[i] = AdamDirection(w[i], g[i], m + i, v + i, p);
  }
}

// norms[0] = ||w||^2, norms[1] = ||u||^2 (computed before this kernel). With `mirror` non-null,
// also mirror[i] = the updated w[i] rounded to nearest even.
__global__ void lamb_apply_kernel(float* __restrict__ w, const float* __restrict__ u, int64_t n,
                                  float lr, const float* __restrict__ norms,
                                  __nv_bfloat16* __restrict__ mirror) {
  const float ws = norms[0], us = norms[1];
  const float ratio = (ws > 0.0f && us > 0.0f) ? sqrtf(ws) / sqrtf(us) : 1.0f;
  const float step = lr * ratio;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float updated = w[i] - step * u[i];
    w[i] = updated;
    if (mirror != nullptr) mirror[i] = __float2bfloat16(updated);
  }
}

}  // namespace headroom::cuda::optimizer_kernels

#endif  // HEADROOM_KERNELS_CUDA_OPTIMIZER_KERNELS_CUH_
