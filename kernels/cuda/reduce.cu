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
// shape, so the result is deterministic.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

constexpr int kDotBlock = 256;
constexpr int kColTile = 32;   // columns per block (one warp wide: coalesced row segments)
constexpr int kRowLanes = 16;  // threads per column inside a block
constexpr int kMinRowsPerChunk = 128;
constexpr int kMaxChunks = 1024;

__global__ void dot_partial_kernel(const float* a, const float* b, int64_t n,
                                   float* __restrict__ partials) {
  __shared__ float shared[kWarpSize];
  float acc = 0.0f;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) acc += a[i] * b[i];
  acc = BlockSum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block of kDotMaxBlocks threads.
__global__ void dot_final_kernel(const float* __restrict__ partials, int count,
                                 float* __restrict__ out) {
  __shared__ float shared[kWarpSize];
  float v = static_cast<int>(threadIdx.x) < count ? partials[threadIdx.x] : 0.0f;
  v = BlockSum(v, shared);
  if (threadIdx.x == 0) *out = v;
}

// Block (kColTile, kRowLanes); grid (column tiles, chunks). Chunk k covers rows
// [k * rows_per_chunk, min(rows, (k + 1) * rows_per_chunk)). With `direct` (one chunk) the sums
// are added to out_sum/out_xhat; otherwise they are stored at [chunk * cols + c] of the partial
// buffers out_sum/out_xhat.
template <bool kXhat>
__global__ void column_sums_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                   const float* __restrict__ mean, const float* __restrict__ rstd,
                                   int64_t rows, int cols, int64_t rows_per_chunk, bool direct,
                                   float* out_sum, float* out_xhat) {
  __shared__ float part_sum[kRowLanes][kColTile + 1];
  __shared__ float part_xhat[kRowLanes][kColTile + 1];
  const int c = blockIdx.x * kColTile + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  float s = 0.0f, sx = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const float g = dy[r * cols + c];
      s += g;
      if constexpr (kXhat) sx += g * ((x[r * cols + c] - mean[r]) * rstd[r]);
    }
  }
  part_sum[threadIdx.y][threadIdx.x] = s;
  if constexpr (kXhat) part_xhat[threadIdx.y][threadIdx.x] = sx;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  s = 0.0f;
  sx = 0.0f;
  for (int lane = 0; lane < kRowLanes; ++lane) {
    s += part_sum[lane][threadIdx.x];
    if constexpr (kXhat) sx += part_xhat[lane][threadIdx.x];
  }
  if (direct) {
    out_sum[c] += s;
    if constexpr (kXhat) out_xhat[c] += sx;
  } else {
    const int64_t at = static_cast<int64_t>(blockIdx.y) * cols + c;
    out_sum[at] = s;
    if constexpr (kXhat) out_xhat[at] = sx;
  }
}

// Thread per column: adds the `chunks` partials in chunk order to the outputs.
template <bool kXhat>
__global__ void column_sums_final_kernel(const float* __restrict__ part_sum,
                                         const float* __restrict__ part_xhat, int chunks, int cols,
                                         float* __restrict__ dsum, float* __restrict__ dxhat_sum) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f, sx = 0.0f;
  for (int k = 0; k < chunks; ++k) {
    s += part_sum[static_cast<int64_t>(k) * cols + c];
    if constexpr (kXhat) sx += part_xhat[static_cast<int64_t>(k) * cols + c];
  }
  dsum[c] += s;
  if constexpr (kXhat) dxhat_sum[c] += sx;
}

template <bool kXhat>
void ColumnSums(const float* dy, const float* x, const float* mean, const float* rstd, int64_t rows,
                int cols, float* dsum, float* dxhat_sum, float* scratch, const LaunchContext& ctx) {
  const int outputs = kXhat ? 2 : 1;
  // As many chunks as the rows and the scratch allow.
  int64_t chunks = CeilDiv(rows, kMinRowsPerChunk);
  const int64_t fit = kColumnSumScratchFloats / (static_cast<int64_t>(cols) * outputs);
  if (chunks > fit) chunks = fit;
  if (chunks > kMaxChunks) chunks = kMaxChunks;
  if (chunks < 1) chunks = 1;
  const int64_t rows_per_chunk = CeilDiv(rows, chunks);
  chunks = CeilDiv(rows, rows_per_chunk);  // no empty chunk
  const bool direct = chunks == 1;
  float* part_sum = direct ? dsum : scratch;
  float* part_xhat = direct ? dxhat_sum : scratch + chunks * cols;

  const dim3 grid(static_cast<unsigned>(CeilDiv(cols, kColTile)), static_cast<unsigned>(chunks));
  const dim3 block(kColTile, kRowLanes);
  column_sums_kernel<kXhat><<<grid, block, 0, ctx.stream>>>(
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
    ColumnSums<true>(dy, x, mean, rstd, rows, cols, dsum, dxhat_sum, scratch, ctx);
  } else {
    ColumnSums<false>(dy, nullptr, nullptr, nullptr, rows, cols, dsum, nullptr, scratch, ctx);
  }
}

}  // namespace headroom::cuda
