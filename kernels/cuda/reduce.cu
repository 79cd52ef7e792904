// Reductions: Dot (the grad norm's sum of squares) and column sums (bias and LayerNorm parameter
// gradients).
//
// Neither uses atomics: floating-point atomics make the summation order depend on scheduling,
// and ops.h wants parameter gradients bit-reproducible. Dot is two launches: a fixed grid (a
// function of n only) of block tree reductions writes one partial per block, and one block adds
// the partials in a tree. Column sums split the rows into chunks (grid.y) so that even a matrix
// with few columns fills the GPU: inside a block, 16 row lanes per column each sum every 16th
// row of the chunk, the lanes are added in lane order, and when there is more than one chunk a
// second kernel adds the per-chunk partials in chunk order. The chunking depends only on the
// shape, so the result is deterministic. The bias gradient of bf16 activations is the same
// kernel reading bf16 dy (widened; fp32 sums).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/reduce_kernels.cuh"

namespace headroom::cuda {
using namespace reduce_kernels;  // NOLINT(build/namespaces): this file's own kernels

namespace {

template <bool kXhat, typename A>
void ColumnSums(const A* dy, const A* x, const float* mean, const float* rstd, int64_t rows,
                int cols, float* dsum, float* dxhat_sum, float* scratch, const LaunchContext& ctx) {
  const int outputs = kXhat ? 2 : 1;
  // As many chunks as the rows and the scratch allow.
  int64_t chunks = CeilDiv(rows, kMinRowsPerChunk);
  const int64_t fit = kColumnSumScratchFloats / (static_cast<int64_t>(cols) * outputs);
  if (chunks > fit) chunks = fit;
  if (chunks > kMaxColumnSumPartials) chunks = kMaxColumnSumPartials;
  if (chunks < 1) chunks = 1;
  const int64_t rows_per_chunk = CeilDiv(rows, chunks);
  chunks = CeilDiv(rows, rows_per_chunk);  // no empty chunk
  const bool direct = chunks == 1;
  float* part_sum = direct ? dsum : scratch;
  float* part_xhat = direct ? dxhat_sum : scratch + chunks * cols;

  const dim3 grid(static_cast<unsigned>(CeilDiv(cols, kColTile)), static_cast<unsigned>(chunks));
  const dim3 block(kColTile, kRowLanes);
  column_sums_kernel<kXhat, A><<<grid, block, 0, ctx.stream>>>(
      dy, x, mean, rstd, rows, cols, rows_per_chunk, direct, part_sum, part_xhat);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  if (direct) return;
  constexpr int kFinalBlock = 256;
  column_sums_final_kernel<kXhat>
      <<<static_cast<unsigned>(CeilDiv(cols, kFinalBlock)), kFinalBlock, 0, ctx.stream>>>(
          part_sum, part_xhat, static_cast<int>(chunks), cols, dsum, dxhat_sum);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

}  // namespace

void LaunchDot(const float* a, const float* b, int64_t n, float* out, float* partials,
               const LaunchContext& ctx) {
  if (n <= 0) {
    LaunchFill(out, 1, 0.0f, ctx);
    return;
  }
  int64_t blocks = CeilDiv(n, kDotBlock);
  if (blocks > kDotMaxBlocks) blocks = kDotMaxBlocks;
  dot_partial_kernel<<<static_cast<unsigned>(blocks), kDotBlock, 0, ctx.stream>>>(a, b, n,
                                                                                  partials);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  dot_final_kernel<<<1, kDotMaxBlocks, 0, ctx.stream>>>(partials, static_cast<int>(blocks), out);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchColumnSums(const float* dy, const float* x, const float* mean, const float* rstd,
                      int64_t rows, int cols, float* dsum, float* dxhat_sum, float* scratch,
                      const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  if (x != nullptr) {
    ColumnSums<true, float>(dy, x, mean, rstd, rows, cols, dsum, dxhat_sum, scratch, ctx);
  } else {
    ColumnSums<false, float>(dy, nullptr, nullptr, nullptr, rows, cols, dsum, nullptr, scratch,
                             ctx);
  }
}

void LaunchColumnSumsOfPartials(const float* part_sum, const float* part_xhat, int partials,
                                int cols, float* dsum, float* dxhat_sum, const LaunchContext& ctx) {
  if (partials <= 0 || cols <= 0) return;
  constexpr int kFinalBlock = 256;
  column_sums_final_kernel<true>
      <<<static_cast<unsigned>(CeilDiv(cols, kFinalBlock)), kFinalBlock, 0, ctx.stream>>>(
          part_sum, part_xhat, partials, cols, dsum, dxhat_sum);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

void LaunchColumnSums(const __nv_bfloat16* dy, int64_t rows, int cols, float* dsum, float* scratch,
                      const LaunchContext& ctx) {
  if (rows <= 0 || cols <= 0) return;
  ColumnSums<false, __nv_bfloat16>(dy, nullptr, nullptr, nullptr, rows, cols, dsum, nullptr,
                                   scratch, ctx);
}

}  // namespace headroom::cuda
