// Dropout with the Philox-4x32-10 mask of kernels/philox.h, bit-identical to the CPU backend.
//
// The mask is a pure function of (key, element index): thread g draws the four words of group g
// (elements 4g .. 4g+3) with the same DropoutWords the CPU calls, compares each with
// DropoutThreshold(rate), and scales kept elements by keep_scale = float(1 / (1 - rate))
// computed in double on the host exactly as the CPU does. A lone multiply (no add, so nothing
// for FMA contraction to change) gives the same bits as the CPU for every element. rate <= 0
// copies and rate >= 1 zeroes, as on the CPU. y may alias x.
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dropout_kernels.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/philox.h"

namespace headroom::cuda {
using namespace dropout_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

// From X storage into Y storage (float or bf16); y may alias x when X is Y.
template <typename X, typename Y>
void Dropout(const X* x, Y* y, int64_t n, float rate, uint64_t seed, uint64_t step, uint32_t layer,
             uint32_t site, const LaunchContext& ctx) {
  if (n <= 0) return;
  if (rate <= 0.0f) {
    if constexpr (std::is_same_v<X, Y>) {
      if (static_cast<const void*>(y) != static_cast<const void*>(x)) {
        HR_CUDA_CHECK(*ctx.err, cudaMemcpyAsync(y, x, sizeof(X) * static_cast<size_t>(n),
                                                cudaMemcpyDeviceToDevice, ctx.stream));
      }
    } else {
      LaunchConvert(x, y, n, ctx);
    }
    return;
  }
  if (rate >= 1.0f) {  // nothing kept: +0 (all-zero bits in float and bf16)
    HR_CUDA_CHECK(*ctx.err, cudaMemsetAsync(y, 0, sizeof(Y) * static_cast<size_t>(n), ctx.stream));
    return;
  }
  const uint32_t threshold = DropoutThreshold(rate);
  const float keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
  const int64_t groups = (n + 3) / 4;
  dropout_kernel<X, Y><<<GridStrideBlocks(groups, kBlock), kBlock, 0, ctx.stream>>>(
      x, y, n, threshold, keep_scale, seed, step, layer, site);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchDropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step,
                   uint32_t layer, uint32_t site, const LaunchContext& ctx) {
  Dropout(x, y, n, rate, seed, step, layer, site, ctx);
}
void LaunchDropout(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n, float rate, uint64_t seed,
                   uint64_t step, uint32_t layer, uint32_t site, const LaunchContext& ctx) {
  Dropout(x, y, n, rate, seed, step, layer, site, ctx);
}
void LaunchDropout(const float* x, __nv_bfloat16* y, int64_t n, float rate, uint64_t seed,
                   uint64_t step, uint32_t layer, uint32_t site, const LaunchContext& ctx) {
  Dropout(x, y, n, rate, seed, step, layer, site, ctx);
}

}  // namespace headroom::cuda
