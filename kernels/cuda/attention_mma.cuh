// The fused attention's kernels for head sizes up to 128 (Shape::kInRegisters): every product
// on mma.sync fragments (kernels/cuda/mma.cuh), whose documented register layout lets the
// scores, probabilities and gradients of a tile, and the accumulators O, dQ, dK, dV, stay in
// registers across a kernel's loop; only the operand tiles (bf16, loaded by the whole block) and
// the dropout mask's bits pass through shared memory (and, on the stored-dS path, dS: the dK/dV
// kernel writes it to a global workspace, the dQ kernel reads it back through shared memory
// instead of recomputing S and dP). Included by attention_kernels.cuh (which defines Shape,
// AttentionArgs, the tile loads and the __global__ entry points); the emulation test runs this
// code on the CPU.
//
// A warp owns 16 rows of its block's tile (queries in forward and dQ, keys in dK/dV). In C
// fragments, lane (g, t) holds rows g and g + 8 (LaneRows) and, of every 8 columns, 2t and
// 2t + 1: element e of tile j is (row g + 8 (e / 2), column 8 j + 2t + e % 2).
#ifndef HEADROOM_KERNELS_CUDA_ATTENTION_MMA_CUH_
#define HEADROOM_KERNELS_CUDA_ATTENTION_MMA_CUH_

#ifndef HEADROOM_KERNELS_CUDA_ATTENTION_KERNELS_CUH_
#error "include kernels/cuda/attention_kernels.cuh"
#endif

namespace headroom::cuda::attention_kernels {

// The two rows of its warp's 16 that a lane holds (global token index) and their segments.
struct LaneRows {
  int index[2];
  int32_t segment[2];

  __device__ LaneRows(const AttentionShape& a, int b, int row0, const MmaLane& ln) {
    for (int i = 0; i < 2; ++i) {
      index[i] = row0 + ln.g + 8 * i;
      segment[i] = a.Segment(b, index[i]);
    }
  }
};

// One warp: s = A B^T, A the warp's 16 rows at `a`, B kCols rows at `b` (bf16, D wide, rows ld
// apart): every row of A against every row of B, summed over D in order.
template <int kCols, int D>
__device__ __forceinline__ void RowsTimesRows(const bf16* a, const bf16* b, int ld,
                                              const MmaLane& ln, float (&s)[kCols / 8][4]) {
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    Bf16x2 af[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      af[i] = LoadPair(a + (ln.g + 8 * (i % 2)) * ld + kk * 16 + 2 * ln.t + 8 * (i / 2));
    }
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j) {  // B = rows^T: column g of tile j is row 8 j + g
      const bf16* brow = b + (8 * j + ln.g) * ld + kk * 16 + 2 * ln.t;
      const Bf16x2 bf[2] = {LoadPair(brow), LoadPair(brow + 8)};
      MmaBf16(s[j], af, bf);
    }
  }
}

// One warp: o += P B over 16 of P's columns, 16 kk .. 16 kk + 15, given as the A fragment pa.
// B [kCols, D] is bf16 rows at `b`, ld apart; column g of output tile n is dimension 8 n + g.
template <int D>
__device__ __forceinline__ void AccumulateColumns(const Bf16x2 (&pa)[4], const bf16* b, int ld,
                                                  int kk, const MmaLane& ln, float (&o)[D / 8][4]) {
  const bf16* brow = b + (kk * 16 + 2 * ln.t) * ld + ln.g;
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    const bf16* x = brow + 8 * n;
    const Bf16x2 bf[2] = {__halves2bfloat162(x[0], x[ld]),
                          __halves2bfloat162(x[8 * ld], x[9 * ld])};
    MmaBf16(o[n], pa, bf);
  }
}

// Columns 16 kk .. 16 kk + 15 of P [16, kCols] in C fragments (as RowsTimesRows's s), rounded
// to bf16 pair by pair: tiles 2 kk and 2 kk + 1 are exactly the A fragment of those columns
// (kernels/cuda/mma.cuh): pa[i] holds row g + 8 (i % 2), columns 16 kk + 8 (i / 2) + 2t (.x)
// and + 1 (.y).
template <int kCols>
__device__ __forceinline__ void RoundToFragment(const float (&p)[kCols / 8][4], int kk,
                                                Bf16x2 (&pa)[4]) {
  pa[0] = RoundPair(p[2 * kk][0], p[2 * kk][1]);
  pa[1] = RoundPair(p[2 * kk][2], p[2 * kk][3]);
  pa[2] = RoundPair(p[2 * kk + 1][0], p[2 * kk + 1][1]);
  pa[3] = RoundPair(p[2 * kk + 1][2], p[2 * kk + 1][3]);
}

// One warp: o += P B, P [16, kCols] in C fragments, rounded to bf16 (RoundToFragment); B as
// AccumulateColumns's.
template <int kCols, int D>
__device__ __forceinline__ void AccumulateInRegisters(const float (&p)[kCols / 8][4], const bf16* b,
                                                      int ld, const MmaLane& ln,
                                                      float (&o)[D / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < kCols / 16; ++kk) {
    Bf16x2 pa[4];
    RoundToFragment<kCols>(p, kk, pa);
    AccumulateColumns<D>(pa, b, ld, kk, ln, o);
  }
}

// One warp: o += dS B, the warp's 16 rows of dS [16, kCols] read from shared memory (bf16, rows
// ld_ds apart) straight into A fragments: the operands AccumulateInRegisters forms from the same
// values in C fragments, bit for bit, and the same products in the same order.
template <int kCols, int D>
__device__ __forceinline__ void AccumulateStored(const bf16* ds, int ld_ds, const bf16* b, int ld,
                                                 const MmaLane& ln, float (&o)[D / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < kCols / 16; ++kk) {
    const bf16* row = ds + ln.g * ld_ds + kk * 16 + 2 * ln.t;
    const Bf16x2 pa[4] = {LoadPair(row), LoadPair(row + 8 * ld_ds), LoadPair(row + 8),
                          LoadPair(row + 8 * ld_ds + 8)};
    AccumulateColumns<D>(pa, b, ld, kk, ln, o);
  }
}

// o[n][2i], o[n][2i + 1] * factor[i] to columns 8 n + 2t, 8 n + 2t + 1 of row i's output
// `dst[i]` (the row's start, stored as A; nullptr: the row is past the sequence, nothing
// written).
template <int D, typename A>
__device__ __forceinline__ void StoreRows(const float (&o)[D / 8][4], const MmaLane& ln,
                                          A* const (&dst)[2], const float (&factor)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (dst[i] == nullptr) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      dst[i][8 * n + 2 * ln.t] = FromFloat<A>(o[n][2 * i] * factor[i]);
      dst[i][8 * n + 2 * ln.t + 1] = FromFloat<A>(o[n][2 * i + 1] * factor[i]);
    }
  }
}

template <int D>
__device__ __forceinline__ void ZeroAccumulators(float (&o)[D / 8][4]) {
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
}

// The dropout mask of a warp's [16, kCols] tile as bits in shared memory ([16][kCols / 32]
// words, the warp's own), drawn a group of 4 consecutive element indices per Philox call as
// DropoutCursor walks them, then read by (row, column) in fragment order.
template <int kCols>
struct DropoutBits {
  static constexpr int kWords = kCols / 32;  // a row's
  uint32_t* bits;

  __device__ bool Keep(int row, int col) const {
    return ((bits[row * kWords + (col >> 5)] >> (col & 31)) & 1u) != 0;
  }
  // Rows are queries q0 .., columns keys k0 .. (forward, dQ): indices run along a row, so a lane
  // draws whole words (32 keys of one query).
  __device__ void FillByRows(const AttentionShape& a, int bh, int q0, int k0) const {
    for (int w = threadIdx.x % kWarpSize; w < kFrag * kWords; w += kWarpSize) {
      const int q = q0 + w / kWords, c0 = k0 + (w % kWords) * 32;
      DropoutCursor cursor;
      uint32_t word = 0;
      for (int c = 0; c < 32 && q < a.S && c0 + c < a.S; ++c) {
        if (cursor.Keep(a, a.ProbIndex(bh, q, c0 + c))) word |= 1u << c;
      }
      bits[w] = word;
    }
    __syncwarp();
  }
  // Rows are keys k0 .., columns queries q0 .. (dK/dV): indices run down a column, so lane c
  // walks the 16 keys of query column c and a ballot gathers each row's word.
  __device__ void FillByColumns(const AttentionShape& a, int bh, int k0, int q0) const {
    const int lane = threadIdx.x % kWarpSize;
    for (int w = 0; w < kWords; ++w) {
      const int q = q0 + 32 * w + lane;
      DropoutCursor cursor;
      for (int r = 0; r < kFrag; ++r) {
        const bool keep = q < a.S && k0 + r < a.S && cursor.Keep(a, a.ProbIndex(bh, q, k0 + r));
        const uint32_t word = __ballot_sync(0xffffffffu, keep);
        if (lane == 0) bits[r * kWords + w] = word;
      }
    }
    __syncwarp();
  }
};

// The online softmax step of the forward for one key tile (keys k0 ..), in place: scores
// masked and scaled, the rows' running max m moved to m', o rescaled by exp(m - m') by row,
// and s replaced by exp(S - m') with dropout applied; l (this lane's columns only) sums them
// before dropout, as the materialised path's softmax.
template <int kCols, int D>
__device__ __forceinline__ void SoftmaxStep(const AttentionShape& a, int k0, const int32_t* kseg,
                                            const MmaLane& ln, const LaneRows& rows,
                                            const DropoutBits<kCols>& keep, float (&m)[2],
                                            float (&l)[2], float (&s)[kCols / 8][4],
                                            float (&o)[D / 8][4]) {
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = e / 2, c = 8 * j + 2 * ln.t + e % 2;
      const bool masked = a.Masked(kseg[c], rows.segment[i], rows.index[i], k0 + c);
      s[j][e] = masked ? -INFINITY : a.scale * s[j][e];
      tile_max[i] = fmaxf(tile_max[i], s[j][e]);
    }
  }
  float alpha[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 1));
    tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 2));
    const float m_new = fmaxf(m[i], tile_max[i]);
    alpha[i] = m[i] == m_new ? 1.0f : expf(m[i] - m_new);  // m = -inf, m' finite: 0
    m[i] = m_new;
    l[i] *= alpha[i];
  }
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e / 2];
  }
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = e / 2, c = 8 * j + 2 * ln.t + e % 2;
      float p = s[j][e] == -INFINITY ? 0.0f : expf(s[j][e] - m[i]);
      l[i] += p;
      if (a.dropout) p = keep.Keep(ln.g + 8 * i, c) ? p * a.keep_scale : 0.0f;
      s[j][e] = p;
    }
  }
}

// The key tiles of kCols keys that a block of queries q0 .. q0 + kRows - 1 visits: all, or
// (causal) up to the one holding its last query; later key tiles are fully masked.
template <int kRows, int kCols>
__device__ __forceinline__ int KeyTiles(const AttentionShape& a, int q0) {
  const int key_tiles = (a.S + kCols - 1) / kCols;
  return a.causal ? min(key_tiles, (q0 + kRows - 1) / kCols + 1) : key_tiles;
}

// Forward, flash-attention 2's loop: warp w owns queries q0 + 16 w .. + 15, whose softmax state
// (running max m, running sum l) and output accumulator O stay in registers across the key
// tiles; per tile, S = Q K^T, the online softmax step, O += dropout(P) V. Then O / l and
// lse = m + log l (+inf for a row with every key masked).
template <typename Sh, typename A>
__device__ __forceinline__ void ForwardInRegisters(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLd = Sh::kLdH;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  int32_t* kseg = carve.Take<int32_t>(kCols * sizeof(int32_t));
  uint32_t* bits = carve.Take<uint32_t>(Sh::kWarpBitsBytes);

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, wq0 = q0 + warp * kFrag;
  const MmaLane ln = ThisMmaLane();
  const LaneRows rows(a, b, wq0, ln);
  const DropoutBits<kCols> keep{bits + warp * kFrag * DropoutBits<kCols>::kWords};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[D / 8][4];
  ZeroAccumulators<D>(o);
  LoadTile<D, kRows, kThreads>(a.q, a, b, h, q0, qs);  // visible after the loop's first barrier

  const int tiles = KeyTiles<kRows, kCols>(a, q0);
  for (int kt = 0; kt < tiles; ++kt) {
    const int k0 = kt * kCols;
    __syncthreads();  // the previous tile's K, V and dropout bits are no longer read
    LoadTile<D, kCols, kThreads>(a.k, a, b, h, k0, ks);
    LoadTile<D, kCols, kThreads>(a.v, a, b, h, k0, vs);
    LoadSegments<kCols, kThreads>(a, b, k0, kseg);
    __syncthreads();
    float s[kCols / 8][4];
    RowsTimesRows<kCols, D>(qs + warp * kFrag * kLd, ks, kLd, ln, s);
    if (a.dropout) keep.FillByRows(a, bh, wq0, k0);
    SoftmaxStep<kCols, D>(a, k0, kseg, ln, rows, keep, m, l, s, o);
    AccumulateInRegisters<kCols, D>(s, vs, kLd, ln, o);
  }

  A* dst[2];
  float inv[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    const bool in = rows.index[i] < a.S;
    inv[i] = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    dst[i] = in ? a.o + a.Row(b, h, rows.index[i], D) : nullptr;
    if (in && ln.t == 0) {
      a.lse_out[static_cast<int64_t>(bh) * a.S + rows.index[i]] =
          l[i] > 0.0f ? m[i] + logf(l[i]) : INFINITY;
    }
  }
  StoreRows<D, A>(o, ln, dst, inv);
}

// A dQ warp's accumulators to a.dq: the lane's queries wq0 + g and wq0 + g + 8 (none past S).
template <int D, typename A>
__device__ __forceinline__ void StoreDq(const AttentionTensors<A>& a, int b, int h, int wq0,
                                        const MmaLane& ln, const float (&dq)[D / 8][4]) {
  A* dst[2];
  const float one[2] = {1.0f, 1.0f};
  for (int i = 0; i < 2; ++i) {
    const int q = wq0 + ln.g + 8 * i;
    dst[i] = q < a.S ? a.dq + a.Row(b, h, q, D) : nullptr;
  }
  StoreRows<D, A>(dq, ln, dst, one);
}

// dQ: warp w owns queries q0 + 16 w .. + 15 and loops over key tiles: S = Q K^T and
// dP = dO V^T, dS = scale P (dropout(dP) - delta) with P = exp(scale S - lse), dQ += dS K.
template <typename Sh, typename A>
__device__ __forceinline__ void DqInRegisters(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLd = Sh::kLdH;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* qs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* dos = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  int32_t* kseg = carve.Take<int32_t>(kCols * sizeof(int32_t));
  uint32_t* bits = carve.Take<uint32_t>(Sh::kWarpBitsBytes);

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, wq0 = q0 + warp * kFrag;
  const MmaLane ln = ThisMmaLane();
  const LaneRows rows(a, b, wq0, ln);
  const DropoutBits<kCols> keep{bits + warp * kFrag * DropoutBits<kCols>::kWords};
  float lse[2], delta[2];
  for (int i = 0; i < 2; ++i) {
    const int64_t stat = static_cast<int64_t>(bh) * a.S + rows.index[i];
    lse[i] = rows.index[i] < a.S ? a.lse[stat] : INFINITY;
    delta[i] = rows.index[i] < a.S ? a.delta[stat] : 0.0f;
  }
  float dq[D / 8][4];
  ZeroAccumulators<D>(dq);
  LoadTile<D, kRows, kThreads>(a.q, a, b, h, q0, qs);
  LoadTile<D, kRows, kThreads>(a.dout, a, b, h, q0, dos);

  const int tiles = KeyTiles<kRows, kCols>(a, q0);
  for (int kt = 0; kt < tiles; ++kt) {
    const int k0 = kt * kCols;
    __syncthreads();
    LoadTile<D, kCols, kThreads>(a.k, a, b, h, k0, ks);
    LoadTile<D, kCols, kThreads>(a.v, a, b, h, k0, vs);
    LoadSegments<kCols, kThreads>(a, b, k0, kseg);
    __syncthreads();
    float s[kCols / 8][4], dp[kCols / 8][4];
    RowsTimesRows<kCols, D>(qs + warp * kFrag * kLd, ks, kLd, ln, s);
    RowsTimesRows<kCols, D>(dos + warp * kFrag * kLd, vs, kLd, ln, dp);
    if (a.dropout) keep.FillByRows(a, bh, wq0, k0);
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e / 2, c = 8 * j + 2 * ln.t + e % 2;
        float ds = 0.0f;
        if (!a.Masked(kseg[c], rows.segment[i], rows.index[i], k0 + c)) {
          const float p = expf(a.scale * s[j][e] - lse[i]);
          float d = dp[j][e];
          if (a.dropout) d = keep.Keep(ln.g + 8 * i, c) ? d * a.keep_scale : 0.0f;
          ds = a.scale * p * (d - delta[i]);
        }
        s[j][e] = ds;
      }
    }
    AccumulateInRegisters<kCols, D>(s, ks, kLd, ln, dq);
  }
  StoreDq<D, A>(a, b, h, wq0, ln, dq);
}

// dQ from the stored dS (the launcher's path for short sequences): warp w owns queries
// q0 + 16 w .. + 15 and loops over the key tiles DqInRegisters visits, loading K and the block's
// tile of dS (a.ds, which the dK/dV kernel wrote with kStoreDs: zeros where masked, every entry
// these tiles read; attention.cu holds the tile shapes to that), dQ += dS K. No S, P, dP, no
// V, dO, lse, delta or dropout mask; the same products in the same order as DqInRegisters.
template <typename Sh, typename A>
__device__ __forceinline__ void DqFromStoredInRegisters(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLd = Sh::kLdH, kLdP = Sh::kLdP;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* ks = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* dss = carve.Take<bf16>(Sh::kDqStoredBytes - Sh::kLoopHalfBytes);

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, q0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, wq0 = q0 + warp * kFrag;
  const MmaLane ln = ThisMmaLane();
  float dq[D / 8][4];
  ZeroAccumulators<D>(dq);
  const int tiles = KeyTiles<kRows, kCols>(a, q0);
  for (int kt = 0; kt < tiles; ++kt) {
    const int k0 = kt * kCols;
    __syncthreads();
    LoadTile<D, kCols, kThreads>(a.k, a, b, h, k0, ks);
    LoadScoreGradientTile<kRows, kCols, kThreads>(a.ds, a, bh, q0, k0, dss);
    __syncthreads();
    AccumulateStored<kCols, D>(dss + warp * kFrag * kLdP, kLdP, ks, kLd, ln, dq);
  }
  StoreDq<D, A>(a, b, h, wq0, ln, dq);
}

// A dK/dV warp's dS^T [16 keys, kCols queries] (C fragments: rows keys.index, columns queries
// i0 ..) into head bh's [S, S] dS (row: query, column: key) as the bf16 A fragments of the dK
// product (RoundToFragment): exactly the operand values, which the dQ kernel's product would
// form from its own dS; keys or queries past S are not stored. Offsets within the head in 32
// bits: the stored-dS path takes S <= kAttentionStoredDsMaxSequence (launch.h), so S * S < 2^31.
template <int kCols>
__device__ __forceinline__ void StoreScoreGradients(const float (&ds_t)[kCols / 8][4],
                                                    const AttentionShape& a, bf16* ds, int bh,
                                                    int i0, const LaneRows& keys,
                                                    const MmaLane& ln) {
  bf16* head = ds + static_cast<int64_t>(bh) * a.S * a.S;
#pragma unroll
  for (int kk = 0; kk < kCols / 16; ++kk) {
    Bf16x2 pa[4];
    RoundToFragment<kCols>(ds_t, kk, pa);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int q = i0 + 16 * kk + 8 * (i / 2) + 2 * ln.t, k = keys.index[i % 2];
      if (k >= a.S) continue;
      if (q < a.S) head[q * a.S + k] = pa[i].x;
      if (q + 1 < a.S) head[(q + 1) * a.S + k] = pa[i].y;
    }
  }
}

// dK, dV: warp w owns keys j0 + 16 w .. + 15 and loops over query tiles: S^T = K Q^T and
// dP^T = V dO^T, P^T = exp(scale S^T - lse), dV += dropout(P)^T dO,
// dS^T = scale P^T (dropout(dP)^T - delta), dK += dS^T Q. kStoreDs: dS also to a.ds, masked
// entries of the visited tiles as zeros (StoreScoreGradients).
template <typename Sh, typename A, bool kStoreDs>
__device__ __forceinline__ void DkvInRegisters(const AttentionTensors<A>& a) {
  constexpr int D = Sh::kD, kRows = Sh::kRows, kCols = Sh::kCols, kThreads = Sh::kThreads;
  constexpr int kLd = Sh::kLdH;
  HR_DYNAMIC_SHARED(smem);
  SharedCarver carve(smem);
  bf16* ks = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* vs = carve.Take<bf16>(Sh::kOwnHalfBytes);
  bf16* qs = carve.Take<bf16>(Sh::kLoopHalfBytes);
  bf16* dos = carve.Take<bf16>(Sh::kLoopHalfBytes);
  float* lse_s = carve.Take<float>(kCols * sizeof(float));
  float* delta_s = carve.Take<float>(kCols * sizeof(float));
  int32_t* qseg_s = carve.Take<int32_t>(kCols * sizeof(int32_t));
  uint32_t* bits = carve.Take<uint32_t>(Sh::kWarpBitsBytes);

  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, j0 = blockIdx.y * kRows;
  const int warp = threadIdx.x / kWarpSize, kw0 = j0 + warp * kFrag;
  const MmaLane ln = ThisMmaLane();
  const LaneRows keys(a, b, kw0, ln);
  const DropoutBits<kCols> keep{bits + warp * kFrag * DropoutBits<kCols>::kWords};
  float dk[D / 8][4], dv[D / 8][4];
  ZeroAccumulators<D>(dk);
  ZeroAccumulators<D>(dv);
  LoadTile<D, kRows, kThreads>(a.k, a, b, h, j0, ks);
  LoadTile<D, kRows, kThreads>(a.v, a, b, h, j0, vs);

  const int query_tiles = (a.S + kCols - 1) / kCols;
  // Causal: queries before the block's first key see none of its keys.
  for (int it = a.causal ? j0 / kCols : 0; it < query_tiles; ++it) {
    const int i0 = it * kCols;
    __syncthreads();
    LoadQueryTile<D, kCols, kThreads>(a, bh, b, h, i0, qs, dos, lse_s, delta_s, qseg_s);
    __syncthreads();
    float pt[kCols / 8][4], dst[kCols / 8][4];  // S^T then P^T; dP^T then dS^T
    RowsTimesRows<kCols, D>(ks + warp * kFrag * kLd, qs, kLd, ln, pt);
    RowsTimesRows<kCols, D>(vs + warp * kFrag * kLd, dos, kLd, ln, dst);
    if (a.dropout) keep.FillByColumns(a, bh, kw0, i0);
#pragma unroll
    for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e / 2, c = 8 * j + 2 * ln.t + e % 2;
        float p = 0.0f, ds = 0.0f;
        if (!a.Masked(keys.segment[i], qseg_s[c], i0 + c, keys.index[i])) {
          p = expf(a.scale * pt[j][e] - lse_s[c]);
          const bool kept = !a.dropout || keep.Keep(ln.g + 8 * i, c);
          const float scale = a.dropout ? a.keep_scale : 1.0f;
          ds = a.scale * p * ((kept ? dst[j][e] * scale : 0.0f) - delta_s[c]);
          p = kept ? p * scale : 0.0f;
        }
        pt[j][e] = p;
        dst[j][e] = ds;
      }
    }
    AccumulateInRegisters<kCols, D>(pt, dos, kLd, ln, dv);
    AccumulateInRegisters<kCols, D>(dst, qs, kLd, ln, dk);
    // After the products, so that P^T's registers are free again.
    if constexpr (kStoreDs) StoreScoreGradients<kCols>(dst, a, a.ds, bh, i0, keys, ln);
  }
  A* dk_rows[2];
  A* dv_rows[2];
  const float one[2] = {1.0f, 1.0f};
  for (int i = 0; i < 2; ++i) {
    const bool in = keys.index[i] < a.S;
    dk_rows[i] = in ? a.dk + a.Row(b, h, keys.index[i], D) : nullptr;
    dv_rows[i] = in ? a.dv + a.Row(b, h, keys.index[i], D) : nullptr;
  }
  StoreRows<D, A>(dk, ln, dk_rows, one);
  StoreRows<D, A>(dv, ln, dv_rows, one);
}

}  // namespace headroom::cuda::attention_kernels

#endif  // HEADROOM_KERNELS_CUDA_ATTENTION_MMA_CUH_
