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
//
// The bf16 launchers run the packed kernels (layernorm_kernels.cuh): bf16 activations moved 8 at
// a time in 16-byte vectors and held by the warp as fp32 (rows of up to 2048, cols a multiple of
// 8), statistics fp32, dropout one Philox call per 4 elements (the same mask as Dropout's). The
// residual forward normalises the fp32 sum and stores it as bf16, or as fp32 when the residual
// stream is fp32 (train.fp32_residual: then backward reads fp32 dy and sum, writes fp32 dsum and
// bf16 dsub). Backward reads dy and x once from memory: dx (and dsub) per row, and dgamma /
// dbeta accumulated per lane over the rows a warp strides through, added over the block's warps
// into one partial row per block, then over the blocks in order by reduce.cu's final column-sum
// kernel (LaunchColumnSumsOfPartials): deterministic, no second pass over dy.
#include <algorithm>
#include <initializer_list>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/layernorm_kernels.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/philox.h"

namespace headroom::cuda {
using namespace layernorm_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(CeilDiv(rows, kRowsPerBlock)); }

template <typename X, typename U, typename S, typename Y>
void ForwardPacked(const char* launcher, const X* x, const U* sub, const ElementDropout& drop,
                   S* sum, const float* gamma, const float* beta, int64_t rows, int cols, float eps,
                   Y* y, float* mean, float* rstd, const LaunchContext& ctx) {
  const int packs =
      PacksOrRecord(launcher, cols, Chunk<X, U, S, Y>::kSize, {x, sub, sum, gamma, beta, y}, ctx);
  WithPacksPerLane(packs, [&](auto p) {
    layernorm_forward_packed_kernel<X, U, S, Y, decltype(p)::value>
        <<<RowBlocks(rows), kBlock, 0, ctx.stream>>>(x, sub, drop, sum, gamma, beta, rows, cols,
                                                     eps, y, mean, rstd);
    HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  });
}

// The one-pass kernel into per-block partials of the scratch (as many blocks as the rows, the
// scratch and kMaxColumnSumPartials allow), then their sum in block order into dgamma and
// dbeta.
template <typename DY, typename X, typename DX, typename DS>
void BackwardPacked(const char* launcher, const DY* dy, const X* x, const float* gamma,
                    const float* mean, const float* rstd, int64_t rows, int cols, DX* dx,
                    const ElementDropout& drop, DS* dsub, float* dgamma, float* dbeta,
                    float* colsum_scratch, const LaunchContext& ctx) {
  const int packs =
      PacksOrRecord(launcher, cols, Chunk<DY, X, DX, DS>::kSize, {dy, x, gamma, dx, dsub}, ctx);
  int64_t blocks = CeilDiv(rows, kRowsPerBlock);
  blocks = std::min<int64_t>(blocks, kColumnSumScratchFloats / (2 * int64_t{cols}));
  blocks = std::min<int64_t>(blocks, kMaxColumnSumPartials);
  float* part_dgamma = colsum_scratch;
  float* part_dbeta = colsum_scratch + blocks * cols;
  const bool launched = WithPacksPerLane(packs, [&](auto p) {
    layernorm_backward_packed_kernel<DY, X, DX, DS, decltype(p)::value>
        <<<static_cast<unsigned>(blocks), kBlock, 0, ctx.stream>>>(
            dy, x, gamma, mean, rstd, rows, cols, dx, drop, dsub, part_dgamma, part_dbeta);
  });
  if (!launched || !HR_CUDA_CHECK(*ctx.err, cudaGetLastError())) return;
  LaunchColumnSumsOfPartials(part_dbeta, part_dgamma, static_cast<int>(blocks), cols, dbeta, dgamma,
                             ctx);
}

}  // namespace

int PacksOrRecord(const char* launcher, int cols, int pack_size,
                  std::initializer_list<const void*> pointers, const LaunchContext& ctx) {
  const std::string why = PackedShapeError(cols, pack_size, pointers);
  if (!why.empty()) {
    ctx.err->Record(launcher, why, __FILE__, __LINE__);
    return 0;
  }
  return PacksPerLane(cols, pack_size);
}

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

namespace {

template <typename Y>
void InputFromOutput(const Y* y, const float* gamma, const float* beta, const float* mean,
                     const float* rstd, int64_t rows, int cols, float* x,
                     const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_input_from_output_kernel<Y>
      <<<GridStrideBlocks(rows * cols, kBlock), kBlock, 0, ctx.stream>>>(y, gamma, beta, mean, rstd,
                                                                         rows, cols, x);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchLayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, int64_t rows, int cols,
                                    float* x, const LaunchContext& ctx) {
  InputFromOutput(y, gamma, beta, mean, rstd, rows, cols, x, ctx);
}

// ---- bf16 activations (packed kernels) -------------------------------------------------------

// The fp32 residual stream's LayerNorm (pre-LN) into bf16, its backward with bf16 dy and dx, and
// the post-LN LayerNorm input recomputed into fp32 from the bf16 output.
void LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                            int cols, float eps, __nv_bfloat16* y, float* mean, float* rstd,
                            const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  ForwardPacked<float, float, float, __nv_bfloat16>("LaunchLayerNormForward(fp32 -> bf16)", x,
                                                    nullptr, ElementDropout{}, nullptr, gamma, beta,
                                                    rows, cols, eps, y, mean, rstd, ctx);
}

void LaunchLayerNormBackward(const __nv_bfloat16* dy, const float* x, const float* gamma,
                             const float* mean, const float* rstd, int64_t rows, int cols,
                             __nv_bfloat16* dx, float* dgamma, float* dbeta, float* colsum_scratch,
                             const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  BackwardPacked<__nv_bfloat16, float, __nv_bfloat16, __nv_bfloat16>(
      "LaunchLayerNormBackward(bf16 dy, fp32 x)", dy, x, gamma, mean, rstd, rows, cols, dx,
      ElementDropout{}, nullptr, dgamma, dbeta, colsum_scratch, ctx);
}

void LaunchLayerNormInputFromOutput(const __nv_bfloat16* y, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, int64_t rows, int cols,
                                    float* x, const LaunchContext& ctx) {
  InputFromOutput(y, gamma, beta, mean, rstd, rows, cols, x, ctx);
}

void LaunchLayerNormForward(const __nv_bfloat16* x, const float* gamma, const float* beta,
                            int64_t rows, int cols, float eps, __nv_bfloat16* y, float* mean,
                            float* rstd, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  using B = __nv_bfloat16;
  ForwardPacked<B, B, B, B>("LaunchLayerNormForward(bf16)", x, nullptr, ElementDropout{}, nullptr,
                            gamma, beta, rows, cols, eps, y, mean, rstd, ctx);
}

void LaunchResidualLayerNormForward(const __nv_bfloat16* x, const __nv_bfloat16* sub, float rate,
                                    uint64_t seed, uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, __nv_bfloat16* sum, __nv_bfloat16* y, float* mean,
                                    float* rstd, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  ForwardPacked<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, __nv_bfloat16>(
      "LaunchResidualLayerNormForward(bf16)", x, sub,
      MakeElementDropout(rate, seed, step, layer, site), sum, gamma, beta, rows, cols, eps, y, mean,
      rstd, ctx);
}

void LaunchLayerNormBackward(const __nv_bfloat16* dy, const __nv_bfloat16* x, const float* gamma,
                             const float* mean, const float* rstd, int64_t rows, int cols,
                             __nv_bfloat16* dx, float* dgamma, float* dbeta, float* colsum_scratch,
                             const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  BackwardPacked<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, __nv_bfloat16>(
      "LaunchLayerNormBackward(bf16)", dy, x, gamma, mean, rstd, rows, cols, dx, ElementDropout{},
      nullptr, dgamma, dbeta, colsum_scratch, ctx);
}

void LaunchResidualLayerNormBackward(const __nv_bfloat16* dy, const __nv_bfloat16* sum,
                                     const float* gamma, const float* mean, const float* rstd,
                                     int64_t rows, int cols, float rate, uint64_t seed,
                                     uint64_t step, uint32_t layer, uint32_t site,
                                     __nv_bfloat16* dsum, __nv_bfloat16* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch,
                                     const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  BackwardPacked<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, __nv_bfloat16>(
      "LaunchResidualLayerNormBackward(bf16)", dy, sum, gamma, mean, rstd, rows, cols, dsum,
      MakeElementDropout(rate, seed, step, layer, site), rate > 0.0f ? dsub : nullptr, dgamma,
      dbeta, colsum_scratch, ctx);
}

// The fp32 residual stream (train.fp32_residual): bf16 x, sub and y, the sum kept in fp32.
void LaunchResidualLayerNormForward(const __nv_bfloat16* x, const __nv_bfloat16* sub, float rate,
                                    uint64_t seed, uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, float* sum, __nv_bfloat16* y, float* mean,
                                    float* rstd, const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  using B = __nv_bfloat16;
  ForwardPacked<B, B, float, B>("LaunchResidualLayerNormForward(bf16, fp32 sum)", x, sub,
                                MakeElementDropout(rate, seed, step, layer, site), sum, gamma, beta,
                                rows, cols, eps, y, mean, rstd, ctx);
}

// Its backward: fp32 dy, sum and dsum (the residual stream's gradient), bf16 dsub.
void LaunchResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                     const float* mean, const float* rstd, int64_t rows, int cols,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* dsum, __nv_bfloat16* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch,
                                     const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  BackwardPacked<float, float, float, __nv_bfloat16>(
      "LaunchResidualLayerNormBackward(fp32 residual, bf16 dsub)", dy, sum, gamma, mean, rstd, rows,
      cols, dsum, MakeElementDropout(rate, seed, step, layer, site), rate > 0.0f ? dsub : nullptr,
      dgamma, dbeta, colsum_scratch, ctx);
}

}  // namespace headroom::cuda
