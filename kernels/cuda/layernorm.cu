// LayerNorm forward and backward over the last dimension.
//
// One warp per row (llm.c's layernorm kernel 3 idea): a row of d = 256..4096 floats is read by
// 32 lanes with coalesced strides, the statistics come from warp shuffles (no shared memory, no
// block barrier), and the row stays in L1/L2 between the passes. The variance is two-pass (mean
// first, then the centred squares), as on the CPU, so large means do not cancel. Backward
// computes the parameter gradients FIRST, as deterministic column sums (reduce.cu), because dx
// may alias dy and the dx kernel overwrites it; then one warp per row computes
//   dx = rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)).
// Within the dx kernel every lane reads all of its dy elements (two reduction passes) before
// the shuffles that end them, and writes dx[i] only where it read dy[i]: in place is safe.
//
// The residual variants (Ops::ResidualLayerNormForward / Backward) fold the post-LN block's
// hidden dropout and residual add into the same row pass: forward writes
// sum = x + dropout(sub) while reading the row (then normalises sum), backward writes
// dsub = dropout(dx) beside dx. The mask and scale are Dropout's, element by element
// (kernels/philox.h: index row * cols + c), with the same single multiply, so the results are
// bit-identical to Dropout + Add + LayerNormForward (and LayerNormBackward + Dropout).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/layernorm_kernels.cuh"
#include "kernels/philox.h"

namespace headroom::cuda {
using namespace layernorm_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)); }

}  // namespace

void LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                            int cols, float eps, float* y, float* mean, float* rstd,
                            const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_forward_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      x, nullptr, ElementDropout{}, nullptr, gamma, beta, rows, cols, eps, y, mean, rstd);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchResidualLayerNormForward(const float* x, const float* sub, float rate, uint64_t seed,
                                    uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, float* sum, float* y, float* mean, float* rstd,
                                    const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_forward_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      x, sub, MakeElementDropout(rate, seed, step, layer, site), sum, gamma, beta, rows, cols, eps,
      y, mean, rstd);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                             const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                             float* dbeta, float* colsum_scratch, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  // Parameter gradients first: dx may overwrite dy.
  LaunchColumnSums(dy, x, mean, rstd, rows, cols, dbeta, dgamma, colsum_scratch, ctx);
  layernorm_backward_dx_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      dy, x, gamma, mean, rstd, rows, cols, dx, ElementDropout{}, nullptr);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                     const float* mean, const float* rstd, int64_t rows, int cols,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* dsum, float* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch,
                                     const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  LaunchColumnSums(dy, sum, mean, rstd, rows, cols, dbeta, dgamma, colsum_scratch, ctx);
  layernorm_backward_dx_kernel<<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(
      dy, sum, gamma, mean, rstd, rows, cols, dsum,
      MakeElementDropout(rate, seed, step, layer, site), rate > 0.0f ? dsub : nullptr);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchLayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, int64_t rows, int cols,
                                    float* x, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_input_from_output_kernel<<<GridStrideBlocks(rows * cols, kBlock), kBlock, 0,
                                       ctx.stream>>>(y, gamma, beta, mean, rstd, rows, cols, x);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace headroom::cuda
