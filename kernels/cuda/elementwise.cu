// Elementwise ops (Fill, Scale, Add, Axpy), the bias add, and the GEMM's C = beta * C.
//
// All are memory-bound grid-stride loops: a grid capped at kMaxGridStrideBlocks blocks of 256
// threads, each thread striding by the grid size, so any n (int64) is covered by one launch and
// neighbouring threads touch neighbouring addresses (coalesced). In-place use (out == a, y == x)
// is safe because each element is read and written by the same thread. The bias GRADIENT is a
// column reduction and lives in reduce.cu.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void fill_kernel(float* __restrict__ x, int64_t n, float value) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] = value;
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float alpha) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] *= alpha;
}

// No __restrict__: out may alias a or b.
__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) out[i] = a[i] + b[i];
}

__global__ void axpy_kernel(float alpha, const float* __restrict__ x, float* __restrict__ y,
                            int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] += alpha * x[i];
}

__global__ void add_bias_kernel(float* __restrict__ x, const float* __restrict__ bias, int64_t n,
                                int cols) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) x[i] += bias[i % cols];
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

}  // namespace

void LaunchFill(float* x, int64_t n, float value, const LaunchContext& ctx) {
  if (n <= 0) return;
  fill_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, n, value);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchScale(float* x, int64_t n, float alpha, const LaunchContext& ctx) {
  if (n <= 0) return;
  scale_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, n, alpha);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchAdd(const float* a, const float* b, float* out, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  add_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(a, b, out, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchAxpy(float alpha, const float* x, float* y, int64_t n, const LaunchContext& ctx) {
  if (n <= 0) return;
  axpy_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(alpha, x, y, n);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchAddBias(float* x, const float* bias, int64_t rows, int cols, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  add_bias_kernel<<<GridStrideBlocks(n, kBlock), kBlock, 0, ctx.stream>>>(x, bias, n, cols);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
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
