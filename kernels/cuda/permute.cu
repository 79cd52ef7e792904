// PermuteHeads: [B, S, H, D] <-> [B, H, S, D], the head split and merge around attention.
//
// One thread per OUTPUT element, in output order, so writes are fully coalesced; reads are
// coalesced along d (a whole D-element row moves contiguously), which is enough for a pure copy
// whose rows are D = 32..256 floats. The index arithmetic is 64-bit: B*S*H*D passes 2^31 for
// large batches.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void permute_heads_kernel(const float* __restrict__ x, float* __restrict__ y, int B,
                                     int S, int H, int D, bool inverse) {
  const int64_t total = static_cast<int64_t>(B) * S * H * D;
  for (int64_t i = GlobalThread(); i < total; i += GridThreads()) {
    const int64_t d = i % D;
    int64_t t = i / D;
    int64_t src;
    if (!inverse) {  // y is [B, H, S, D]: t = (b * H + h) * S + s
      const int64_t s = t % S;
      t /= S;
      const int64_t h = t % H, b = t / H;
      src = ((b * S + s) * H + h) * D + d;
    } else {  // y is [B, S, H, D]: t = (b * S + s) * H + h
      const int64_t h = t % H;
      t /= H;
      const int64_t s = t % S, b = t / S;
      src = ((b * H + h) * S + s) * D + d;
    }
    y[i] = x[src];
  }
}

}  // namespace

void LaunchPermuteHeads(const float* x, float* y, int B, int S, int H, int D, bool inverse,
                        const LaunchContext& ctx) {
  if (B <= 0 || S <= 0 || H <= 0 || D <= 0) return;
  const int64_t total = static_cast<int64_t>(B) * S * H * D;
  permute_heads_kernel<<<GridStrideBlocks(total, kBlock), kBlock, 0, ctx.stream>>>(x, y, B, S, H, D,
                                                                                   inverse);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
