// Elementwise ops (Fill, Scale, Add, Axpy), the bias add, the GEMM's C = beta * C, and the
// storage conversions of bf16 activations (Scale and Add of bf16, Convert).
//
// All are memory-bound grid-stride loops: a grid capped at kMaxGridStrideBlocks blocks of 256
// threads, each thread striding by the grid size, so any n (int64) is covered by one launch and
// neighbouring threads touch neighbouring addresses (coalesced). In-place use (out == a, y == x)
// is safe because each element is read and written by the same thread. The bias GRADIENT is a
// column reduction and lives in reduce.cu.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
using namespace elementwise_kernels;  // NOLINT(build/namespaces): this file's own kernels

void LaunchFill(float* x, int64_t n, float value, const LaunchContext& ctx) {
  if (n <= 0) return;
  fill_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, n, value);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

namespace {

template <typename A>
void Scale(A* x, int64_t n, float alpha, const LaunchContext& ctx) {
  if (n <= 0) return;
  scale_kernel<A><<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, n, alpha);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

template <typename X, typename Y, typename Z>
void Add(const X* a, const Y* b, Z* out, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  add_kernel<X, Y, Z><<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(a, b, out, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

template <typename X, typename Y>
void Convert(const X* x, Y* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  convert_kernel<X, Y><<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchScale(float* x, int64_t n, float alpha, const LaunchContext& ctx) {
  Scale(x, n, alpha, ctx);
}
void LaunchScale(__nv_bfloat16* x, int64_t n, float alpha, const LaunchContext& ctx) {
  Scale(x, n, alpha, ctx);
}

void LaunchAdd(const float* a, const float* b, float* out, int64_t n, const LaunchContext& ctx) {
  Add(a, b, out, n, ctx);
}
void LaunchAdd(const float* a, const __nv_bfloat16* b, float* out, int64_t n,
               const LaunchContext& ctx) {
  Add(a, b, out, n, ctx);
}

void LaunchConvert(const float* x, __nv_bfloat16* y, int64_t n, const LaunchContext& ctx) {
  Convert(x, y, n, ctx);
}
void LaunchConvert(const __nv_bfloat16* x, float* y, int64_t n, const LaunchContext& ctx) {
  Convert(x, y, n, ctx);
}

void LaunchAxpy(float alpha, const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  axpy_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(alpha, x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

namespace {

template <typename A>
void AddBias(A* x, const float* bias, int64_t rows, int cols, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  add_bias_kernel<A><<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, bias, n, cols);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchAddBias(float* x, const float* bias, int64_t rows, int cols, const LaunchContext& ctx) {
  AddBias(x, bias, rows, cols, ctx);
}
void LaunchAddBias(__nv_bfloat16* x, const float* bias, int64_t rows, int cols,
                   const LaunchContext& ctx) {
  AddBias(x, bias, rows, cols, ctx);
}

void LaunchScaleMatrices(float* C, int rows, int cols, int ldc, int64_t stride_c, int batch,
                         float beta, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0 || batch <= 0) return;
  if (beta == 1.0f) return;
  const int64_t total_rows = static_cast<int64_t>(rows) * batch;
  const dim3 grid(static_cast<unsigned>(CeilDiv(cols, kBlock)),
                  static_cast<unsigned>(total_rows < 65535 ? total_rows : 65535));
  scale_matrices_kernel<<<grid, kBlock, 0, ctx.stream>>>(C, rows, cols, ldc, stride_c, batch, beta);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
