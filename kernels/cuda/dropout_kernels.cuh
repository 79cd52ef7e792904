// The device code of Dropout (kernels/cuda/dropout.cu): one thread per group of four elements,
// one Philox call per group (kernels/philox.h), as a grid-stride loop. A header of its own so
// that tests/kernels/dropout_emulation_test.cc runs exactly this code on the CPU under
// tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/dropout.cc), mask bit for
// bit; only dropout.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_DROPOUT_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_DROPOUT_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/philox.h"

namespace headroom::cuda::dropout_kernels {

constexpr int kBlock = 256;

// y = x * keep / (1 - rate) over n elements, from X storage to Y storage (float or bf16: the
// value widened, scaled in fp32, rounded to Y once; float to float is a lone multiply).
template <typename X, typename Y>
__global__ void dropout_kernel(const X* x, Y* y, int64_t n, uint32_t threshold, float keep_scale,
                               uint64_t seed, uint64_t step, uint32_t layer, uint32_t site) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = GlobalThread(); g < groups; g += GridThreads()) {
    const Philox4x32 words = DropoutWords(seed, step, layer, site, static_cast<uint64_t>(g));
    const int64_t i0 = g * 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // unrolled: words.v[j] stays in registers
      const int64_t i = i0 + j;
      if (i < n) y[i] = FromFloat<Y>(words.v[j] >= threshold ? ToFloat(x[i]) * keep_scale : 0.0f);
    }
  }
}

}  // namespace headroom::cuda::dropout_kernels

#endif  // HEADROOM_KERNELS_CUDA_DROPOUT_KERNELS_CUH_
