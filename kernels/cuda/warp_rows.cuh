// Device helpers of the kernels that give each row to one warp (kernels/cuda/layernorm_kernels.cuh,
// embedding_kernels.cuh): ElementDropout, Dropout's mask element by element or four at a time
// (one Philox call per group, kernels/philox.h), and the packed rows: a row held in its warp's
// registers as fp32, moved as 16-byte packs of the activation storage type (kernels/cuda/
// storage.cuh), normalised by NormalizeRow. No kernels here (a __global__ function in a header
// that two .cu files include would be defined twice), only what both families' kernels share;
// tests/kernels/cuda_emulation.h runs it on the CPU with them.
#ifndef HEADROOM_KERNELS_CUDA_WARP_ROWS_CUH_
#define HEADROOM_KERNELS_CUDA_WARP_ROWS_CUH_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/philox.h"

namespace headroom::cuda {

// Threads of a block of the row kernels, and its rows (warps).
constexpr int kRowBlock = 256;
constexpr int kRowsPerRowBlock = kRowBlock / kWarpSize;

// Dropout's mask applied to one element at a time (Apply: the scalar row kernels, whose lane's
// elements are 32 apart, so each has its own Philox call) or to whole groups of four (ApplyGroups:
// the packed kernels, one call per group, as kernels/cuda/dropout.cu).
struct ElementDropout {
  bool active = false;  // rate > 0
  uint32_t threshold = 0;
  float keep_scale = 1;
  uint64_t seed = 0, step = 0;
  uint32_t layer = 0, site = 0;

  __device__ float Apply(float v, int64_t i) const {
    if (!active) return v;
    const Philox4x32 w = DropoutWords(seed, step, layer, site, static_cast<uint64_t>(i) >> 2);
    const int j = static_cast<int>(i & 3);
    const uint32_t word = j == 0 ? w.v[0] : j == 1 ? w.v[1] : j == 2 ? w.v[2] : w.v[3];
    // __fmul_rn: a product never contracted into an FMA with the add that follows (Dropout
    // rounds it on its own).
    return word >= threshold ? __fmul_rn(v, keep_scale) : 0.0f;
  }

  // The mask on kN consecutive elements first .. first + kN - 1 (first a multiple of 4): one
  // Philox call per group of four, as Dropout.
  template <int kN>
  __device__ void ApplyGroups(float (&v)[kN], int64_t first) const {
    static_assert(kN % 4 == 0, "whole Philox groups");
    if (!active) return;
#pragma unroll
    for (int g = 0; g < kN / 4; ++g) {
      const Philox4x32 w =
          DropoutWords(seed, step, layer, site, (static_cast<uint64_t>(first) >> 2) + g);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[4 * g + j] = w.v[j] >= threshold ? __fmul_rn(v[4 * g + j], keep_scale) : 0.0f;
      }
    }
  }
};

inline ElementDropout MakeElementDropout(float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                         uint32_t site) {
  ElementDropout d;
  d.active = rate > 0.0f;
  d.threshold = DropoutThreshold(rate);
  // rate >= 1 drops everything (Dropout fills zeros): a keep scale of 0 zeroes the rare word
  // that still passes the threshold.
  d.keep_scale = rate >= 1.0f ? 0.0f : static_cast<float>(1.0 / (1.0 - static_cast<double>(rate)));
  d.seed = seed;
  d.step = step;
  d.layer = layer;
  d.site = site;
  return d;
}

// ---- Packed rows: 16-byte vector loads, activations stored as float or bf16 -------------------
// The packed kernels (layernorm_kernels.cuh, embedding_kernels.cuh) hold a row of `cols` elements
// in its warp's registers as fp32, in chunks of kN elements (storage.cuh's Chunk of the kernel's
// storage types: 8 when a tensor is bf16, else 4; cols a multiple of kN; rows and parameters
// 16-byte aligned): lane l holds chunks l, l + 32, ..., l + 32 (kPacks - 1), i.e. columns
// ChunkColumn(k, l) .. + kN - 1; chunks past the row's end are left out. Each tensor is read and
// written in its own storage type with whole 16-byte vector accesses (a bf16 chunk is one, an
// fp32 one two), all arithmetic and statistics are fp32, and a bf16 store rounds to nearest
// even. The dropout masks are Dropout's, one Philox call per four elements.

// kPacks for rows of `cols` elements in chunks of `pack_size`: the smallest of 1, 2, 4, 8 that
// holds the row; 0 when cols is no multiple of pack_size or the row is wider than 8 chunks per
// lane (2048 columns in chunks of 8, 1024 in chunks of 4).
inline int PacksPerLane(int cols, int pack_size) {
  if (cols <= 0 || cols % pack_size != 0) return 0;
  const int64_t packs = CeilDiv(CeilDiv(cols, pack_size), kWarpSize);
  for (int k = 1; k <= 8; k *= 2) {
    if (packs <= k) return k;
  }
  return 0;
}

// Host side: why rows of `cols` elements in packs of `pack_size` at these pointers do not fit the
// packed kernels (PacksPerLane is 0, or a pointer is not 16-byte aligned); empty when they do.
inline std::string PackedShapeError(int cols, int pack_size,
                                    std::initializer_list<const void*> pointers) {
  if (PacksPerLane(cols, pack_size) == 0) {
    return "cols = " + std::to_string(cols) + " is no positive multiple of " +
           std::to_string(pack_size) + " up to " + std::to_string(8 * kWarpSize * pack_size);
  }
  if (!Aligned16(pointers)) return "a row pointer is not 16-byte aligned";
  return "";
}

// Calls f(std::integral_constant<int, kPacks>{}) for kPacks = packs (1, 2, 4 or 8); false for any
// other value.
template <typename F>
bool WithPacksPerLane(int packs, F&& f) {
  switch (packs) {
    case 1:
      f(std::integral_constant<int, 1>{});
      return true;
    case 2:
      f(std::integral_constant<int, 2>{});
      return true;
    case 4:
      f(std::integral_constant<int, 4>{});
      return true;
    case 8:
      f(std::integral_constant<int, 8>{});
      return true;
    default:
      return false;
  }
}

// The first column of lane `lane`'s k-th chunk of kN.
template <int kN>
__device__ __forceinline__ int ChunkColumn(int k, int lane) {
  return (lane + k * kWarpSize) * kN;
}

// Normalises the fp32 row v (as held above) of row `row`: mean and rstd as
// layernorm_kernels::layernorm_forward_kernel (two passes in float over the lane's elements, then
// warp sums), y = drop((v - mean) * rstd * gamma + beta) stored as Y; `drop` is the embedding's
// output dropout (inactive for a plain LayerNorm). Lane 0 writes mean[row] and rstd[row].
template <typename Y, int kN, int kPacks>
__device__ __forceinline__ void NormalizeRow(const float (&v)[kPacks][kN], int64_t row, int cols,
                                             int lane, const float* __restrict__ gamma,
                                             const float* __restrict__ beta, float eps,
                                             const ElementDropout& drop, Y* __restrict__ y,
                                             float* __restrict__ mean, float* __restrict__ rstd) {
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (ChunkColumn<kN>(k, lane) >= cols) break;
#pragma unroll
    for (int j = 0; j < kN; ++j) sum += v[k][j];
  }
  const float mu = WarpSum(sum) / cols;
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (ChunkColumn<kN>(k, lane) >= cols) break;
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      const float d = v[k][j] - mu;
      sq += d * d;
    }
  }
  const float rs = 1.0f / sqrtf(WarpSum(sq) / cols + eps);
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int c = ChunkColumn<kN>(k, lane);
    if (c >= cols) break;
    float g[kN], b[kN], out[kN];
    LoadElements(gamma + c, g);
    LoadElements(beta + c, b);
#pragma unroll
    for (int j = 0; j < kN; ++j) out[j] = (v[k][j] - mu) * rs * g[j] + b[j];
    drop.ApplyGroups(out, row * cols + c);
    StoreElements(y + row * cols + c, out);
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_WARP_ROWS_CUH_
