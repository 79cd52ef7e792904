// Fused attention (Ops::AttentionForward / AttentionBackward) on tensor cores; the CPU twin is
// kernels/cpu/attention.cc, the device code kernels/cuda/attention_kernels.cuh.
//
// Flash-attention-2 structure (Dao 2023) for sequences of any length and head sizes 16, 32, 64,
// 128 and 256, with the products on bf16 tensor cores (fp32 accumulation) and every softmax
// statistic in fp32. A block owns a tile of rows (64, or 32 for dK/dV at D = 256), 16 per warp,
// so the softmax state, the probabilities and the accumulators of a row are private to one warp
// and only the shared operand tiles need block barriers:
//
//   forward   block = (b, h, 64 queries); loops over 64-key tiles: S = Q K^T, online softmax
//             (running max m and sum l per row), O = O * exp(m_old - m_new) + dropout(P) V.
//             Writes O / l and lse = m + log l (+inf for a row with every key masked).
//   dK, dV    block = (b, h, keys); loops over query tiles: S^T = K Q^T, dP^T = V dO^T,
//             P = exp(scale * S - lse), dV += dropout(P)^T dO, dS = scale * P * (dropout(dP) -
//             delta), dK += dS^T Q.
//   dQ        block = (b, h, 64 queries); loops over key tiles: dQ += dS K, recomputing S, dP.
// dQ has its own pass instead of atomics so that the result is deterministic, as every other op
// of this backend. delta = rowsum(dO * O) is a small kernel of its own. The tile sizes per head
// size are attention_kernels::Shapes.
//
// Stored dS (head sizes up to 128, S up to 512: AttentionStoredDsBytes in launch.h): the dK/dV
// kernel also writes dS, rounded to bf16 as its own dK product's operand (scale included), into
// a [B, H, S, S] bf16 workspace (row: query, column: key) from the caller's DeviceScratch:
// B * H * S * S * 2 bytes, 64 MiB for BERT-large (B = 128, H = 16, S = 128), 256 MiB at S = 512
// and B = 32, at most 1 GiB (beyond that, recompute). Every tile it visits is written, masked
// entries as zeros; the dQ kernel visits exactly those tiles (causal: the key tiles up to its
// queries', all written since its tiles are as wide as a dK/dV block) and runs only
// dQ += dS K, reading dS into A fragments from shared memory: no S, P, dP, no V, dO, lse, delta
// or dropout draws. The operands and the order of the products are those of the recomputing
// kernel, whose dS is the same fp32 value (S^T = K Q^T sums the same products in the same
// order as S = Q K^T), so under the emulation the two dQ are equal bit for bit
// (tests/kernels/attention_emulation_test.cc); on the GPU, as far as mma.sync sums its
// products in the same order whichever operand holds Q.
//
// Operands are converted to bf16 when a tile is loaded into shared memory (q, k, v, dout stay
// fp32 in global memory, as the rest of the model). Up to D = 128 (attention_mma.cuh) every
// product is an mma.sync (kernels/cuda/mma.cuh), whose documented fragment layout keeps a
// tile's S, P, dP and dS and the accumulators O, dQ, dK, dV in registers across the loop: the
// online softmax rescales O by row in place, and a product's fp32 result, rounded pair by pair,
// is the next product's A operand. At D = 256 those would spill; there (attention_wmma.cuh) they
// pass through shared memory and the products run on WMMA fragments. ptxas (sm_90, nvcc 13.0),
// registers per thread, no spills anywhere:
//            d_p   16   32   64   128   256
//   forward       164  162  127   168    72
//   dQ            153  166  164   238    72
//   dK/dV         164  166  178   242    72
//   stored dS:
//   dQ             48   48   95   126     -
//   dK/dV         184  181  238   251     -
// The bf16-storage instances (q, k, v, out, dout, dq, dk, dv stored as bf16: the launchers with
// __nv_bfloat16 tensors) are within 10 registers of these (dK/dV at d_p 256: 94; stored-dS dQ:
// 40, 56, 72, 127), no spills except 16 bytes in dK/dV at d_p 64 (ptxas holds it to 168
// registers; the stored-dS instance takes 232 and spills nothing).
// With 4-warp blocks, blocks an SM by registers at d_p 64 / 128: forward 4 / 3, dQ 3 / 2,
// dK/dV 2 / 2; stored dS: dQ 5 / 4, dK/dV 2 / 2 (and 2 at d_p 16 and 32, where the recomputing
// dK/dV has 3). Shared memory allows more (at 128: forward 51, dQ 70, dK/dV 53 KiB; stored-dS
// dQ 26 KiB). The dropout mask is Dropout's (kernels/philox.h) by element index
// ((b * H + h) * S + q) * S + k; each warp draws its tile's mask with one Philox call per four
// consecutive indices into bits in shared memory, which the lanes then read in fragment order.
//
// Other head sizes record an error (the model then keeps the materialised path:
// Ops::PrefersFusedAttention). Tiles load as float4 when q, k, v and dout are 16-byte aligned,
// element by element otherwise. Shared memory per block is at most 192 KiB (dQ at D = 256).
#include <string>

#include "kernels/cuda/attention_kernels.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

namespace headroom::cuda {
namespace {

using namespace attention_kernels;  // NOLINT(build/namespaces): this file's own kernels

// Raises a kernel's dynamic shared-memory limit to `bytes` on the current device. Called before
// every launch (a cheap host call): caching it would miss a second device in the process and
// would turn one failure into silently skipped launches.
template <typename Kernel>
bool AllowSharedMemory(Kernel kernel, size_t bytes, const LaunchContext& ctx) {
  return HR_CUDA_CHECK(*ctx.err,
                       cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
}

// One block per (batch, head) and kRows rows of the kernel's shape.
template <typename Sh>
dim3 Grid(const AttentionShape& a) {
  return dim3(static_cast<unsigned>(static_cast<int64_t>(a.B) * a.H),
              static_cast<unsigned>(CeilDiv(a.S, Sh::kRows)));
}

// The H100's (sm_90) opt-in limit of dynamic shared memory per block.
constexpr size_t kMaxSharedBytes = 227 * 1024;

// How many blocks of `bytes` of dynamic shared memory an H100 SM holds: 228 KiB an SM, 1 KiB of
// it reserved per block (the CUDA C++ Programming Guide's table for compute capability 9.0).
constexpr int BlocksPerSm(size_t bytes) { return static_cast<int>(228 * 1024 / (bytes + 1024)); }

// The backward's occupancy at the paper's head sizes, as the register counts above allow it (a
// kernel whose shared memory grew past it would halve its warps an SM without a word): two
// 4-warp blocks an SM for d_p = 64 and 128.
static_assert(BlocksPerSm(Shapes<64>::Dkv::kDkvBytes) >= 2 &&
                  BlocksPerSm(Shapes<64>::Dq::kDqBytes) >= 2 &&
                  BlocksPerSm(Shapes<128>::Dkv::kDkvBytes) >= 2 &&
                  BlocksPerSm(Shapes<128>::Dq::kDqBytes) >= 2,
              "attention backward: fewer than two blocks an SM at head size 64 or 128");

template <int D, typename A>
void Forward(const AttentionTensors<A>& a, const LaunchContext& ctx) {
  using Sh = typename Shapes<D>::Forward;
  static_assert(Sh::kForwardBytes <= kMaxSharedBytes, "forward tiles exceed shared memory");
  if (!AllowSharedMemory(attention_forward_kernel<Sh, A>, Sh::kForwardBytes, ctx)) return;
  attention_forward_kernel<Sh, A><<<Grid<Sh>(a), Sh::kThreads, Sh::kForwardBytes, ctx.stream>>>(a);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

// The dK/dV kernel, then the dQ kernel; kStored (a.ds set, head sizes up to 128): the dK/dV
// kernel also stores dS and the dQ kernel reads it instead of recomputing S and dP.
template <int D, typename A, bool kStored>
void BackwardKernels(const AttentionTensors<A>& a, const LaunchContext& ctx) {
  using Dq = typename Shapes<D>::Dq;
  using Dkv = typename Shapes<D>::Dkv;
  constexpr size_t kDqBytes = kStored ? Dq::kDqStoredBytes : Dq::kDqBytes;
  static_assert(kDqBytes <= kMaxSharedBytes, "dQ tiles exceed shared memory");
  static_assert(Dkv::kDkvBytes <= kMaxSharedBytes, "dK/dV tiles exceed shared memory");
  // The dQ kernel reads dS of the key tiles it visits; the dK/dV kernel must have written them:
  // with square dQ tiles and dK/dV blocks of a dQ tile's keys, a (causal) dQ block of queries
  // from q0 reads keys of blocks from j0 <= q0, and that dK/dV block's query loop starts at or
  // before j0.
  static_assert(!kStored || (Dq::kRows == Dq::kCols && Dkv::kRows == Dq::kCols),
                "stored dS: the dQ pass would read tiles the dK/dV pass did not write");
  auto dq_kernel = attention_dq_kernel<Dq, A, kStored>;
  auto dkv_kernel = attention_dkv_kernel<Dkv, A, kStored>;
  if (!AllowSharedMemory(dq_kernel, kDqBytes, ctx) ||
      !AllowSharedMemory(dkv_kernel, Dkv::kDkvBytes, ctx)) {
    return;
  }
  dkv_kernel<<<Grid<Dkv>(a), Dkv::kThreads, Dkv::kDkvBytes, ctx.stream>>>(a);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
  dq_kernel<<<Grid<Dq>(a), Dq::kThreads, kDqBytes, ctx.stream>>>(a);
  HR_CUDA_CHECK(*ctx.err, cudaGetLastError());
}

template <int D, typename A>
void Backward(const AttentionTensors<A>& a, const LaunchContext& ctx) {
  if constexpr (Shapes<D>::Dq::kInRegisters) {
    if (a.ds != nullptr) {
      BackwardKernels<D, A, true>(a, ctx);
      return;
    }
  }
  BackwardKernels<D, A, false>(a, ctx);
}

// Fills the fields shared by forward and backward; false (recorded) for an unsupported call.
template <typename A>
bool MakeArgs(const A* q, const A* k, const A* v, int B, int S, int H, int D, float scale,
              const int32_t* segments, bool causal, float rate, uint64_t seed, uint64_t step,
              uint32_t layer, uint32_t site, const LaunchContext& ctx, AttentionTensors<A>* a) {
  if (static_cast<int64_t>(B) * H > 0x7FFFFFFF || CeilDiv(S, 32) > 65535) {
    ctx.err->Record("fused attention",
                    "B * H must be below 2^31 and S at most 65535 * 32 (grid limits)", __FILE__,
                    __LINE__);
    return false;
  }
  if (!FusedAttentionSupports(D)) {
    ctx.err->Record("fused attention",
                    "head size " + std::to_string(D) + " is not supported (16, 32, 64, 128 or 256)",
                    __FILE__, __LINE__);
    return false;
  }
  for (const A* p : {q, k, v}) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) a->aligned = false;
  }
  a->q = q;
  a->k = k;
  a->v = v;
  a->B = B;
  a->S = S;
  a->H = H;
  a->scale = scale;
  a->segments = segments;
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

template <typename A>
void AttentionForward(const A* q, const A* k, const A* v, int B, int S, int H, int D, float scale,
                      const int32_t* segments, bool causal, float rate, uint64_t seed,
                      uint64_t step, uint32_t layer, uint32_t site, A* out, float* lse,
                      const LaunchContext& ctx) {
  if (B <= 0 || S <= 0 || H <= 0) return;
  AttentionTensors<A> a;
  if (!MakeArgs(q, k, v, B, S, H, D, scale, segments, causal, rate, seed, step, layer, site, ctx,
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
    case 128:
      Forward<128>(a, ctx);
      break;
    default:
      Forward<256>(a, ctx);
      break;
  }
}

template <typename A>
void AttentionBackward(const A* q, const A* k, const A* v, const A* out, const A* dout,
                       const float* lse, int B, int S, int H, int D, float scale,
                       const int32_t* segments, bool causal, float rate, uint64_t seed,
                       uint64_t step, uint32_t layer, uint32_t site, A* dq, A* dk, A* dv,
                       float* delta, DeviceScratch& scratch, const LaunchContext& ctx) {
  if (B <= 0 || S <= 0 || H <= 0) return;
  AttentionTensors<A> a;
  if (!MakeArgs(q, k, v, B, S, H, D, scale, segments, causal, rate, seed, step, layer, site, ctx,
                &a)) {
    return;
  }
  if (reinterpret_cast<uintptr_t>(dout) % 16 != 0) a.aligned = false;
  if (const int64_t bytes = AttentionStoredDsBytes(B, S, H, D); bytes > 0) {
    a.ds = static_cast<__nv_bfloat16*>(scratch.Ensure(static_cast<size_t>(bytes), ctx));
    if (a.ds == nullptr) return;  // recorded
  }
  a.out = out;
  a.dout = dout;
  a.lse = lse;
  a.delta = delta;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  const int64_t rows = static_cast<int64_t>(B) * S * H;
  attention_delta_kernel<A>
      <<<GridStrideBlocks(rows * kWarpSize, 256), 256, 0, ctx.stream>>>(a, D, delta);
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
    case 128:
      Backward<128>(a, ctx);
      break;
    default:
      Backward<256>(a, ctx);
      break;
  }
}

}  // namespace

bool FusedAttentionSupports(int head_size) {
  return head_size == 16 || head_size == 32 || head_size == 64 || head_size == 128 ||
         head_size == 256;
}

int64_t AttentionStoredDsBytes(int B, int S, int H, int D) {
  if (B <= 0 || S <= 0 || H <= 0 || D > 128 || S > kAttentionStoredDsMaxSequence) return 0;
  const int64_t bytes = int64_t{B} * H * S * S * static_cast<int64_t>(sizeof(__nv_bfloat16));
  return bytes <= kAttentionStoredDsMaxBytes ? bytes : 0;
}

void LaunchAttentionForward(const float* q, const float* k, const float* v, int B, int S, int H,
                            int D, float scale, const int32_t* segments, bool causal, float rate,
                            uint64_t seed, uint64_t step, uint32_t layer, uint32_t site, float* out,
                            float* lse, const LaunchContext& ctx) {
  AttentionForward(q, k, v, B, S, H, D, scale, segments, causal, rate, seed, step, layer, site, out,
                   lse, ctx);
}
void LaunchAttentionForward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                            int B, int S, int H, int D, float scale, const int32_t* segments,
                            bool causal, float rate, uint64_t seed, uint64_t step, uint32_t layer,
                            uint32_t site, __nv_bfloat16* out, float* lse,
                            const LaunchContext& ctx) {
  AttentionForward(q, k, v, B, S, H, D, scale, segments, causal, rate, seed, step, layer, site, out,
                   lse, ctx);
}

void LaunchAttentionBackward(const float* q, const float* k, const float* v, const float* out,
                             const float* dout, const float* lse, int B, int S, int H, int D,
                             float scale, const int32_t* segments, bool causal, float rate,
                             uint64_t seed, uint64_t step, uint32_t layer, uint32_t site, float* dq,
                             float* dk, float* dv, float* delta, DeviceScratch& scratch,
                             const LaunchContext& ctx) {
  AttentionBackward(q, k, v, out, dout, lse, B, S, H, D, scale, segments, causal, rate, seed, step,
                    layer, site, dq, dk, dv, delta, scratch, ctx);
}
void LaunchAttentionBackward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                             const __nv_bfloat16* out, const __nv_bfloat16* dout, const float* lse,
                             int B, int S, int H, int D, float scale, const int32_t* segments,
                             bool causal, float rate, uint64_t seed, uint64_t step, uint32_t layer,
                             uint32_t site, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                             float* delta, DeviceScratch& scratch, const LaunchContext& ctx) {
  AttentionBackward(q, k, v, out, dout, lse, B, S, H, D, scale, segments, causal, rate, seed, step,
                    layer, site, dq, dk, dv, delta, scratch, ctx);
}

}  // namespace headroom::cuda
