// The device code of the fused attention (kernels/cuda/attention.cu): tile constants, the
// argument block, the WMMA helpers and the four kernels. A header of its own so that
// tests/kernels/attention_emulation_test.cc can compile exactly this code on the CPU against an
// emulation of the CUDA features it uses (tests/kernels/cuda_emulation.h, which defines
// HR_CUDA_EMULATION and HR_DYNAMIC_SHARED before including this file): CI, which has no GPU,
// then runs the kernels' indexing, masking, tiling, synchronisation and dropout logic against
// the float64 reference. Only attention.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_

#ifndef HR_CUDA_EMULATION
#include <cuda_bf16.h>
#include <mma.h>

#include "kernels/cuda/common.cuh"
#endif
#include <cstddef>
#include <cstdint>

#include "kernels/philox.h"

// Declares the block's dynamic shared memory (128-byte aligned) under `name`.
#ifndef HR_DYNAMIC_SHARED
#define HR_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#endif

namespace headroom::cuda::attention_kernels {

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
  HR_DYNAMIC_SHARED(smem);
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

  // The warp's 16 rows out, one row at a time with the lanes across its columns (coalesced);
  // row rr's softmax state is held by lane pair (2 rr, 2 rr + 1).
  for (int rr = 0; rr < kFrag; ++rr) {
    const float l_r = __shfl_sync(0xffffffffu, l, 2 * rr);
    const float m_r = __shfl_sync(0xffffffffu, m, 2 * rr);
    const int q = q0 + warp * kFrag + rr;  // the same for every lane
    if (q >= a.S) continue;
    const float inv = l_r > 0.0f ? 1.0f / l_r : 0.0f;
    const float* orow = ow + rr * T::kLdF;
    float* dst = a.o + a.Row(b, h, q, D);
    for (int j = lane; j < D; j += kWarpSize) dst[j] = orow[j] * inv;
    if (lane == 0) {
      a.lse_out[static_cast<int64_t>(bh) * a.S + q] = l_r > 0.0f ? m_r + logf(l_r) : INFINITY;
    }
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
  HR_DYNAMIC_SHARED(smem);
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
  for (int rr = 0; rr < kFrag; ++rr) {  // coalesced, as the forward's output
    const int q = q0 + warp * kFrag + rr;
    if (q >= a.S) break;
    float* dst = a.dq + a.Row(b, h, q, D);
    for (int j = lane; j < D; j += kWarpSize) dst[j] = dqw[rr * T::kLdF + j];
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(const AttentionArgs a) {
  HR_DYNAMIC_SHARED(smem);
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
  // Each warp writes its own 16 keys, a row at a time with the lanes across the columns.
  for (int rr = 0; rr < kFrag; ++rr) {
    const int kg = kw0 + rr;
    if (kg >= a.S) break;
    const int64_t row = a.Row(b, h, kg, D);
    const float* dkr = dks + (warp * kFrag + rr) * T::kLdF;
    const float* dvr = dvs + (warp * kFrag + rr) * T::kLdF;
    for (int j = lane; j < D; j += kWarpSize) {
      a.dk[row + j] = dkr[j];
      a.dv[row + j] = dvr[j];
    }
  }
}

}  // namespace headroom::cuda::attention_kernels

#endif  // HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_
