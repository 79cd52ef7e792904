// The device code of PermuteHeads (kernels/cuda/permute.cu): one thread per output element of
// [B, S, H, D] <-> [B, H, S, D], as a grid-stride loop. A header of its own so that
// tests/kernels/permute_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/permute.cc); only permute.cu
// includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_PERMUTE_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_PERMUTE_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace headroom::cuda::permute_kernels {

constexpr int kBlock = 256;

// A copy: any element type (float, __nv_bfloat16).
template <typename A>
__global__ void permute_heads_kernel(const A* __restrict__ x, A* __restrict__ y, int B, int S,
                                     int H, int D, bool inverse) {
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

}  // namespace headroom::cuda::permute_kernels

#endif  // HEADROOM_KERNELS_CUDA_PERMUTE_KERNELS_CUH_
