// Optimizer updates over flat fp32 buffers, in place: AdamW and LAMB (kernels/ops.h).
//
// AdamW is one elementwise pass (w, g, m, v read once, w, m, v written once: memory-bound, no
// reduction). LAMB needs the norms of the whole tensor between computing the update u and
// applying it, so it is three stages on the stream without a host round trip: (1) m, v update
// and u into the caller's scratch, (2) ||w||^2 and ||u||^2 into two device scalars with the
// deterministic Dot of reduce.cu, (3) w -= lr * r * u with the trust ratio r computed on the
// device from those scalars. The element math is written as in kernels/cpu/optimizer.cc and the
// bias-correction factors come from the host in double, so CPU and GPU differ only by fp32
// rounding of the norms.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

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

__global__ void adamw_kernel(float* __restrict__ w, const float* __restrict__ g,
                             float* __restrict__ m, float* __restrict__ v, int64_t n,
                             AdamParams p) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    w[i] -= p.lr * AdamDirection(w[i], g[i], m + i, v + i, p);
  }
}

__global__ void lamb_direction_kernel(const float* __restrict__ w, const float* __restrict__ g,
                                      float* __restrict__ m, float* __restrict__ v,
                                      float* __restrict__ u, int64_t n, AdamParams p) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    u[i] = AdamDirection(w[i], g[i], m + i, v + i, p);
  }
}

// norms[0] = ||w||^2, norms[1] = ||u||^2 (computed before this kernel).
__global__ void lamb_apply_kernel(float* __restrict__ w, const float* __restrict__ u, int64_t n,
                                  float lr, const float* __restrict__ norms) {
  const float ws = norms[0], us = norms[1];
  const float ratio = (ws > 0.0f && us > 0.0f) ? sqrtf(ws) / sqrtf(us) : 1.0f;
  const float step = lr * ratio;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) w[i] -= step * u[i];
}

}  // namespace

void LaunchAdamW(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                 const LaunchContext& ctx) {
  if (n <= 0) return;
  adamw_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(w, g, m, v, n, p);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLamb(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                float* u, float* norms, float* partials, const LaunchContext& ctx) {
  if (n <= 0) return;
  lamb_direction_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(w, g, m, v, u, n,
                                                                                p);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  LaunchDot(w, w, n, norms, partials, ctx);
  LaunchDot(u, u, n, norms + 1, partials, ctx);
  lamb_apply_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(w, u, n, p.lr, norms);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
