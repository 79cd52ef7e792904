// The device code of the fused attention (kernels/cuda/attention.cu): tile constants, the
// argument block, the tile loads and the four kernels, whose bodies are attention_mma.cuh's
// (head sizes up to 128, in registers) or attention_wmma.cuh's (256). A header of its own so that
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

#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/philox.h"

// Declares the block's dynamic shared memory (128-byte aligned) under `name`.
#ifndef HR_DYNAMIC_SHARED
#define HR_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#endif

namespace headroom::cuda::attention_kernels {

using bf16 = __nv_bfloat16;

constexpr int kFrag = 16;  // fragment rows; each warp owns kFrag rows of its block's tile

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
  // Up to D = 128 the kernels keep a tile's scores, probabilities and gradients and their
  // accumulators (O, dQ, dK, dV) in registers on mma.sync fragments (attention_mma.cuh); at
  // D = 256 those would spill, and they live in shared memory (attention_wmma.cuh). In
  // registers, per thread: kCols / 2 floats per score-sized tile and D / 2 per accumulator.
  // ptxas (sm_90): see attention.cu; attention.cu also asserts the blocks an SM.
  static constexpr bool kInRegisters = D <= 128;
  // The dropout mask's bits of each warp's [16, kCols] tile (attention_mma.cuh, DropoutBits).
  static constexpr size_t kWarpBitsBytes = size_t{kFrag} * (Cols / 32) * sizeof(uint32_t) * kWarps;
  // Forward: Q (own), K and V (loop), the loop keys' segments; then in registers the dropout
  // bits, in shared memory O (own, fp32), the scores and the probabilities.
  static constexpr size_t kForwardBytes =
      kOwnHalfBytes + 2 * kLoopHalfBytes + size_t{Cols} * sizeof(int32_t) +
      (kInRegisters ? kWarpBitsBytes : kOwnFloatBytes + kWarpScoresBytes + kWarpProbsBytes);
  // dQ: Q and dO (own), K and V (loop), the loop keys' segments; then the dropout bits, or dQ
  // (own, fp32), scores, dP and dS.
  static constexpr size_t kDqBytes =
      2 * kOwnHalfBytes + 2 * kLoopHalfBytes + size_t{Cols} * sizeof(int32_t) +
      (kInRegisters ? kWarpBitsBytes : kOwnFloatBytes + 2 * kWarpScoresBytes + kWarpProbsBytes);
  // dK/dV: K and V (own), Q and dO (loop), the loop tile's lse, delta and query segments; then
  // the dropout bits, or dK and dV (own, fp32), S^T, dP^T, P^T, dS^T and the own keys' segments.
  static constexpr size_t kDkvBytes =
      2 * kOwnHalfBytes + 2 * kLoopHalfBytes + 2 * size_t{Cols} * sizeof(float) +
      size_t{Cols} * sizeof(int32_t) +
      (kInRegisters ? kWarpBitsBytes
                    : 2 * kOwnFloatBytes + 2 * kWarpScoresBytes + 2 * kWarpProbsBytes +
                          size_t{Rows} * sizeof(int32_t));
  // dQ from the stored dS (attention_mma.cuh, DqFromStoredInRegisters): K (loop) and the
  // block's [kRows, kCols] tile of dS (bf16, rows kLdP apart).
  static constexpr size_t kDqStoredBytes = kLoopHalfBytes + size_t{Rows} * kLdP * sizeof(bf16);
  static_assert(Rows % kFrag == 0 && Cols % 32 == 0 && D % kFrag == 0, "tile shape");
};

// The shapes the launchers use: 64 x 64 tiles up to D = 128, except dK/dV at D = 128, which
// loops over 32-query tiles (with 64, the tile's S^T and dP^T would need 32 more registers a
// thread next to dK and dV, and spill); at D = 256 smaller loop tiles (dQ) and blocks (dK/dV)
// so shared memory stays under the H100's 227 KiB.
template <int D>
struct Shapes {
  using Forward = Shape<D, 64, 64>;
  using Dq = Shape<D, 64, (D > 128 ? 32 : 64)>;
  using Dkv = Shape<D, (D > 128 ? 32 : 64), (D >= 128 ? 32 : 64)>;
};

// What a kernel needs to know about one call besides its tensors: shapes, mask, dropout.
struct AttentionShape {
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
  bool aligned = true;  // q, k, v, dout 16-byte aligned: tiles load 16 bytes at a time

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

// The tensors of one call, stored as A (float, or __nv_bfloat16 for bf16 activations: read as
// they are, the outputs rounded once to A); the log-sum-exp and delta statistics are fp32.
template <typename A>
struct AttentionTensors : AttentionShape {
  const A* q = nullptr;
  const A* k = nullptr;
  const A* v = nullptr;
  const A* out = nullptr;  // forward output (backward input)
  const A* dout = nullptr;
  const float* lse = nullptr;    // [B, H, S] (backward input)
  const float* delta = nullptr;  // [B, H, S] (backward input)
  A* o = nullptr;                // forward output
  float* lse_out = nullptr;
  A* dq = nullptr;
  A* dk = nullptr;
  A* dv = nullptr;
  // The stored-dS path's workspace, [B, H, S, S] bf16 (row: query, column: key): dK/dV writes
  // dS = scale P (dropout(dP) - delta) as the dQ product consumes it, dQ reads it back.
  bf16* ds = nullptr;
};
using AttentionArgs = AttentionTensors<float>;

// The dropout mask along a run of consecutive element indices: one Philox call per group of 4.
class DropoutCursor {
 public:
  __device__ bool Keep(const AttentionShape& a, uint64_t i) {
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

// Four bf16 as one 8-byte store (c of a tile row: a multiple of 4, so 8-byte aligned).
struct alignas(8) Bf16x4 {
  __nv_bfloat162 lo, hi;
};

// Rows row0 .. row0 + kRows - 1 of head (b, h) of a token-major tensor (fp32, rounded to bf16
// here, or bf16, copied) into a bf16 [kRows, D] tile (row stride D + 8); rows at or past S are
// zero. All kThreads threads of the block take part.
template <int D, int kRows, int kThreads>
__device__ void LoadTile(const float* src, const AttentionShape& a, int b, int h, int row0,
                         bf16* dst) {
  constexpr int kVec = D / 4;
  for (int i = threadIdx.x; i < kRows * kVec; i += kThreads) {
    const int r = i / kVec, c = (i % kVec) * 4, s = row0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (s < a.S) {
      const float* p = src + a.Row(b, h, s, D) + c;
      x = a.aligned ? *reinterpret_cast<const float4*>(p) : make_float4(p[0], p[1], p[2], p[3]);
    }
    // One 8-byte store: two 4-byte stores 8 bytes apart would put lanes t and t + 16 of a warp on
    // one bank (a 2-way conflict); 8-byte stores serve each half-warp's 128 bytes conflict-free.
    *reinterpret_cast<Bf16x4*>(dst + r * (D + 8) + c) =
        Bf16x4{__floats2bfloat162_rn(x.x, x.y), __floats2bfloat162_rn(x.z, x.w)};
  }
}
template <int D, int kRows, int kThreads>
__device__ void LoadTile(const bf16* src, const AttentionShape& a, int b, int h, int row0,
                         bf16* dst) {
  constexpr int kPack = Pack<bf16>::kSize;  // 16 bytes: 8 bf16
  constexpr int kVec = D / kPack;
  for (int i = threadIdx.x; i < kRows * kVec; i += kThreads) {
    const int r = i / kVec, c = (i % kVec) * kPack, s = row0 + r;
    Pack<bf16> x;
    if (s < a.S) {
      const bf16* p = src + a.Row(b, h, s, D) + c;
      if (a.aligned) {
        x = LoadPack(p);
      } else {
        for (int j = 0; j < kPack; ++j) x.v[j] = p[j];
      }
    } else {
      for (int j = 0; j < kPack; ++j) x.v[j] = __float2bfloat16(0.0f);
    }
    StorePack(dst + r * (D + 8) + c, x);  // rows of D + 8 bf16: 16-byte aligned
  }
}

// Segment() of tokens s0 .. s0 + kTokens - 1 of sequence b into `segs`; all kThreads threads.
template <int kTokens, int kThreads>
__device__ void LoadSegments(const AttentionShape& a, int b, int s0, int32_t* segs) {
  for (int i = threadIdx.x; i < kTokens; i += kThreads) segs[i] = a.Segment(b, s0 + i);
}

// The loop tile of dK/dV: queries i0 .. i0 + kCols - 1 of head (b, h) of sequence b (bh =
// b * H + h): q and dout as bf16 tiles, and each query's lse, delta and Segment() (past S:
// +inf, 0 and 0). All kThreads threads.
template <int D, int kCols, int kThreads, typename A>
__device__ void LoadQueryTile(const AttentionTensors<A>& a, int bh, int b, int h, int i0, bf16* qs,
                              bf16* dos, float* lse, float* delta, int32_t* segs) {
  LoadTile<D, kCols, kThreads>(a.q, a, b, h, i0, qs);
  LoadTile<D, kCols, kThreads>(a.dout, a, b, h, i0, dos);
  for (int i = threadIdx.x; i < kCols; i += kThreads) {
    const bool in = i0 + i < a.S;
    const int64_t stat = static_cast<int64_t>(bh) * a.S + i0 + i;
    lse[i] = in ? a.lse[stat] : INFINITY;
    delta[i] = in ? a.delta[stat] : 0.0f;
    segs[i] = a.Segment(b, i0 + i);
  }
}

// Queries q0 .. q0 + kRows - 1, keys k0 .. k0 + kCols - 1 of head bh's stored dS (a.ds) into a
// bf16 [kRows, kCols] tile (row stride kCols + 8); entries past S are zero. 16 bytes at a time
// where every row of the workspace starts 16-byte aligned. All kThreads threads.
template <int kRows, int kCols, int kThreads>
__device__ void LoadScoreGradientTile(const bf16* ds, const AttentionShape& a, int bh, int q0,
                                      int k0, bf16* dst) {
  constexpr int kPack = Pack<bf16>::kSize, kVec = kCols / kPack, kLd = kCols + 8;
  const bf16* head = ds + static_cast<int64_t>(bh) * a.S * a.S;
  if (a.S % kPack == 0 && reinterpret_cast<uintptr_t>(ds) % 16 == 0) {
    for (int i = threadIdx.x; i < kRows * kVec; i += kThreads) {
      const int r = i / kVec, c = (i % kVec) * kPack, q = q0 + r, k = k0 + c;
      Pack<bf16> x;
      if (q < a.S && k < a.S) {  // S a multiple of the pack: all of it or none past S
        x = LoadPack(head + static_cast<int64_t>(q) * a.S + k);
      } else {
        for (int j = 0; j < kPack; ++j) x.v[j] = __float2bfloat16(0.0f);
      }
      StorePack(dst + r * kLd + c, x);
    }
    return;
  }
  for (int i = threadIdx.x; i < kRows * kCols; i += kThreads) {
    const int r = i / kCols, c = i % kCols, q = q0 + r, k = k0 + c;
    dst[r * kLd + c] =
        q < a.S && k < a.S ? head[static_cast<int64_t>(q) * a.S + k] : __float2bfloat16(0.0f);
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

}  // namespace headroom::cuda::attention_kernels

#include "kernels/cuda/attention_mma.cuh"   // NOLINT(build/include_order): needs the above
#include "kernels/cuda/attention_wmma.cuh"  // NOLINT(build/include_order)

namespace headroom::cuda::attention_kernels {

// The kernels: block (b * H + h, tile) of kRows rows of one (batch, head); each picks its
// shape's implementation.
// Forward: out and lse of kRows queries.
template <typename Sh, typename A = float>
__global__ void __launch_bounds__(Sh::kThreads)
    attention_forward_kernel(const AttentionTensors<A> a) {
  if constexpr (Sh::kInRegisters) {
    ForwardInRegisters<Sh, A>(a);
  } else {
    ForwardInShared<Sh, A>(a);
  }
}

// dQ of kRows queries; kFromStoredDs (head sizes up to 128): from the dS that the dK/dV kernel
// stored in a.ds (launched with kStoreDs, before), instead of recomputing S and dP.
template <typename Sh, typename A = float, bool kFromStoredDs = false>
__global__ void __launch_bounds__(Sh::kThreads) attention_dq_kernel(const AttentionTensors<A> a) {
  static_assert(!kFromStoredDs || Sh::kInRegisters, "stored dS: head sizes up to 128 only");
  if constexpr (kFromStoredDs) {
    DqFromStoredInRegisters<Sh, A>(a);
  } else if constexpr (Sh::kInRegisters) {
    DqInRegisters<Sh, A>(a);
  } else {
    DqInShared<Sh, A>(a);
  }
}

// dK and dV of kRows keys; kStoreDs (head sizes up to 128): also dS into a.ds.
template <typename Sh, typename A = float, bool kStoreDs = false>
__global__ void __launch_bounds__(Sh::kThreads) attention_dkv_kernel(const AttentionTensors<A> a) {
  static_assert(!kStoreDs || Sh::kInRegisters, "stored dS: head sizes up to 128 only");
  if constexpr (Sh::kInRegisters) {
    DkvInRegisters<Sh, A, kStoreDs>(a);
  } else {
    DkvInShared<Sh, A>(a);
  }
}

// delta[(b * H + h) * S + s] = sum_j dout * out over one token's head slice; one warp each.
template <typename A = float>
__global__ void attention_delta_kernel(const AttentionTensors<A> a, int D, float* delta) {
  const int64_t rows = static_cast<int64_t>(a.B) * a.S * a.H;
  const int64_t warps = GridThreads() / kWarpSize;
  for (int64_t t = GlobalThread() / kWarpSize; t < rows; t += warps) {  // t = (b * S + s) * H + h
    float acc = 0.0f;
    for (int j = threadIdx.x % kWarpSize; j < D; j += kWarpSize)
      acc += ToFloat(a.dout[t * D + j]) * ToFloat(a.out[t * D + j]);
    acc = WarpSum(acc);
    if (threadIdx.x % kWarpSize == 0) {
      const int64_t h = t % a.H, bs = t / a.H, b = bs / a.S, s = bs % a.S;
      delta[(b * a.H + h) * a.S + s] = acc;
    }
  }
}

}  // namespace headroom::cuda::attention_kernels

#endif  // HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_
