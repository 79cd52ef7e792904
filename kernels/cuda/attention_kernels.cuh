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
#include <type_traits>

#include "kernels/cuda/mma.cuh"
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

constexpr int kFrag = 16;  // WMMA fragment edge; each warp owns kFrag rows of its block's tile

// The tiling of one kernel: the block owns kRows rows (queries in forward and dQ, keys in dK/dV;
// kRows / 16 warps) and loops over tiles of kCols rows of the other side, for head size D.
// Row padding (8 bf16, 4 floats) keeps WMMA's 32-byte alignment and spreads rows over the
// shared-memory banks; every size below is a multiple of 128 bytes.
template <int D, int Rows, int Cols>
struct Shape {
  static constexpr int kD = D, kRows = Rows, kCols = Cols;
  static constexpr int kWarps = Rows / kFrag;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kLdH = D + 8;     // bf16 [rows, D] operand tiles
  static constexpr int kLdF = D + 4;     // fp32 [kRows, D] accumulator tiles
  static constexpr int kLdS = Cols + 4;  // per-warp fp32 [16, kCols] tiles (scores, dP)
  static constexpr int kLdP = Cols + 8;  // per-warp bf16 [16, kCols] tiles (P, dS)
  static constexpr size_t kOwnHalfBytes = size_t{Rows} * kLdH * sizeof(bf16);
  static constexpr size_t kLoopHalfBytes = size_t{Cols} * kLdH * sizeof(bf16);
  static constexpr size_t kOwnFloatBytes = size_t{Rows} * kLdF * sizeof(float);
  static constexpr size_t kWarpScoresBytes = size_t{kFrag} * kLdS * sizeof(float) * kWarps;
  static constexpr size_t kWarpProbsBytes = size_t{kFrag} * kLdP * sizeof(bf16) * kWarps;
  // The dQ and dK/dV accumulators need no rescaling inside the loop, so they stay in registers
  // (WarpAccumulators: 8 registers a thread per 16 columns) up to D = 128, and in shared memory
  // above, where they would spill. Out of shared memory they save each tile's load and store of
  // them and let two blocks share an H100 SM where one did: dK/dV at d_p = 64 (123 -> 89 KiB)
  // and 128 (with 32-query tiles, Shapes below: 187 -> 80 KiB), dQ at 128 (144 -> 111 KiB).
  // ptxas (sm_90): at most 168 registers, no spills (12 bytes in dQ at d_p = 16). attention.cu
  // asserts the two blocks.
  static constexpr bool kDqInRegisters = D <= 128;
  static constexpr bool kDkvInRegisters = D <= 128;
  // The forward keeps its scores, probabilities and output accumulator in registers (mma.sync,
  // kernels/cuda/mma.cuh, whose fragment layout says which row each register holds, so the online
  // softmax rescales the output by row in place) up to D = 128: a thread then holds D / 2 output
  // floats, kCols / 2 scores and D / 4 registers of Q. Above, they live in shared memory.
  // ptxas (sm_90): 224 registers at D = 128, 160-176 below, no spills; at D = 128 that is two
  // blocks an SM (by registers; shared memory, 110 -> 52 KiB, had also allowed two), with no
  // round trip of O, S and P through shared memory per key tile.
  static constexpr bool kForwardInRegisters = D <= 128;
  // Forward: Q (own), K and V (loop), the loop keys' segments; in shared memory (D > 128) also
  // O (own, fp32), the scores and the probabilities.
  static constexpr size_t kForwardBytes =
      kOwnHalfBytes + 2 * kLoopHalfBytes + size_t{Cols} * sizeof(int32_t) +
      (kForwardInRegisters ? 0 : kOwnFloatBytes + kWarpScoresBytes + kWarpProbsBytes);
  // dQ: Q and dO (own), K and V (loop), dQ (own, fp32, unless in registers), scores, dP, dS,
  // the loop keys' segments.
  static constexpr size_t kDqBytes = 2 * kOwnHalfBytes + 2 * kLoopHalfBytes +
                                     (kDqInRegisters ? 0 : kOwnFloatBytes) + 2 * kWarpScoresBytes +
                                     kWarpProbsBytes + size_t{Cols} * sizeof(int32_t);
  // dK/dV: K and V (own), Q and dO (loop), dK and dV (own, fp32, unless in registers), S^T,
  // dP^T, P^T, dS^T, the
  // loop tile's lse, delta and query segments, the own keys' segments.
  static constexpr size_t kDkvBytes =
      2 * kOwnHalfBytes + 2 * kLoopHalfBytes + (kDkvInRegisters ? 0 : 2 * kOwnFloatBytes) +
      2 * kWarpScoresBytes + 2 * kWarpProbsBytes + 2 * size_t{Cols} * sizeof(float) +
      size_t{Cols} * sizeof(int32_t) + size_t{Rows} * sizeof(int32_t);
  static_assert(Rows % kFrag == 0 && Cols % 32 == 0 && D % kFrag == 0, "tile shape");
};

// The shapes the launchers use: 64 x 64 tiles up to D = 128; at D = 256 smaller loop tiles
// (dQ) and blocks (dK/dV) so shared memory stays under the H100's 227 KiB. dK/dV at D = 128
// loops over 32-query tiles: 80 KiB, two blocks an SM (64-query tiles: 121 KiB, one). Its
// accumulators add the same 16-query slices in the same order either way.
template <int D>
struct Shapes {
  using Forward = Shape<D, 64, 64>;
  using Dq = Shape<D, 64, (D > 128 ? 32 : 64)>;
  using Dkv = Shape<D, (D > 128 ? 32 : 64), (D >= 128 ? 32 : 64)>;
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
  // The segment mask of kernels/ops.h ([B, S]; nullptr: one segment, no padding).
  const int32_t* segments = nullptr;
  bool causal = false;
  bool dropout = false;
  uint32_t threshold = 0;
  float keep_scale = 1;
  uint64_t seed = 0, step = 0;
  uint32_t layer = 0, site = 0;
  bool aligned = true;  // q, k, v, dout 16-byte aligned: tiles load as float4

  // The segment of token s of sequence b: 0 for padding and past the end, 1 for every token
  // without `segments`. Kernels stage the keys' in shared memory per tile, and each query's
  // once, instead of reading `segments` per (query, key).
  __device__ int32_t Segment(int b, int s) const {
    if (s >= S) return 0;
    return segments == nullptr ? 1 : segments[static_cast<int64_t>(b) * S + s];
  }
  // Whether (query qg, key kg) is masked out, given their Segment()s (kernels/ops.h: a key of
  // segment 0 or of another segment than a non-padding query's is hidden).
  __device__ bool Masked(int32_t key_segment, int32_t query_segment, int qg, int kg) const {
    return key_segment == 0 || qg >= S || (causal && kg > qg) ||
           (query_segment != 0 && key_segment != query_segment);
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

// Rows row0 .. row0 + kRows - 1 of head (b, h) of a token-major fp32 tensor into a bf16
// [kRows, D] tile (row stride D + 8); rows at or past S are zero. All kThreads threads of the
// block take part.
template <int D, int kRows, int kThreads>
__device__ void LoadTile(const float* src, const AttentionArgs& a, int b, int h, int row0,
                         bf16* dst) {
  constexpr int kVec = D / 4;
  for (int i = threadIdx.x; i < kRows * kVec; i += kThreads) {
    const int r = i / kVec, c = (i % kVec) * 4, s = row0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (s < a.S) {
      const float* p = src + a.Row(b, h, s, D) + c;
      x = a.aligned ? *reinterpret_cast<const float4*>(p) : make_float4(p[0], p[1], p[2], p[3]);
    }
    __nv_bfloat162* d = reinterpret_cast<__nv_bfloat162*>(dst + r * (D + 8) + c);
    d[0] = __floats2bfloat162_rn(x.x, x.y);
    d[1] = __floats2bfloat162_rn(x.z, x.w);
  }
}

// Segment() of tokens s0 .. s0 + kTokens - 1 of sequence b into `segs`; all kThreads threads.
template <int kTokens, int kThreads>
__device__ void LoadSegments(const AttentionArgs& a, int b, int s0, int32_t* segs) {
  for (int i = threadIdx.x; i < kTokens; i += kThreads) segs[i] = a.Segment(b, s0 + i);
}

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

// A warp's [16, N] fp32 accumulator held in registers across a kernel's loop: N / 16 WMMA
// accumulator fragments. Add() is WarpAccumulate without the round trip through shared memory
// (the same products in the same order, so the same values). WriteRows() stages W columns at a
// time through the warp's own fp32 scratch ([16, ld], ld >= W) and writes the rows below `rows`
// to row(r)[0, N) in global memory, lanes across the columns (coalesced).
template <int N>
struct WarpAccumulators {
  fragment<accumulator, kFrag, kFrag, kFrag, float> f[N / kFrag];

  __device__ void Zero() {
#pragma unroll
    for (int n = 0; n < N / kFrag; ++n) nvcuda::wmma::fill_fragment(f[n], 0.0f);
  }

  // += A [16, K] (bf16 row-major, lda) x B [K, N] (bf16 row-major, ldb).
  template <int K>
  __device__ void Add(const bf16* A, int lda, const bf16* B, int ldb) {
#pragma unroll
    for (int n = 0; n < N / kFrag; ++n) MultiplyAdd<K>(f[n], A, lda, B + n * kFrag, ldb);
  }

  template <int W, typename RowPointer>
  __device__ void WriteRows(float* scratch, int ld, int rows, RowPointer row) const {
    static_assert(N % W == 0 && W % kFrag == 0, "chunk width");
    const int lane = threadIdx.x % kWarpSize;
#pragma unroll
    for (int c = 0; c < N / W; ++c) {
#pragma unroll
      for (int n = 0; n < W / kFrag; ++n) {
        nvcuda::wmma::store_matrix_sync(scratch + n * kFrag, f[c * (W / kFrag) + n], ld,
                                        mem_row_major);
      }
      __syncwarp();
      for (int rr = 0; rr < kFrag && rr < rows; ++rr) {
        float* dst = row(rr) + c * W;
        for (int j = lane; j < W; j += kWarpSize) dst[j] = scratch[rr * ld + j];
      }
      __syncwarp();
    }
  }
};

// Stands in for WarpAccumulators where the accumulators live in shared memory.
struct NoAccumulators {};

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

// The forward's per-lane state for D <= 128: the lane holds rows g and g + 8 of its warp's 16
// queries (MmaLane), with each row's running max m, and the running sum l of the row's
// probabilities over this lane's columns (the four lanes of a group add theirs at the end).
struct ForwardRows {
  int qg[2];        // global query index of each row
  int32_t qseg[2];  // its Segment()
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};
  DropoutCursor cursor[2];

  __device__ ForwardRows(const AttentionArgs& a, int b, int row0, const MmaLane& ln) {
    for (int i = 0; i < 2; ++i) {
      qg[i] = row0 + ln.g + 8 * i;
      qseg[i] = a.Segment(b, qg[i]);
    }
  }
};

// One warp: s = Q K^T for the tile's kCols keys, Q as D / 16 A fragments, K [kCols, D] (bf16,
// row stride ld) as B = K^T, whose column g of n8 tile j is key 8 j + g. Element e of s[j] is
// (row g + 8 (e / 2), key 8 j + 2t + e % 2).
template <int kCols, int D>
__device__ __forceinline__ void ScoresInRegisters(const Bf16x2 (&qf)[D / 16][4], const bf16* ks,
                                                  int ld, const MmaLane& ln,
                                                  float (&s)[kCols / 8][4]) {
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
    s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    const bf16* krow = ks + (8 * j + ln.g) * ld + 2 * ln.t;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const Bf16x2 kb[2] = {LoadPair(krow + kk * 16), LoadPair(krow + kk * 16 + 8)};
      MmaBf16(s[j], qf[kk], kb);
    }
  }
}

// The online softmax step of one key tile (keys k0 ..), in place: scores masked and scaled,
// the rows' running max moved to m', O rescaled by exp(m - m') by row, and s replaced by the
// probabilities exp(S - m') with dropout applied (l sums them before dropout, as the
// materialised path's softmax).
template <int kCols, int kOutTiles>
__device__ __forceinline__ void SoftmaxInRegisters(const AttentionArgs& a, int bh, int k0,
                                                   const int32_t* kseg, const MmaLane& ln,
                                                   ForwardRows& rows, float (&s)[kCols / 8][4],
                                                   float (&o)[kOutTiles][4]) {
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = e / 2, c = 8 * j + 2 * ln.t + e % 2;
      const bool masked = a.Masked(kseg[c], rows.qseg[i], rows.qg[i], k0 + c);
      s[j][e] = masked ? -INFINITY : a.scale * s[j][e];
      tile_max[i] = fmaxf(tile_max[i], s[j][e]);
    }
  }
  float alpha[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 1));
    tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 2));
    const float m_new = fmaxf(rows.m[i], tile_max[i]);
    alpha[i] = rows.m[i] == m_new ? 1.0f : expf(rows.m[i] - m_new);  // m = -inf, m' finite: 0
    rows.m[i] = m_new;
    rows.l[i] *= alpha[i];
  }
#pragma unroll
  for (int n = 0; n < kOutTiles; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e / 2];
  }
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = e / 2, c = 8 * j + 2 * ln.t + e % 2;
      float p = s[j][e] == -INFINITY ? 0.0f : expf(s[j][e] - rows.m[i]);
      rows.l[i] += p;
      if (a.dropout && p != 0.0f) {
        p = rows.cursor[i].Keep(a, a.ProbIndex(bh, rows.qg[i], k0 + c)) ? p * a.keep_scale : 0.0f;
      }
      s[j][e] = p;
    }
  }
}

// One warp: o += P V over the tile's kCols keys, 16 at a time. Probability tiles 2kk and
// 2kk + 1, rounded to bf16 pair by pair, are the A fragment (kernels/cuda/mma.cuh); B = V [16
// keys, 8 dims] from vs (bf16 [kCols, D], row stride ld), whose column g is dimension 8n + g.
template <int kCols, int D>
__device__ __forceinline__ void AccumulateInRegisters(const float (&p)[kCols / 8][4],
                                                      const bf16* vs, int ld, const MmaLane& ln,
                                                      float (&o)[D / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < kCols / 16; ++kk) {
    const Bf16x2 pa[4] = {RoundPair(p[2 * kk][0], p[2 * kk][1]),
                          RoundPair(p[2 * kk][2], p[2 * kk][3]),
                          RoundPair(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                          RoundPair(p[2 * kk + 1][2], p[2 * kk + 1][3])};
    const bf16* vrow = vs + (kk * 16 + 2 * ln.t) * ld + ln.g;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const bf16* v = vrow + 8 * n;
      const Bf16x2 vb[2] = {__halves2bfloat162(v[0], v[ld]),
                            __halves2bfloat162(v[8 * ld], v[9 * ld])};
      MmaBf16(o[n], pa, vb);
    }
  }
}

// The forward for D <= 128 (Shape::kForwardInRegisters), flash-attention 2's loop: warp w owns
// queries q0 + 16 w .. + 15, whose Q fragments, softmax state (ForwardRows) and output
// accumulator O stay in registers across the key tiles; per tile of kCols keys, S = Q K^T
// (ScoresInRegisters), the online softmax (SoftmaxInRegisters) and O += dropout(P) V
// (AccumulateInRegisters). Lane (g, t) then writes columns 8n + 2t, 8n + 2t + 1 of its rows.
template <typename Sh>
__device__ __forceinline__ void ForwardWithRegisterAccumulators(const AttentionArgs& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLd = Sh::kLdH, kOutTiles = D / 8;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  int32_t* kseg = carve.Take<int32_t>(kCols * sizeof(int32_t));

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize;
  const MmaLane ln = ThisMmaLane();
  ForwardRows rows(a, b, q0 + warp * kFrag, ln);

  LoadTile<D, kRows, kThreads>(a.q, a, b, h, q0, qs);
  __syncthreads();
  Bf16x2 qf[D / 16][4];  // the warp's Q [16, D] as A fragments, one per 16 dimensions
  const bf16* qw = qs + warp * kFrag * kLd;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      qf[kk][i] = LoadPair(qw + (ln.g + 8 * (i % 2)) * kLd + kk * 16 + 2 * ln.t + 8 * (i / 2));
    }
  }
  float o[kOutTiles][4];
#pragma unroll
  for (int n = 0; n < kOutTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

  const int key_tiles = (a.S + kCols - 1) / kCols;
  // Causal: the block's last query is q0 + kRows - 1; later key tiles are fully masked.
  const int tiles = a.causal ? min(key_tiles, (q0 + kRows - 1) / kCols + 1) : key_tiles;
  for (int kt = 0; kt < tiles; ++kt) {
    __syncthreads();  // the previous tile's K and V are no longer read
    LoadTile<D, kCols, kThreads>(a.k, a, b, h, kt * kCols, ks);
    LoadTile<D, kCols, kThreads>(a.v, a, b, h, kt * kCols, vs);
    LoadSegments<kCols, kThreads>(a, b, kt * kCols, kseg);
    __syncthreads();
    float s[kCols / 8][4];
    ScoresInRegisters<kCols, D>(qf, ks, kLd, ln, s);
    SoftmaxInRegisters<kCols, kOutTiles>(a, bh, kt * kCols, kseg, ln, rows, s, o);
    AccumulateInRegisters<kCols, D>(s, vs, kLd, ln, o);
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float l = rows.l[i] + __shfl_xor_sync(0xffffffffu, rows.l[i], 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (rows.qg[i] >= a.S) continue;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* dst = a.o + a.Row(b, h, rows.qg[i], D) + 2 * ln.t;
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n) {
      dst[8 * n] = o[n][2 * i] * inv;
      dst[8 * n + 1] = o[n][2 * i + 1] * inv;
    }
    if (ln.t == 0) {
      a.lse_out[static_cast<int64_t>(bh) * a.S + rows.qg[i]] =
          l > 0.0f ? rows.m[i] + logf(l) : INFINITY;
    }
  }
}

// The forward for D > 128: as above, with the scores, probabilities and output accumulator in
// shared memory (WMMA), the row's softmax state with a pair of lanes.
template <typename Sh>
__device__ __forceinline__ void ForwardWithSharedAccumulators(const AttentionArgs& a) {
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
    float* dst = a.o + a.Row(b, h, q, D);
    for (int j = lane; j < D; j += kWarpSize) dst[j] = orow[j] * inv;
    if (lane == 0) {
      a.lse_out[static_cast<int64_t>(bh) * a.S + q] = l_r > 0.0f ? m_r + logf(l_r) : INFINITY;
    }
  }
}

// Attention forward: out and lse of kRows queries of one (batch, head) per block.
template <typename Sh>
__global__ void __launch_bounds__(Sh::kThreads) attention_forward_kernel(const AttentionArgs a) {
  if constexpr (Sh::kForwardInRegisters) {
    ForwardWithRegisterAccumulators<Sh>(a);
  } else {
    ForwardWithSharedAccumulators<Sh>(a);
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

template <typename Sh>
__global__ void __launch_bounds__(Sh::kThreads) attention_dq_kernel(const AttentionArgs a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLaneCols = kCols / 2;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* dos = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  float* dqs = Sh::kDqInRegisters ? nullptr : carve.Take<float>(Sh::kOwnFloatBytes);
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
  float* dqw = Sh::kDqInRegisters ? nullptr : dqs + warp * kFrag * Sh::kLdF;
  std::conditional_t<Sh::kDqInRegisters, WarpAccumulators<D>, NoAccumulators> dq;
  const int64_t stat = static_cast<int64_t>(bh) * a.S + qg;
  const float lse = qg < a.S ? a.lse[stat] : INFINITY;
  const float delta = qg < a.S ? a.delta[stat] : 0.0f;

  LoadTile<D, kRows, kThreads>(a.q, a, b, h, q0, qs);
  LoadTile<D, kRows, kThreads>(a.dout, a, b, h, q0, dos);
  if constexpr (Sh::kDqInRegisters) {
    dq.Zero();
  } else {
    for (int i = threadIdx.x; i < kRows * Sh::kLdF; i += kThreads) dqs[i] = 0.0f;
  }

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
    if constexpr (Sh::kDqInRegisters) {
      dq.template Add<kCols>(dsw, Sh::kLdP, ks, Sh::kLdH);
    } else {
      WarpAccumulate<D, kCols>(dsw, Sh::kLdP, ks, Sh::kLdH, dqw, Sh::kLdF);
    }
    __syncwarp();
  }
  // The warp's rows, coalesced as the forward's output; staged through its score scratch.
  const int wq0 = q0 + warp * kFrag;
  auto dq_row = [&](int rr) { return a.dq + a.Row(b, h, wq0 + rr, D); };
  if constexpr (Sh::kDqInRegisters) {
    dq.template WriteRows<(D < kCols ? D : kCols)>(sw, Sh::kLdS, a.S - wq0, dq_row);
  } else {
    for (int rr = 0; rr < kFrag && wq0 + rr < a.S; ++rr) {
      float* dst = dq_row(rr);
      for (int j = lane; j < D; j += kWarpSize) dst[j] = dqw[rr * Sh::kLdF + j];
    }
  }
}

template <typename Sh>
__global__ void __launch_bounds__(Sh::kThreads) attention_dkv_kernel(const AttentionArgs a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* ks = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* qs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* dos = carve.Take<bf16>(Sh::kLoopHalfBytes);
  float* dks = Sh::kDkvInRegisters ? nullptr : carve.Take<float>(Sh::kOwnFloatBytes);
  float* dvs = Sh::kDkvInRegisters ? nullptr : carve.Take<float>(Sh::kOwnFloatBytes);
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
  std::conditional_t<Sh::kDkvInRegisters, WarpAccumulators<D>, NoAccumulators> dk, dv;
  if constexpr (Sh::kDkvInRegisters) {
    dk.Zero();
    dv.Zero();
  } else {
    for (int i = threadIdx.x; i < kRows * Sh::kLdF; i += kThreads) {
      dks[i] = 0.0f;
      dvs[i] = 0.0f;
    }
  }
  const int query_tiles = (a.S + kCols - 1) / kCols;
  // Causal: queries before the block's first key see none of its keys.
  for (int it = a.causal ? j0 / kCols : 0; it < query_tiles; ++it) {
    const int i0 = it * kCols;
    __syncthreads();
    LoadTile<D, kCols, kThreads>(a.q, a, b, h, i0, qs);
    LoadTile<D, kCols, kThreads>(a.dout, a, b, h, i0, dos);
    for (int i = threadIdx.x; i < kCols; i += kThreads) {
      const bool in = i0 + i < a.S;
      const int64_t stat = static_cast<int64_t>(bh) * a.S + i0 + i;
      lse_s[i] = in ? a.lse[stat] : INFINITY;
      delta_s[i] = in ? a.delta[stat] : 0.0f;
      qseg_s[i] = a.Segment(b, i0 + i);
    }
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
    if constexpr (Sh::kDkvInRegisters) {
      dv.template Add<kCols>(ptw, Sh::kLdP, dos, Sh::kLdH);
      dk.template Add<kCols>(dstw, Sh::kLdP, qs, Sh::kLdH);
    } else {
      WarpAccumulate<D, kCols>(ptw, Sh::kLdP, dos, Sh::kLdH, dvs + warp * kFrag * Sh::kLdF,
                               Sh::kLdF);
      WarpAccumulate<D, kCols>(dstw, Sh::kLdP, qs, Sh::kLdH, dks + warp * kFrag * Sh::kLdF,
                               Sh::kLdF);
    }
    __syncwarp();
  }
  // Each warp writes its own 16 keys, a row at a time with the lanes across the columns; from
  // registers, staged through its S^T scratch.
  auto dk_row = [&](int rr) { return a.dk + a.Row(b, h, kw0 + rr, D); };
  auto dv_row = [&](int rr) { return a.dv + a.Row(b, h, kw0 + rr, D); };
  if constexpr (Sh::kDkvInRegisters) {
    dk.template WriteRows<(D < kCols ? D : kCols)>(stw, Sh::kLdS, a.S - kw0, dk_row);
    dv.template WriteRows<(D < kCols ? D : kCols)>(stw, Sh::kLdS, a.S - kw0, dv_row);
  } else {
    for (int rr = 0; rr < kFrag && kw0 + rr < a.S; ++rr) {
      const float* dkr = dks + (warp * kFrag + rr) * Sh::kLdF;
      const float* dvr = dvs + (warp * kFrag + rr) * Sh::kLdF;
      float *dk_dst = dk_row(rr), *dv_dst = dv_row(rr);
      for (int j = lane; j < D; j += kWarpSize) {
        dk_dst[j] = dkr[j];
        dv_dst[j] = dvr[j];
      }
    }
  }
}

}  // namespace headroom::cuda::attention_kernels

#endif  // HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_
