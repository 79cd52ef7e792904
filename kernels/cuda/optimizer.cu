// Optimizer updates over flat fp32 buffers, in place: AdamW and LAMB (kernels/ops.h).
//
// AdamW is one elementwise pass (w, g, m, v read once, w, m, v written once: memory-bound, no
// reduction). LAMB needs the norms of the whole tensor between computing the update u and
// applying it, so it is three stages on the stream without a host round trip: (1) m, v update
// and u into the caller's scratch, (2) ||w||^2 and ||u||^2 into two device scalars with the
// deterministic Dot of reduce.cu, (3) w -= lr * r * u with the trust ratio r computed on the
// device from those scalars. The element math is written as in kernels/cpu/optimizer.cc and the
// bias-correction factors come from the host in double, so CPU and GPU differ only by fp32
// rounding of the norms. With a `mirror`, the update also writes the bf16 copy of the new weights
// (round to nearest even) in the same pass, for the bf16 GEMMs.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/optimizer_kernels.cuh"

namespace headroom::cuda {
using namespace optimizer_kernels;  // NOLINT(build/namespaces): this file's own kernels

void LaunchAdamW(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                 const LaunchContext& ctx) {
  LaunchAdamW(w, g, m, v, n, p, nullptr, ctx);
}

void LaunchAdamW(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                 __nv_bfloat16* mirror, const LaunchContext& ctx) {
  if (n <= 0) return;
  adamw_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(w, g, m, v, n, p, mirror);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLamb(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                float* u, float* norms, float* partials, const LaunchContext& ctx) {
  LaunchLamb(w, g, m, v, n, p, u, norms, partials, nullptr, ctx);
}

void LaunchLamb(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                float* u, float* norms, float* partials, __nv_bfloat16* mirror,
                const LaunchContext& ctx) {
  if (n <= 0) return;
  lamb_direction_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(w, g, m, v, u, n,
                                                                                p);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  LaunchDot(w, w, n, norms, partials, ctx);
  LaunchDot(u, u, n, norms + 1, partials, ctx);
  lamb_apply_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(w, u, n, p.lr, norms,
                                                                            mirror);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
