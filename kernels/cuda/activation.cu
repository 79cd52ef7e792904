// Pointwise activations: GELU (erf form, as BERT), its tanh form (Google BERT's gelu), ReLU
// (tensor2tensor's FFN) and tanh (BERT's pooler), forward and backward.
//
//   gelu(x)       = 0.5 * x * (1 + erf(x / sqrt(2)))
//   gelu'(x)      = Phi(x) + x * phi(x),  Phi(x) = 0.5 * (1 + erf(x / sqrt(2))),
//                   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   gelu_tanh(x)  = 0.5 * x * (1 + t),  t = tanh(sqrt(2 / pi) * (x + 0.044715 x^3))
//   gelu_tanh'(x) = 0.5 * (1 + t) + 0.5 * x * (1 - t^2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x^2)
//   relu(x)       = max(x, 0),  relu'(x) = 1 for x > 0, else 0
//   tanh'(x)      = 1 - y^2 from the saved output y.
// The formulas are written exactly as in kernels/cpu/activation.cc, with CUDA's accurate erff,
// expf and tanhf (no fast-math intrinsics: the parity tests want ~1e-6 relative). Grid-stride
// loops over 16-byte packs (4 floats, 8 bf16) where the pointers are 16-byte aligned, else over
// elements; in place is safe (each element read before written by the same thread). Each launcher
// has a float and a bf16 (__nv_bfloat16 storage, fp32 arithmetic) instance of the same kernel.
#include "kernels/cuda/activation_kernels.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda {
using namespace activation_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

// Packs of 16 bytes where every pointer is 16-byte aligned (a thread per pack), else a thread per
// element.
template <typename A>
void Forward(void (*kernel)(const A*, A*, int64_t, bool), const A* x, A* y, int64_t n,
             const LaunchContext& ctx) {
  if (n <= 0) return;
  const bool packed = Aligned16({x, y});
  const int64_t items = packed ? CeilDiv(n, Pack<A>::kSize) : n;
  kernel<<<GridStrideBlocks(items, kBlock), kBlock, 0, ctx.stream>>>(x, y, n, packed);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

template <typename A>
void Backward(void (*kernel)(const A*, const A*, A*, int64_t, bool), const A* x, const A* dy, A* dx,
              int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  const bool packed = Aligned16({x, dy, dx});
  const int64_t items = packed ? CeilDiv(n, Pack<A>::kSize) : n;
  kernel<<<GridStrideBlocks(items, kBlock), kBlock, 0, ctx.stream>>>(x, dy, dx, n, packed);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchGeluForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  Forward(gelu_forward_kernel<float>, x, y, n, ctx);
}

void LaunchGeluBackward(const float* x, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx) {
  Backward(gelu_backward_kernel<float>, x, dy, dx, n, ctx);
}

void LaunchGeluTanhForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  Forward(gelu_tanh_forward_kernel<float>, x, y, n, ctx);
}

void LaunchGeluTanhBackward(const float* x, const float* dy, float* dx, int64_t n,
                            const LaunchContext& ctx) {
  Backward(gelu_tanh_backward_kernel<float>, x, dy, dx, n, ctx);
}

void LaunchReluForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  Forward(relu_forward_kernel<float>, x, y, n, ctx);
}

void LaunchReluBackward(const float* x, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx) {
  Backward(relu_backward_kernel<float>, x, dy, dx, n, ctx);
}

void LaunchTanhForward(const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  Forward(tanh_forward_kernel<float>, x, y, n, ctx);
}

void LaunchTanhBackward(const float* y, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx) {
  Backward(tanh_backward_kernel<float>, y, dy, dx, n, ctx);
}

void LaunchGeluForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                       const LaunchContext& ctx) {
  Forward(gelu_forward_kernel<__nv_bfloat16>, x, y, n, ctx);
}

void LaunchGeluBackward(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, const LaunchContext& ctx) {
  Backward(gelu_backward_kernel<__nv_bfloat16>, x, dy, dx, n, ctx);
}

void LaunchGeluTanhForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                           const LaunchContext& ctx) {
  Forward(gelu_tanh_forward_kernel<__nv_bfloat16>, x, y, n, ctx);
}

void LaunchGeluTanhBackward(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                            int64_t n, const LaunchContext& ctx) {
  Backward(gelu_tanh_backward_kernel<__nv_bfloat16>, x, dy, dx, n, ctx);
}

void LaunchReluForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                       const LaunchContext& ctx) {
  Forward(relu_forward_kernel<__nv_bfloat16>, x, y, n, ctx);
}

void LaunchReluBackward(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, const LaunchContext& ctx) {
  Backward(relu_backward_kernel<__nv_bfloat16>, x, dy, dx, n, ctx);
}

void LaunchTanhForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                       const LaunchContext& ctx) {
  Forward(tanh_forward_kernel<__nv_bfloat16>, x, y, n, ctx);
}

void LaunchTanhBackward(const __nv_bfloat16* y, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, const LaunchContext& ctx) {
  Backward(tanh_backward_kernel<__nv_bfloat16>, y, dy, dx, n, ctx);
}

}  // namespace headroom::cuda
