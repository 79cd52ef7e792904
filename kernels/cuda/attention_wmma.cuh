// The fused attention's kernels for head size 256 (Shape::kInRegisters false), where
// attention_mma.cuh's register-resident accumulators would spill: the scores, probabilities and
// gradients of a tile pass through per-warp shared-memory tiles, the accumulators O, dQ, dK and
// dV live in shared memory in fp32, and the products run on WMMA fragments (16x16x16, bf16
// operands, fp32 accumulation), which are loaded from and stored to shared memory for each
// product, so no register layout is assumed. The row's softmax state of the forward is held by
// a pair of lanes. Included by attention_kernels.cuh; the emulation test runs this code too.
#ifndef HEADROOM_KERNELS_CUDA_ATTENTION_WMMA_CUH_
#define HEADROOM_KERNELS_CUDA_ATTENTION_WMMA_CUH_

#ifndef HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_
#error "include kernels/cuda/attention_kernels.cuh"
#endif

namespace headroom::cuda::attention_kernels {

using nvcuda::wmma::accumulator;
using nvcuda::wmma::col_major;
using nvcuda::wmma::fragment;
using nvcuda::wmma::matrix_a;
using nvcuda::wmma::matrix_b;
using nvcuda::wmma::mem_row_major;
using nvcuda::wmma::row_major;

// One warp: C [16, N] (fp32, ldc) = A [16, K] (bf16 row-major, lda) x B^T, B [N, K] (bf16
// row-major, ldb), i.e. every row of A against every row of B.
template <int N, int K>
__device__ void WarpRowsTimesRows(const bf16* A, int lda, const bf16* B, int ldb, float* C,
                                  int ldc) {
  fragment<matrix_a, kFrag, kFrag, kFrag, bf16, row_major> fa;
  fragment<matrix_b, kFrag, kFrag, kFrag, bf16, col_major> fb;
  fragment<accumulator, kFrag, kFrag, kFrag, float> acc;
#pragma unroll
  for (int n = 0; n < N / kFrag; ++n) {
    nvcuda::wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < K / kFrag; ++kk) {
      nvcuda::wmma::load_matrix_sync(fa, A + kk * kFrag, lda);
      nvcuda::wmma::load_matrix_sync(fb, B + n * kFrag * ldb + kk * kFrag, ldb);
      nvcuda::wmma::mma_sync(acc, fa, fb, acc);
    }
    nvcuda::wmma::store_matrix_sync(C + n * kFrag, acc, ldc, mem_row_major);
  }
}

// One warp: acc [16, 16] += A [16, K] (bf16 row-major, lda) x B [K, 16] (bf16 row-major, ldb),
// in K / 16 products in order.
template <int K>
__device__ void MultiplyAdd(fragment<accumulator, kFrag, kFrag, kFrag, float>& acc, const bf16* A,
                            int lda, const bf16* B, int ldb) {
  fragment<matrix_a, kFrag, kFrag, kFrag, bf16, row_major> fa;
  fragment<matrix_b, kFrag, kFrag, kFrag, bf16, row_major> fb;
#pragma unroll
  for (int kk = 0; kk < K / kFrag; ++kk) {
    nvcuda::wmma::load_matrix_sync(fa, A + kk * kFrag, lda);
    nvcuda::wmma::load_matrix_sync(fb, B + kk * kFrag * ldb, ldb);
    nvcuda::wmma::mma_sync(acc, fa, fb, acc);
  }
}

// One warp: C [16, N] (fp32, ldc) += A [16, K] (bf16 row-major, lda) x B [K, N] (bf16
// row-major, ldb).
template <int N, int K>
__device__ void WarpAccumulate(const bf16* A, int lda, const bf16* B, int ldb, float* C, int ldc) {
  fragment<accumulator, kFrag, kFrag, kFrag, float> acc;
#pragma unroll
  for (int n = 0; n < N / kFrag; ++n) {
    nvcuda::wmma::load_matrix_sync(acc, C + n * kFrag, ldc, mem_row_major);
    MultiplyAdd<K>(acc, A, lda, B + n * kFrag, ldb);
    nvcuda::wmma::store_matrix_sync(C + n * kFrag, acc, ldc, mem_row_major);
  }
}

// Forward (attention_mma.cuh's loop) with O, the scores and the probabilities in shared memory:
// the row's softmax state with a pair of lanes, O rescaled there and the products on WMMA.
template <typename Sh, typename A>
__device__ __forceinline__ void ForwardInShared(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLaneCols = kCols / 2;  // each lane of a pair takes half of a row's columns
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  float* os = carve.Take<float>(Sh::kOwnFloatBytes);
  float* ss = carve.Take<float>(Sh::kWarpScoresBytes);
  bf16* ps = carve.Take<bf16>(Sh::kWarpProbsBytes);
  int32_t* kseg = carve.Take<int32_t>(kCols * sizeof(int32_t));

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  // Lane pair (2r, 2r + 1) owns row r of the warp's 16; each lane half of the row's columns.
  const int r = lane >> 1, half = lane & 1, qg = q0 + warp * kFrag + r;
  const int32_t qseg = a.Segment(b, qg);
  float* sw = ss + warp * kFrag * Sh::kLdS;
  bf16* pw = ps + warp * kFrag * Sh::kLdP;
  float* ow = os + warp * kFrag * Sh::kLdF;
  const bf16* qw = qs + warp * kFrag * Sh::kLdH;

  LoadTile<D, kRows, kThreads>(a.q, a, b, h, q0, qs);
  for (int i = threadIdx.x; i < kRows * Sh::kLdF; i += kThreads) os[i] = 0.0f;

  const int key_tiles = (a.S + kCols - 1) / kCols;
  // Causal: the block's last query is q0 + kRows - 1; later key tiles are fully masked.
  const int tiles = a.causal ? min(key_tiles, (q0 + kRows - 1) / kCols + 1) : key_tiles;
  float m = -INFINITY, l = 0.0f;
  DropoutCursor cursor;
  for (int kt = 0; kt < tiles; ++kt) {
    __syncthreads();  // the previous tile's K and V are no longer read (and Q, O are ready)
    LoadTile<D, kCols, kThreads>(a.k, a, b, h, kt * kCols, ks);
    LoadTile<D, kCols, kThreads>(a.v, a, b, h, kt * kCols, vs);
    LoadSegments<kCols, kThreads>(a, b, kt * kCols, kseg);
    __syncthreads();
    WarpRowsTimesRows<kCols, D>(qw, Sh::kLdH, ks, Sh::kLdH, sw, Sh::kLdS);
    __syncwarp();

    // Online softmax over this lane's columns of row r.
    float* srow = sw + r * Sh::kLdS + half * kLaneCols;
    bf16* prow = pw + r * Sh::kLdP + half * kLaneCols;
    const int k0 = kt * kCols + half * kLaneCols;
    float tile_max = -INFINITY;
    for (int c = 0; c < kLaneCols; ++c) {
      const float s =
          a.Masked(kseg[half * kLaneCols + c], qseg, qg, k0 + c) ? -INFINITY : a.scale * srow[c];
      srow[c] = s;
      tile_max = fmaxf(tile_max, s);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    const float alpha = m == m_new ? 1.0f : expf(m - m_new);  // m = -inf, m_new finite: 0
    float sum = 0.0f;
    for (int c = 0; c < kLaneCols; ++c) {
      float p = srow[c] == -INFINITY ? 0.0f : expf(srow[c] - m_new);
      sum += p;
      if (a.dropout && p != 0.0f) {
        p = cursor.Keep(a, a.ProbIndex(bh, qg, k0 + c)) ? p * a.keep_scale : 0.0f;
      }
      prow[c] = __float2bfloat16(p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    float* orow = ow + r * Sh::kLdF + half * (D / 2);
    if (alpha != 1.0f) {  // the running max moved: rescale what the row has accumulated
      for (int j = 0; j < D / 2; ++j) orow[j] *= alpha;
    }
    __syncwarp();
    WarpAccumulate<D, kCols>(pw, Sh::kLdP, vs, Sh::kLdH, ow, Sh::kLdF);
    __syncwarp();
  }

  // The warp's 16 rows out, one row at a time with the lanes across its columns (coalesced);
  // row rr's softmax state is held by lane pair (2 rr, 2 rr + 1).
  for (int rr = 0; rr < kFrag; ++rr) {
    const float l_r = __shfl_sync(0xffffffffu, l, 2 * rr);
    const float m_r = __shfl_sync(0xffffffffu, m, 2 * rr);
    const int q = q0 + warp * kFrag + rr;  // the same for every lane
    if (q >= a.S) continue;
    const float inv = l_r > 0.0f ? 1.0f / l_r : 0.0f;
    const float* orow = ow + rr * Sh::kLdF;
    A* dst = a.o + a.Row(b, h, q, D);
    for (int j = lane; j < D; j += kWarpSize) dst[j] = FromFloat<A>(orow[j] * inv);
    if (lane == 0) {
      a.lse_out[static_cast<int64_t>(bh) * a.S + q] = l_r > 0.0f ? m_r + logf(l_r) : INFINITY;
    }
  }
}

// dQ (attention_mma.cuh's loop) with dQ, the scores, dP and dS in shared memory.
template <typename Sh, typename A>
__device__ __forceinline__ void DqInShared(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLaneCols = kCols / 2;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* dos = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  float* dqs = carve.Take<float>(Sh::kOwnFloatBytes);
  float* ss = carve.Take<float>(Sh::kWarpScoresBytes);
  float* dps = carve.Take<float>(Sh::kWarpScoresBytes);
  bf16* dss = carve.Take<bf16>(Sh::kWarpProbsBytes);
  int32_t* kseg = carve.Take<int32_t>(kCols * sizeof(int32_t));

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int r = lane >> 1, half = lane & 1, qg = q0 + warp * kFrag + r;
  const int32_t qseg = a.Segment(b, qg);
  float* sw = ss + warp * kFrag * Sh::kLdS;
  float* dpw = dps + warp * kFrag * Sh::kLdS;
  bf16* dsw = dss + warp * kFrag * Sh::kLdP;
  float* dqw = dqs + warp * kFrag * Sh::kLdF;
  const int64_t stat = static_cast<int64_t>(bh) * a.S + qg;
  const float lse = qg < a.S ? a.lse[stat] : INFINITY;
  const float delta = qg < a.S ? a.delta[stat] : 0.0f;

  LoadTile<D, kRows, kThreads>(a.q, a, b, h, q0, qs);
  LoadTile<D, kRows, kThreads>(a.dout, a, b, h, q0, dos);
  for (int i = threadIdx.x; i < kRows * Sh::kLdF; i += kThreads) dqs[i] = 0.0f;

  const int key_tiles = (a.S + kCols - 1) / kCols;
  const int tiles = a.causal ? min(key_tiles, (q0 + kRows - 1) / kCols + 1) : key_tiles;
  DropoutCursor cursor;
  for (int kt = 0; kt < tiles; ++kt) {
    __syncthreads();
    LoadTile<D, kCols, kThreads>(a.k, a, b, h, kt * kCols, ks);
    LoadTile<D, kCols, kThreads>(a.v, a, b, h, kt * kCols, vs);
    LoadSegments<kCols, kThreads>(a, b, kt * kCols, kseg);
    __syncthreads();
    WarpRowsTimesRows<kCols, D>(qs + warp * kFrag * Sh::kLdH, Sh::kLdH, ks, Sh::kLdH, sw, Sh::kLdS);
    WarpRowsTimesRows<kCols, D>(dos + warp * kFrag * Sh::kLdH, Sh::kLdH, vs, Sh::kLdH, dpw,
                                Sh::kLdS);
    __syncwarp();
    const int k0 = kt * kCols + half * kLaneCols;
    for (int c = 0; c < kLaneCols; ++c) {
      const int col = half * kLaneCols + c;
      float ds = 0.0f;
      if (!a.Masked(kseg[col], qseg, qg, k0 + c)) {
        const float p = expf(a.scale * sw[r * Sh::kLdS + col] - lse);
        float dp = dpw[r * Sh::kLdS + col];
        if (a.dropout) dp = cursor.Keep(a, a.ProbIndex(bh, qg, k0 + c)) ? dp * a.keep_scale : 0.0f;
        ds = a.scale * p * (dp - delta);
      }
      dsw[r * Sh::kLdP + col] = __float2bfloat16(ds);
    }
    __syncwarp();
    WarpAccumulate<D, kCols>(dsw, Sh::kLdP, ks, Sh::kLdH, dqw, Sh::kLdF);
    __syncwarp();
  }
  // The warp's rows, coalesced as the forward's output.
  const int wq0 = q0 + warp * kFrag;
  for (int rr = 0; rr < kFrag && wq0 + rr < a.S; ++rr) {
    A* dst = a.dq + a.Row(b, h, wq0 + rr, D);
    for (int j = lane; j < D; j += kWarpSize) dst[j] = FromFloat<A>(dqw[rr * Sh::kLdF + j]);
  }
}

// dK, dV (attention_mma.cuh's loop) with dK, dV, S^T, dP^T, P^T and dS^T in shared memory.
template <typename Sh, typename A>
__device__ __forceinline__ void DkvInShared(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* ks = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* qs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* dos = carve.Take<bf16>(Sh::kLoopHalfBytes);
  float* dks = carve.Take<float>(Sh::kOwnFloatBytes);
  float* dvs = carve.Take<float>(Sh::kOwnFloatBytes);
  float* sts = carve.Take<float>(Sh::kWarpScoresBytes);   // S^T per warp [16 keys, kCols queries]
  float* dpts = carve.Take<float>(Sh::kWarpScoresBytes);  // dP^T
  bf16* pts = carve.Take<bf16>(Sh::kWarpProbsBytes);      // dropout(P)^T
  bf16* dsts = carve.Take<bf16>(Sh::kWarpProbsBytes);     // dS^T
  float* lse_s = carve.Take<float>(kCols * sizeof(float));
  float* delta_s = carve.Take<float>(kCols * sizeof(float));
  int32_t* qseg_s = carve.Take<int32_t>(kCols * sizeof(int32_t));  // the loop tile's queries
  int32_t* kseg = carve.Take<int32_t>(kRows * sizeof(int32_t));    // the block's own keys

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, j0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int kw0 = j0 + warp * kFrag;  // the warp's first key
  float* stw = sts + warp * kFrag * Sh::kLdS;
  float* dptw = dpts + warp * kFrag * Sh::kLdS;
  bf16* ptw = pts + warp * kFrag * Sh::kLdP;
  bf16* dstw = dsts + warp * kFrag * Sh::kLdP;

  LoadTile<D, kRows, kThreads>(a.k, a, b, h, j0, ks);
  LoadTile<D, kRows, kThreads>(a.v, a, b, h, j0, vs);
  LoadSegments<kRows, kThreads>(a, b, j0, kseg);  // visible after the loop's first barrier
  for (int i = threadIdx.x; i < kRows * Sh::kLdF; i += kThreads) {
    dks[i] = 0.0f;
    dvs[i] = 0.0f;
  }
  const int query_tiles = (a.S + kCols - 1) / kCols;
  // Causal: queries before the block's first key see none of its keys.
  for (int it = a.causal ? j0 / kCols : 0; it < query_tiles; ++it) {
    const int i0 = it * kCols;
    __syncthreads();
    LoadQueryTile<D, kCols, kThreads>(a, bh, b, h, i0, qs, dos, lse_s, delta_s, qseg_s);
    __syncthreads();
    WarpRowsTimesRows<kCols, D>(ks + warp * kFrag * Sh::kLdH, Sh::kLdH, qs, Sh::kLdH, stw,
                                Sh::kLdS);
    WarpRowsTimesRows<kCols, D>(vs + warp * kFrag * Sh::kLdH, Sh::kLdH, dos, Sh::kLdH, dptw,
                                Sh::kLdS);
    __syncwarp();
    // Lane owns query columns lane, lane + 32, ... and walks the warp's 16 keys (consecutive
    // dropout indices).
    for (int cc = 0; cc < kCols / kWarpSize; ++cc) {
      const int col = lane + kWarpSize * cc, qg = i0 + col;
      DropoutCursor cursor;
      for (int rr = 0; rr < kFrag; ++rr) {
        const int kg = kw0 + rr;
        float p = 0.0f, ds = 0.0f;
        if (!a.Masked(kseg[warp * kFrag + rr], qseg_s[col], qg, kg)) {
          p = expf(a.scale * stw[rr * Sh::kLdS + col] - lse_s[col]);
          float dp = dptw[rr * Sh::kLdS + col];
          if (a.dropout) {
            const bool keep = cursor.Keep(a, a.ProbIndex(bh, qg, kg));
            ds = a.scale * p * ((keep ? dp * a.keep_scale : 0.0f) - delta_s[col]);
            p = keep ? p * a.keep_scale : 0.0f;
          } else {
            ds = a.scale * p * (dp - delta_s[col]);
          }
        }
        ptw[rr * Sh::kLdP + col] = __float2bfloat16(p);
        dstw[rr * Sh::kLdP + col] = __float2bfloat16(ds);
      }
    }
    __syncwarp();
    WarpAccumulate<D, kCols>(ptw, Sh::kLdP, dos, Sh::kLdH, dvs + warp * kFrag * Sh::kLdF, Sh::kLdF);
    WarpAccumulate<D, kCols>(dstw, Sh::kLdP, qs, Sh::kLdH, dks + warp * kFrag * Sh::kLdF, Sh::kLdF);
    __syncwarp();
  }
  // Each warp writes its own 16 keys, a row at a time with the lanes across the columns.
  for (int rr = 0; rr < kFrag && kw0 + rr < a.S; ++rr) {
    const float* dkr = dks + (warp * kFrag + rr) * Sh::kLdF;
    const float* dvr = dvs + (warp * kFrag + rr) * Sh::kLdF;
    A* dk_dst = a.dk + a.Row(b, h, kw0 + rr, D);
    A* dv_dst = a.dv + a.Row(b, h, kw0 + rr, D);
    for (int j = lane; j < D; j += kWarpSize) {
      dk_dst[j] = FromFloat<A>(dkr[j]);
      dv_dst[j] = FromFloat<A>(dvr[j]);
    }
  }
}

}  // namespace headroom::cuda::attention_kernels

#endif  // HEADROOM_KERNELS_CUDA_ATTENTION_WMMA_CUH_
