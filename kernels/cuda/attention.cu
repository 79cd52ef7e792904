// Fused attention (Ops::AttentionForward / AttentionBackward) on tensor cores; the CPU twin is
// kernels/cpu/attention.cc.
//
// Flash-attention-2 structure (Dao 2023) for sequences of any length and head sizes 16, 32, 64
// and 128, with the products on bf16 WMMA fragments (16x16x16, fp32 accumulation) and every
// softmax statistic in fp32. A block has 4 warps and works on a 64-row tile; each warp owns 16
// of its rows, so the softmax state, the probabilities and the accumulators of a row are private
// to one warp and only the shared operand tiles need block barriers.
//
//   forward   block = (b, h, 64 queries); loops over 64-key tiles: S = Q K^T, online softmax
//             (running max m and sum l per row), O = O * exp(m_old - m_new) + dropout(P) V.
//             Writes O / l and lse = m + log l (+inf for a row with every key masked).
//   dK, dV    block = (b, h, 64 keys); loops over 64-query tiles: S^T = K Q^T, dP^T = V dO^T,
//             P = exp(scale * S - lse), dV += dropout(P)^T dO, dS = scale * P * (dropout(dP) -
//             delta), dK += dS^T Q.
//   dQ        block = (b, h, 64 queries); loops over key tiles: dQ += dS K, recomputing S, dP.
// dQ has its own pass instead of atomics so that the result is deterministic, as every other op
// of this backend. delta = rowsum(dO * O) is a small kernel of its own.
//
// Operands are converted to bf16 when a tile is loaded into shared memory (q, k, v, dout stay
// fp32 in global memory, as the rest of the model); accumulators (O, dQ, dK, dV) live in shared
// memory in fp32 and are loaded into WMMA accumulator fragments for each product, which lets a
// row be rescaled by its lane without knowing the fragments' register layout. The dropout mask
// is Dropout's (kernels/philox.h) by element index ((b * H + h) * S + q) * S + k; the lanes
// walk consecutive keys so that one Philox call serves four elements.
//
// Head sizes 16, 32, 64 and 128 (the launchers record an error for others). Tiles load as
// float4 when q, k, v and dout are 16-byte aligned, element by element otherwise. Shared memory
// per block is at most 187 KiB (dK/dV at D = 128).
#include <cuda_bf16.h>
#include <mma.h>

#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/philox.h"

namespace headroom::cuda {
namespace {

using nvcuda::wmma::accumulator;
using nvcuda::wmma::col_major;
using nvcuda::wmma::fragment;
using nvcuda::wmma::matrix_a;
using nvcuda::wmma::matrix_b;
using nvcuda::wmma::mem_row_major;
using nvcuda::wmma::row_major;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;  // rows of a block's own tile, and rows of each loaded tile
constexpr int kWarps = 4;  // each owns kFrag rows of the block's tile
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kFrag = 16;        // WMMA fragment edge
constexpr int kLdS = kTile + 4;  // per-warp fp32 [16, 64] tiles (scores, dP)
constexpr int kLdP = kTile + 8;  // per-warp bf16 [16, 64] tiles (P, dS)
constexpr size_t kWarpScoresBytes = size_t{kFrag} * kLdS * sizeof(float) * kWarps;
constexpr size_t kWarpProbsBytes = size_t{kFrag} * kLdP * sizeof(bf16) * kWarps;

// Strides and sizes of the [64, D] tiles. Row padding (8 bf16, 4 floats) keeps WMMA's 32-byte
// alignment and spreads rows over the shared-memory banks.
template <int D>
struct Tiles {
  static constexpr int kLdH = D + 8;  // bf16 operand tiles
  static constexpr int kLdF = D + 4;  // fp32 accumulator tiles
  static constexpr size_t kHalfBytes = size_t{kTile} * kLdH * sizeof(bf16);
  static constexpr size_t kFloatBytes = size_t{kTile} * kLdF * sizeof(float);
  static constexpr size_t kForwardBytes =
      3 * kHalfBytes + kFloatBytes + kWarpScoresBytes + kWarpProbsBytes;
  static constexpr size_t kDqBytes =
      4 * kHalfBytes + kFloatBytes + 2 * kWarpScoresBytes + kWarpProbsBytes;
  static constexpr size_t kDkvBytes = 4 * kHalfBytes + 2 * kFloatBytes + 2 * kWarpScoresBytes +
                                      2 * kWarpProbsBytes + 2 * kTile * sizeof(float);
};

// Everything a kernel needs to know about one call.
struct AttentionArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* out = nullptr;  // forward output (backward input)
  const float* dout = nullptr;
  const float* lse = nullptr;    // [B, H, S] (backward input)
  const float* delta = nullptr;  // [B, H, S] (backward input)
  float* o = nullptr;            // forward output
  float* lse_out = nullptr;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
  int B = 0, S = 0, H = 0;
  float scale = 1;
  const int32_t* key_valid = nullptr;
  bool causal = false;
  bool dropout = false;
  uint32_t threshold = 0;
  float keep_scale = 1;
  uint64_t seed = 0, step = 0;
  uint32_t layer = 0, site = 0;
  bool aligned = true;  // q, k, v, dout 16-byte aligned: tiles load as float4

  __device__ bool Masked(int b, int qg, int kg) const {
    return qg >= S || kg >= S || (causal && kg > qg) ||
           (key_valid != nullptr && key_valid[static_cast<int64_t>(b) * S + kg] == 0);
  }
  // Offset of token s of head h of sequence b in the token-major tensors.
  __device__ int64_t Row(int b, int h, int s, int D) const {
    return ((static_cast<int64_t>(b) * S + s) * H + h) * D;
  }
  // Element index of (query, key) in the [B, H, S, S] probabilities: the dropout counter.
  __device__ uint64_t ProbIndex(int bh, int qg, int kg) const {
    return (static_cast<uint64_t>(bh) * S + qg) * S + kg;
  }
};

// The dropout mask along a run of consecutive element indices: one Philox call per group of 4.
class DropoutCursor {
 public:
  __device__ bool Keep(const AttentionArgs& a, uint64_t i) {
    if ((i >> 2) != group_) {
      group_ = i >> 2;
      words_ = DropoutWords(a.seed, a.step, a.layer, a.site, group_);
    }
    const uint32_t j = static_cast<uint32_t>(i & 3);
    const uint32_t w = j == 0   ? words_.v[0]
                       : j == 1 ? words_.v[1]
                       : j == 2 ? words_.v[2]
                                : words_.v[3];
    return w >= a.threshold;
  }

 private:
  uint64_t group_ = ~uint64_t{0};
  Philox4x32 words_{};
};

// Rows row0 .. row0 + 63 of head (b, h) of a token-major fp32 tensor into a bf16 [64, D] tile;
// rows at or past S are zero. The whole block takes part.
template <int D>
__device__ void LoadTile(const float* src, const AttentionArgs& a, int b, int h, int row0,
                         bf16* dst) {
  constexpr int kVec = D / 4;
  for (int i = threadIdx.x; i < kTile * kVec; i += kThreads) {
    const int r = i / kVec, c = (i % kVec) * 4, s = row0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (s < a.S) {
      const float* p = src + a.Row(b, h, s, D) + c;
      x = a.aligned ? *reinterpret_cast<const float4*>(p) : make_float4(p[0], p[1], p[2], p[3]);
    }
    __nv_bfloat162* d = reinterpret_cast<__nv_bfloat162*>(dst + r * Tiles<D>::kLdH + c);
    d[0] = __floats2bfloat162_rn(x.x, x.y);
    d[1] = __floats2bfloat162_rn(x.z, x.w);
  }
}

// One warp: C [16, 64] (fp32, ldc) = A [16, K] (bf16 row-major, lda) x B^T, B [64, K] (bf16
// row-major, ldb), i.e. every row of A against every row of B.
template <int K>
__device__ void WarpRowsTimesRows(const bf16* A, int lda, const bf16* B, int ldb, float* C,
                                  int ldc) {
  fragment<matrix_a, kFrag, kFrag, kFrag, bf16, row_major> fa;
  fragment<matrix_b, kFrag, kFrag, kFrag, bf16, col_major> fb;
  fragment<accumulator, kFrag, kFrag, kFrag, float> acc;
#pragma unroll
  for (int n = 0; n < kTile / kFrag; ++n) {
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

// One warp: C [16, N] (fp32, ldc) += A [16, 64] (bf16 row-major, lda) x B [64, N] (bf16
// row-major, ldb).
template <int N>
__device__ void WarpAccumulate(const bf16* A, int lda, const bf16* B, int ldb, float* C, int ldc) {
  fragment<matrix_a, kFrag, kFrag, kFrag, bf16, row_major> fa;
  fragment<matrix_b, kFrag, kFrag, kFrag, bf16, row_major> fb;
  fragment<accumulator, kFrag, kFrag, kFrag, float> acc;
#pragma unroll
  for (int n = 0; n < N / kFrag; ++n) {
    nvcuda::wmma::load_matrix_sync(acc, C + n * kFrag, ldc, mem_row_major);
#pragma unroll
    for (int kk = 0; kk < kTile / kFrag; ++kk) {
      nvcuda::wmma::load_matrix_sync(fa, A + kk * kFrag, lda);
      nvcuda::wmma::load_matrix_sync(fb, B + kk * kFrag * ldb + n * kFrag, ldb);
      nvcuda::wmma::mma_sync(acc, fa, fb, acc);
    }
    nvcuda::wmma::store_matrix_sync(C + n * kFrag, acc, ldc, mem_row_major);
  }
}

// Carves the dynamic shared memory in order; every size is a multiple of 128 bytes.
class SharedCarver {
 public:
  __device__ explicit SharedCarver(unsigned char* base) : p_(base) {}
  template <typename T>
  __device__ T* Take(size_t bytes) {
    T* r = reinterpret_cast<T*>(p_);
    p_ += bytes;
    return r;
  }

 private:
  unsigned char* p_;
};

template <int D>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  using T = Tiles<D>;
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(T::kHalfBytes);
  bf16* ks = carve.Take<bf16>(T::kHalfBytes);
  bf16* vs = carve.Take<bf16>(T::kHalfBytes);
  float* os = carve.Take<float>(T::kFloatBytes);
  float* ss = carve.Take<float>(kWarpScoresBytes);
  bf16* ps = carve.Take<bf16>(kWarpProbsBytes);

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kTile;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  // Lane pair (2r, 2r + 1) owns row r of the warp's 16; each lane half of the row's columns.
  const int r = lane >> 1, half = lane & 1, qg = q0 + warp * kFrag + r;
  float* sw = ss + warp * kFrag * kLdS;
  bf16* pw = ps + warp * kFrag * kLdP;
  float* ow = os + warp * kFrag * T::kLdF;
  const bf16* qw = qs + warp * kFrag * T::kLdH;

  LoadTile<D>(a.q, a, b, h, q0, qs);
  for (int i = threadIdx.x; i < kTile * T::kLdF; i += kThreads) os[i] = 0.0f;

  const int key_tiles = (a.S + kTile - 1) / kTile;
  const int tiles = a.causal ? min(key_tiles, (q0 + kTile - 1) / kTile + 1) : key_tiles;
  float m = -INFINITY, l = 0.0f;
  DropoutCursor cursor;
  for (int kt = 0; kt < tiles; ++kt) {
    __syncthreads();  // the previous tile's K and V are no longer read (and Q, O are ready)
    LoadTile<D>(a.k, a, b, h, kt * kTile, ks);
    LoadTile<D>(a.v, a, b, h, kt * kTile, vs);
    __syncthreads();
    WarpRowsTimesRows<D>(qw, T::kLdH, ks, T::kLdH, sw, kLdS);
    __syncwarp();

    // Online softmax over this lane's 32 columns of row r.
    float* srow = sw + r * kLdS + half * 32;
    bf16* prow = pw + r * kLdP + half * 32;
    const int k0 = kt * kTile + half * 32;
    float tile_max = -INFINITY;
    for (int c = 0; c < 32; ++c) {
      const float s = a.Masked(b, qg, k0 + c) ? -INFINITY : a.scale * srow[c];
      srow[c] = s;
      tile_max = fmaxf(tile_max, s);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    const float alpha = m == m_new ? 1.0f : expf(m - m_new);  // m = -inf, m_new finite: 0
    float sum = 0.0f;
    for (int c = 0; c < 32; ++c) {
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
    float* orow = ow + r * T::kLdF + half * (D / 2);
    for (int j = 0; j < D / 2; ++j) orow[j] *= alpha;
    __syncwarp();
    WarpAccumulate<D>(pw, kLdP, vs, T::kLdH, ow, T::kLdF);
    __syncwarp();
  }

  if (qg < a.S) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const float* orow = ow + r * T::kLdF + half * (D / 2);
    float* dst = a.o + a.Row(b, h, qg, D) + half * (D / 2);
    for (int j = 0; j < D / 2; ++j) dst[j] = orow[j] * inv;
    if (half == 0)
      a.lse_out[static_cast<int64_t>(bh) * a.S + qg] = l > 0.0f ? m + logf(l) : INFINITY;
  }
}

// delta[(b * H + h) * S + s] = sum_j dout * out over one token's head slice; one warp each.
__global__ void attention_delta_kernel(const AttentionArgs a, int D, float* delta) {
  const int64_t rows = static_cast<int64_t>(a.B) * a.S * a.H;
  const int64_t warps = GridThreads() / kWarpSize;
  for (int64_t t = GlobalThread() / kWarpSize; t < rows; t += warps) {  // t = (b * S + s) * H + h
    float acc = 0.0f;
    for (int j = threadIdx.x % kWarpSize; j < D; j += kWarpSize)
      acc += a.dout[t * D + j] * a.out[t * D + j];
    acc = WarpSum(acc);
    if (threadIdx.x % kWarpSize == 0) {
      const int64_t h = t % a.H, bs = t / a.H, b = bs / a.S, s = bs % a.S;
      delta[(b * a.H + h) * a.S + s] = acc;
    }
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(const AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  using T = Tiles<D>;
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(T::kHalfBytes);
  bf16* dos = carve.Take<bf16>(T::kHalfBytes);
  bf16* ks = carve.Take<bf16>(T::kHalfBytes);
  bf16* vs = carve.Take<bf16>(T::kHalfBytes);
  float* dqs = carve.Take<float>(T::kFloatBytes);
  float* ss = carve.Take<float>(kWarpScoresBytes);
  float* dps = carve.Take<float>(kWarpScoresBytes);
  bf16* dss = carve.Take<bf16>(kWarpProbsBytes);

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kTile;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int r = lane >> 1, half = lane & 1, qg = q0 + warp * kFrag + r;
  float* sw = ss + warp * kFrag * kLdS;
  float* dpw = dps + warp * kFrag * kLdS;
  bf16* dsw = dss + warp * kFrag * kLdP;
  float* dqw = dqs + warp * kFrag * T::kLdF;
  const int64_t stat = static_cast<int64_t>(bh) * a.S + qg;
  const float lse = qg < a.S ? a.lse[stat] : INFINITY;
  const float delta = qg < a.S ? a.delta[stat] : 0.0f;

  LoadTile<D>(a.q, a, b, h, q0, qs);
  LoadTile<D>(a.dout, a, b, h, q0, dos);
  for (int i = threadIdx.x; i < kTile * T::kLdF; i += kThreads) dqs[i] = 0.0f;

  const int key_tiles = (a.S + kTile - 1) / kTile;
  const int tiles = a.causal ? min(key_tiles, (q0 + kTile - 1) / kTile + 1) : key_tiles;
  DropoutCursor cursor;
  for (int kt = 0; kt < tiles; ++kt) {
    __syncthreads();
    LoadTile<D>(a.k, a, b, h, kt * kTile, ks);
    LoadTile<D>(a.v, a, b, h, kt * kTile, vs);
    __syncthreads();
    WarpRowsTimesRows<D>(qs + warp * kFrag * T::kLdH, T::kLdH, ks, T::kLdH, sw, kLdS);
    WarpRowsTimesRows<D>(dos + warp * kFrag * T::kLdH, T::kLdH, vs, T::kLdH, dpw, kLdS);
    __syncwarp();
    const int k0 = kt * kTile + half * 32;
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c;
      float ds = 0.0f;
      if (!a.Masked(b, qg, k0 + c)) {
        const float p = expf(a.scale * sw[r * kLdS + col] - lse);
        float dp = dpw[r * kLdS + col];
        if (a.dropout) dp = cursor.Keep(a, a.ProbIndex(bh, qg, k0 + c)) ? dp * a.keep_scale : 0.0f;
        ds = a.scale * p * (dp - delta);
      }
      dsw[r * kLdP + col] = __float2bfloat16(ds);
    }
    __syncwarp();
    WarpAccumulate<D>(dsw, kLdP, ks, T::kLdH, dqw, T::kLdF);
    __syncwarp();
  }
  if (qg < a.S) {
    const float* row = dqw + r * T::kLdF + half * (D / 2);
    float* dst = a.dq + a.Row(b, h, qg, D) + half * (D / 2);
    for (int j = 0; j < D / 2; ++j) dst[j] = row[j];
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(const AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  using T = Tiles<D>;
  SharedCarver carve(smem);
  bf16* ks = carve.Take<bf16>(T::kHalfBytes);
  bf16* vs = carve.Take<bf16>(T::kHalfBytes);
  bf16* qs = carve.Take<bf16>(T::kHalfBytes);
  bf16* dos = carve.Take<bf16>(T::kHalfBytes);
  float* dks = carve.Take<float>(T::kFloatBytes);
  float* dvs = carve.Take<float>(T::kFloatBytes);
  float* sts = carve.Take<float>(kWarpScoresBytes);   // S^T per warp [16 keys, 64 queries]
  float* dpts = carve.Take<float>(kWarpScoresBytes);  // dP^T
  bf16* pts = carve.Take<bf16>(kWarpProbsBytes);      // dropout(P)^T
  bf16* dsts = carve.Take<bf16>(kWarpProbsBytes);     // dS^T
  float* lse_s = carve.Take<float>(kTile * sizeof(float));
  float* delta_s = carve.Take<float>(kTile * sizeof(float));

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, j0 = blockIdx.y * kTile;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int kw0 = j0 + warp * kFrag;  // the warp's first key
  float* stw = sts + warp * kFrag * kLdS;
  float* dptw = dpts + warp * kFrag * kLdS;
  bf16* ptw = pts + warp * kFrag * kLdP;
  bf16* dstw = dsts + warp * kFrag * kLdP;

  LoadTile<D>(a.k, a, b, h, j0, ks);
  LoadTile<D>(a.v, a, b, h, j0, vs);
  for (int i = threadIdx.x; i < kTile * T::kLdF; i += kThreads) {
    dks[i] = 0.0f;
    dvs[i] = 0.0f;
  }
  const int query_tiles = (a.S + kTile - 1) / kTile;
  // Causal: queries before the block's first key see none of its keys.
  for (int it = a.causal ? j0 / kTile : 0; it < query_tiles; ++it) {
    const int i0 = it * kTile;
    __syncthreads();
    LoadTile<D>(a.q, a, b, h, i0, qs);
    LoadTile<D>(a.dout, a, b, h, i0, dos);
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      const bool in = i0 + i < a.S;
      const int64_t stat = static_cast<int64_t>(bh) * a.S + i0 + i;
      lse_s[i] = in ? a.lse[stat] : INFINITY;
      delta_s[i] = in ? a.delta[stat] : 0.0f;
    }
    __syncthreads();
    WarpRowsTimesRows<D>(ks + warp * kFrag * T::kLdH, T::kLdH, qs, T::kLdH, stw, kLdS);
    WarpRowsTimesRows<D>(vs + warp * kFrag * T::kLdH, T::kLdH, dos, T::kLdH, dptw, kLdS);
    __syncwarp();
    // Lane owns query columns lane and lane + 32 and walks the warp's 16 keys (consecutive
    // dropout indices).
    for (int cc = 0; cc < 2; ++cc) {
      const int col = lane + 32 * cc, qg = i0 + col;
      DropoutCursor cursor;
      for (int rr = 0; rr < kFrag; ++rr) {
        const int kg = kw0 + rr;
        float p = 0.0f, ds = 0.0f;
        if (!a.Masked(b, qg, kg)) {
          p = expf(a.scale * stw[rr * kLdS + col] - lse_s[col]);
          float dp = dptw[rr * kLdS + col];
          if (a.dropout) {
            const bool keep = cursor.Keep(a, a.ProbIndex(bh, qg, kg));
            ds = a.scale * p * ((keep ? dp * a.keep_scale : 0.0f) - delta_s[col]);
            p = keep ? p * a.keep_scale : 0.0f;
          } else {
            ds = a.scale * p * (dp - delta_s[col]);
          }
        }
        ptw[rr * kLdP + col] = __float2bfloat16(p);
        dstw[rr * kLdP + col] = __float2bfloat16(ds);
      }
    }
    __syncwarp();
    WarpAccumulate<D>(ptw, kLdP, dos, T::kLdH, dvs + warp * kFrag * T::kLdF, T::kLdF);
    WarpAccumulate<D>(dstw, kLdP, qs, T::kLdH, dks + warp * kFrag * T::kLdF, T::kLdF);
    __syncwarp();
  }
  __syncthreads();
  // Each warp writes its own 16 keys; lane pair r owns key r, each lane half the columns.
  const int r = lane >> 1, half = lane & 1, kg = kw0 + r;
  if (kg < a.S) {
    const int64_t row = a.Row(b, h, kg, D) + half * (D / 2);
    const float* dkr = dks + (warp * kFrag + r) * T::kLdF + half * (D / 2);
    const float* dvr = dvs + (warp * kFrag + r) * T::kLdF + half * (D / 2);
    for (int j = 0; j < D / 2; ++j) {
      a.dk[row + j] = dkr[j];
      a.dv[row + j] = dvr[j];
    }
  }
}

// Raises a kernel's dynamic shared-memory limit to `bytes` (once per kernel and size).
template <typename Kernel>
bool AllowSharedMemory(Kernel kernel, size_t bytes, const LaunchContext& ctx) {
  return HR_CUDA_CHECK(*ctx.err,
                       cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
}

template <int D>
void Forward(const AttentionArgs& a, const LaunchContext& ctx) {
  const size_t bytes = Tiles<D>::kForwardBytes;
  static const bool allowed = AllowSharedMemory(attention_forward_kernel<D>, bytes, ctx);
  if (!allowed) return;
  const dim3 grid(static_cast<unsigned>(a.B * a.H), static_cast<unsigned>(CeilDiv(a.S, kTile)));
  attention_forward_kernel<D><<<grid, kThreads, bytes, ctx.stream>>>(a);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

template <int D>
void Backward(const AttentionArgs& a, const LaunchContext& ctx) {
  static const bool allowed = AllowSharedMemory(attention_dq_kernel<D>, Tiles<D>::kDqBytes, ctx) &&
                              AllowSharedMemory(attention_dkv_kernel<D>, Tiles<D>::kDkvBytes, ctx);
  if (!allowed) return;
  const dim3 grid(static_cast<unsigned>(a.B * a.H), static_cast<unsigned>(CeilDiv(a.S, kTile)));
  attention_dkv_kernel<D><<<grid, kThreads, Tiles<D>::kDkvBytes, ctx.stream>>>(a);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  attention_dq_kernel<D><<<grid, kThreads, Tiles<D>::kDqBytes, ctx.stream>>>(a);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

// Fills the fields shared by forward and backward; false (recorded) for an unsupported call.
bool MakeArgs(const float* q, const float* k, const float* v, int B, int S, int H, int D,
              float scale, const int32_t* key_valid, bool causal, float rate, uint64_t seed,
              uint64_t step, uint32_t layer, uint32_t site, const LaunchContext& ctx,
              AttentionArgs* a) {
  if (!FusedAttentionSupports(D)) {
    ctx.err->Record("fused attention",
                    "head size " + std::to_string(D) + " is not supported (16, 32, 64 or 128)",
                    __FILE__, __LINE__);
    return false;
  }
  for (const float* p : {q, k, v}) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) a->aligned = false;
  }
  a->q = q;
  a->k = k;
  a->v = v;
  a->B = B;
  a->S = S;
  a->H = H;
  a->scale = scale;
  a->key_valid = key_valid;
  a->causal = causal;
  a->dropout = rate > 0.0f;
  // rate >= 1 drops everything: threshold 2^32 - 1 keeps only the all-ones word, so use a
  // keep_scale of 0 instead, which zeroes whatever is kept.
  a->threshold = DropoutThreshold(rate);
  a->keep_scale = rate >= 1.0f ? 0.0f : static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
  a->seed = seed;
  a->step = step;
  a->layer = layer;
  a->site = site;
  return true;
}

}  // namespace

bool FusedAttentionSupports(int head_size) {
  return head_size == 16 || head_size == 32 || head_size == 64 || head_size == 128;
}

void LaunchAttentionForward(const float* q, const float* k, const float* v, int B, int S, int H,
                            int D, float scale, const int32_t* key_valid, bool causal, float rate,
                            uint64_t seed, uint64_t step, uint32_t layer, uint32_t site, float* out,
                            float* lse, const LaunchContext& ctx) {
  if (B <= 0 || S <= 0 || H <= 0) return;
  AttentionArgs a;
  if (!MakeArgs(q, k, v, B, S, H, D, scale, key_valid, causal, rate, seed, step, layer, site, ctx,
                &a)) {
    return;
  }
  a.o = out;
  a.lse_out = lse;
  switch (D) {
    case 16:
      Forward<16>(a, ctx);
      break;
    case 32:
      Forward<32>(a, ctx);
      break;
    case 64:
      Forward<64>(a, ctx);
      break;
    default:
      Forward<128>(a, ctx);
      break;
  }
}

void LaunchAttentionBackward(const float* q, const float* k, const float* v, const float* out,
                             const float* dout, const float* lse, int B, int S, int H, int D,
                             float scale, const int32_t* key_valid, bool causal, float rate,
                             uint64_t seed, uint64_t step, uint32_t layer, uint32_t site, float* dq,
                             float* dk, float* dv, float* delta, const LaunchContext& ctx) {
  if (B <= 0 || S <= 0 || H <= 0) return;
  AttentionArgs a;
  if (!MakeArgs(q, k, v, B, S, H, D, scale, key_valid, causal, rate, seed, step, layer, site, ctx,
                &a)) {
    return;
  }
  if (reinterpret_cast<uintptr_t>(dout) % 16 != 0) a.aligned = false;
  a.out = out;
  a.dout = dout;
  a.lse = lse;
  a.delta = delta;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  const int64_t rows = static_cast<int64_t>(B) * S * H;
  attention_delta_kernel<<<GridStrideBlocks(rows * kWarpSize, 256), 256, 0, ctx.stream>>>(a, D,
                                                                                          delta);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  switch (D) {
    case 16:
      Backward<16>(a, ctx);
      break;
    case 32:
      Backward<32>(a, ctx);
      break;
    case 64:
      Backward<64>(a, ctx);
      break;
    default:
      Backward<128>(a, ctx);
      break;
  }
}

}  // namespace headroom::cuda
