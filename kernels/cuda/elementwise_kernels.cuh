// The device code of the elementwise ops (kernels/cuda/elementwise.cu): Fill, Scale, Add, Axpy,
// the bias add as grid-stride loops, and the GEMM's C = beta * C over a 2-D grid. A header of
// its own so that tests/kernels/elementwise_emulation_test.cc runs exactly this code on the CPU
// under tests/kernels/cuda_emulation.h against the CPU twin; only elementwise.cu includes it
// otherwise.
#ifndef HEADROOM_KERNELS_CUDA_ELEMENTWISE_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_ELEMENTWISE_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda::elementwise_kernels {

constexpr int kBlock = 256;

__global__ void fill_kernel(float* __restrict__ x, int64_t n, float value) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] = value;
}

// Storage types A, X, Y, Z: float or __nv_bfloat16 (storage.cuh); each value is widened, the
// arithmetic is fp32, and the result is rounded once to its storage (all float: as before).
template <typename A>
__global__ void scale_kernel(A* __restrict__ x, int64_t n, float alpha) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    x[i] = FromFloat<A>(ToFloat(x[i]) * alpha);
  }
}

// No __restrict__: out may alias a or b.
template <typename X, typename Y, typename Z>
__global__ void add_kernel(const X* a, const Y* b, Z* out, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    out[i] = FromFloat<Z>(ToFloat(a[i]) + ToFloat(b[i]));
  }
}

// y = x in Y's storage: rounded to nearest even (float to bf16) or widened (bf16 to float).
template <typename X, typename Y>
__global__ void convert_kernel(const X* __restrict__ x, Y* __restrict__ y, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = FromFloat<Y>(ToFloat(x[i]));
}

__global__ void axpy_kernel(float alpha, const float* __restrict__ x, float* __restrict__ y,
                            int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] += alpha * x[i];
}

template <typename A>
__global__ void add_bias_kernel(A* __restrict__ x, const float* __restrict__ bias, int64_t n,
                                int cols) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    x[i] = FromFloat<A>(ToFloat(x[i]) + bias[i % cols]);
  }
}

// Grid: (column blocks, rows, batch) with rows and batch folded into grid.y by striding.
__global__ void scale_matrices_kernel(float* C, int rows, int cols, int ldc, int64_t stride_c,
                                      int batch, float beta) {
  const int64_t total_rows = static_cast<int64_t>(rows) * batch;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t rb = blockIdx.y; rb < total_rows; rb += gridDim.y) {
    const int64_t b = rb / rows, r = rb % rows;
    float* p = C + b * stride_c + r * ldc + c;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

}  // namespace headroom::cuda::elementwise_kernels

#endif  // HEADROOM_KERNELS_CUDA_ELEMENTWISE_KERNELS_CUH_
