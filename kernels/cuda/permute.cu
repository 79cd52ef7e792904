// PermuteHeads: [B, S, H, D] <-> [B, H, S, D], the head split and merge around attention.
//
// One thread per OUTPUT element, in output order, so writes are fully coalesced; reads are
// coalesced along d (a whole D-element row moves contiguously), which is enough for a pure copy
// whose rows are D = 32..256 floats. The index arithmetic is 64-bit: B*S*H*D passes 2^31 for
// large batches.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/permute_kernels.cuh"

namespace headroom::cuda {
using namespace permute_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

template <typename A>
void PermuteHeads(const A* x, A* y, int B, int S, int H, int D, bool inverse,
                  const LaunchContext& ctx) {
  if (B <= 0 || S <= 0 || H <= 0 || D <= 0) return;
  const int64_t total = static_cast<int64_t>(B) * S * H * D;
  permute_heads_kernel<A>
      <<<GridStrideBlocks(total, kBlock), kBlock, 0, ctx.stream>>>(x, y, B, S, H, D, inverse);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchPermuteHeads(const float* x, float* y, int B, int S, int H, int D, bool inverse,
                        const LaunchContext& ctx) {
  PermuteHeads(x, y, B, S, H, D, inverse, ctx);
}
void LaunchPermuteHeads(const __nv_bfloat16* x, __nv_bfloat16* y, int B, int S, int H, int D,
                        bool inverse, const LaunchContext& ctx) {
  PermuteHeads(x, y, B, S, H, D, inverse, ctx);
}

}  // namespace headroom::cuda
