// The kernel launchers of the CUDA backend: one host function per op, defined in the .cu file of
// its kernel family, called by CudaOps (cuda_ops.cc).
//
// Launchers take plain pointers and sizes (the semantics are those of the op of the same name in
// kernels/ops.h), pick block and grid sizes, launch on `ctx.stream` and check the launch into
// `ctx.err`. Every launcher returns without launching when there is nothing to do (a grid of
// size 0 is an error in CUDA). This header is plain C++ without Abseil so that nvcc compiles the
// .cu files without it.
//
// Scratch memory is passed in: fixed-size buffers made at CudaOps construction (`partials`,
// `colsum_scratch`) and one DeviceScratch that grows when an op first needs more (the row
// scatter-add's sort, the attention backward's dS), so a step allocates nothing once every shape
// has been seen.
#ifndef HEADROOM_KERNELS_CUDA_LAUNCH_H_
#define HEADROOM_KERNELS_CUDA_LAUNCH_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/adam_params.h"
#include "kernels/cuda/cuda_check.h"

namespace headroom::cuda {

// Where a launcher enqueues its work and records failures.
struct LaunchContext {
  cudaStream_t stream = nullptr;
  ErrorSink* err = nullptr;
};

// Device memory that grows on demand and never shrinks. Growth synchronises the stream, frees
// the old buffer and allocates max(bytes, 2 * capacity), so the number of growths is
// logarithmic and, once every shape of a training step has been seen, zero.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  ~DeviceScratch();

  // A buffer of at least `bytes` (256-byte aligned), or nullptr after recording an error.
  void* Ensure(size_t bytes, const LaunchContext& ctx);
  size_t capacity() const { return capacity_; }
  int growths() const { return growths_; }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
  int growths_ = 0;
};

// Blocks of the first pass of Dot; `partials` buffers hold this many floats.
inline constexpr int kDotMaxBlocks = 1024;
// Floats in the fixed column-sum scratch (BiasBackward, LayerNorm parameter gradients).
inline constexpr int64_t kColumnSumScratchFloats = int64_t{1} << 20;
// The most partial rows (row chunks, blocks) the column sums add in their final pass.
inline constexpr int kMaxColumnSumPartials = 1024;

// ---- elementwise.cu -----------------------------------------------------------------------
void LaunchFill(float* x, int64_t n, float value, const LaunchContext& ctx);
void LaunchScale(float* x, int64_t n, float alpha, const LaunchContext& ctx);
void LaunchAdd(const float* a, const float* b, float* out, int64_t n, const LaunchContext& ctx);
void LaunchAxpy(float alpha, const float* x, float* y, int64_t n, const LaunchContext& ctx);
void LaunchAddBias(float* x, const float* bias, int64_t rows, int cols, const LaunchContext& ctx);
// C_i = beta * C_i for the rows x cols blocks (leading dimension ldc) of `batch` matrices
// stride_c apart; beta == 0 writes exact zeros (the K == 0 / alpha == 0 GEMM).
void LaunchScaleMatrices(float* C, int rows, int cols, int ldc, int64_t stride_c, int batch,
                         float beta, const LaunchContext& ctx);

// ---- reduce.cu ----------------------------------------------------------------------------
// *out = sum a[i] * b[i]; `partials` holds kDotMaxBlocks floats.
void LaunchDot(const float* a, const float* b, int64_t n, float* out, float* partials,
               const LaunchContext& ctx);
// Column sums of a rows x cols matrix, added to the outputs: dsum[c] += sum_r dy[r, c], and,
// when x != nullptr, dxhat_sum[c] += sum_r dy[r, c] * (x[r, c] - mean[r]) * rstd[r]. Rows are
// summed in a fixed order (deterministic). `scratch` holds kColumnSumScratchFloats floats.
void LaunchColumnSums(const float* dy, const float* x, const float* mean, const float* rstd,
                      int64_t rows, int cols, float* dsum, float* dxhat_sum, float* scratch,
                      const LaunchContext& ctx);
// The final pass of the column sums: dsum[c] += sum_k part_sum[k * cols + c] and
// dxhat_sum[c] += sum_k part_xhat[k * cols + c] over k < partials, in k order (deterministic).
void LaunchColumnSumsOfPartials(const float* part_sum, const float* part_xhat, int partials,
                                int cols, float* dsum, float* dxhat_sum, const LaunchContext& ctx);

// ---- permute.cu ---------------------------------------------------------------------------
void LaunchPermuteHeads(const float* x, float* y, int B, int S, int H, int D, bool inverse,
                        const LaunchContext& ctx);

// ---- layernorm.cu -------------------------------------------------------------------------
void LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                            int cols, float eps, float* y, float* mean, float* rstd,
                            const LaunchContext& ctx);
void LaunchLayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                             const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                             float* dbeta, float* colsum_scratch, const LaunchContext& ctx);

void LaunchLayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, int64_t rows, int cols,
                                    float* x, const LaunchContext& ctx);
// sum = x + dropout(sub) (Dropout's mask), then LayerNormForward(sum); bit-identical to
// Dropout + Add + LayerNormForward.
void LaunchResidualLayerNormForward(const float* x, const float* sub, float rate, uint64_t seed,
                                    uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, float* sum, float* y, float* mean, float* rstd,
                                    const LaunchContext& ctx);
// LayerNormBackward into dsum, and dsub = dropout(dsum) when rate > 0.
void LaunchResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                     const float* mean, const float* rstd, int64_t rows, int cols,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* dsum, float* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch, const LaunchContext& ctx);

// ---- activation.cu ------------------------------------------------------------------------
void LaunchGeluForward(const float* x, float* y, int64_t n, const LaunchContext& ctx);
void LaunchGeluBackward(const float* x, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx);
void LaunchGeluTanhForward(const float* x, float* y, int64_t n, const LaunchContext& ctx);
void LaunchGeluTanhBackward(const float* x, const float* dy, float* dx, int64_t n,
                            const LaunchContext& ctx);
void LaunchReluForward(const float* x, float* y, int64_t n, const LaunchContext& ctx);
void LaunchReluBackward(const float* x, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx);
void LaunchTanhForward(const float* x, float* y, int64_t n, const LaunchContext& ctx);
void LaunchTanhBackward(const float* y, const float* dy, float* dx, int64_t n,
                        const LaunchContext& ctx);

// ---- softmax.cu ---------------------------------------------------------------------------
void LaunchSoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk,
                          float scale, const int32_t* segments, bool causal,
                          const LaunchContext& ctx);
void LaunchSoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                           int Sk, float scale, const LaunchContext& ctx);

// ---- attention.cu -------------------------------------------------------------------------
// Fused attention (Ops::AttentionForward / AttentionBackward); bf16 tensor-core products with
// fp32 accumulation whatever the GEMM precision. `delta` holds B * H * S floats.
//
// The backward's dQ pass reads dS from a workspace that its dK/dV pass writes, instead of
// recomputing S and dP, where AttentionStoredDsBytes is not 0 (head size up to 128, S up to
// kAttentionStoredDsMaxSequence, the workspace at most kAttentionStoredDsMaxBytes); else it
// recomputes them. The workspace is B * H * S * S bf16, 2 bytes each (BERT-large, B = 128,
// H = 16, S = 128: 64 MiB; S = 512 at B = 32: 256 MiB), taken from `scratch` (which grows to it
// the first time and is reused). Either way the result is deterministic, and both paths form
// the same dS and run the same products in the same order (bit for bit the same dQ under the
// emulation; on the GPU, as far as mma.sync sums S^T = K Q^T as it sums S = Q K^T).
inline constexpr int kAttentionStoredDsMaxSequence = 512;
inline constexpr int64_t kAttentionStoredDsMaxBytes = int64_t{1} << 30;
bool FusedAttentionSupports(int head_size);
// Bytes of the backward's dS workspace for these shapes (0: the dQ pass recomputes).
int64_t AttentionStoredDsBytes(int B, int S, int H, int D);
void LaunchAttentionForward(const float* q, const float* k, const float* v, int B, int S, int H,
                            int D, float scale, const int32_t* segments, bool causal, float rate,
                            uint64_t seed, uint64_t step, uint32_t layer, uint32_t site, float* out,
                            float* lse, const LaunchContext& ctx);
void LaunchAttentionBackward(const float* q, const float* k, const float* v, const float* out,
                             const float* dout, const float* lse, int B, int S, int H, int D,
                             float scale, const int32_t* segments, bool causal, float rate,
                             uint64_t seed, uint64_t step, uint32_t layer, uint32_t site, float* dq,
                             float* dk, float* dv, float* delta, DeviceScratch& scratch,
                             const LaunchContext& ctx);

// ---- dropout.cu ---------------------------------------------------------------------------
void LaunchDropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step,
                   uint32_t layer, uint32_t site, const LaunchContext& ctx);

// ---- embedding.cu -------------------------------------------------------------------------
// out[i, :] (+)= table[ids[i], :]; also GatherRows.
void LaunchEmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                            bool accumulate, const LaunchContext& ctx);
// dst[idx[i], :] += src[i, :], rows with equal idx added in increasing i (EmbeddingBackward and
// ScatterAddRows).
void LaunchScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst,
                          DeviceScratch& scratch, const LaunchContext& ctx);

// ---- cross_entropy.cu ---------------------------------------------------------------------
// label_smoothing: tensor2tensor's smoothed target (kernels/ops.h LabelSmoothedCrossEntropy);
// 0 is the one-hot label. Rows are ld >= V apart; columns V .. ld-1 are padding (zero gradient).
void LaunchSoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                               int64_t rows, int V, int ld, float label_smoothing, float* losses,
                               float* dlogits, float grad_scale, const LaunchContext& ctx);

// ---- optimizer.cu -------------------------------------------------------------------------
void LaunchAdamW(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                 const LaunchContext& ctx);
// `u` holds n floats; `norms` 2 floats; `partials` kDotMaxBlocks floats.
void LaunchLamb(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                float* u, float* norms, float* partials, const LaunchContext& ctx);

// ---- bf16 activation storage (train.precision bf16) ----------------------------------------
// The same ops over activations stored as __nv_bfloat16: read widened to fp32, computed in fp32,
// stored rounded to nearest even. Parameters, their gradients, the optimizer moments, LayerNorm's
// mean and rstd and the losses stay fp32. CudaOps' Ops<float, Bf16> half (cuda_bf16_ops.cc) calls
// them; none has run on a GPU yet.
//
// LayerNorm (layernorm.cu, the packed kernels of layernorm_kernels.cuh): cols a multiple of 8 up
// to 2048 and every pointer 16-byte aligned, else an error is recorded and nothing runs. The
// residual forward normalises the fp32 sum x + dropout(sub) and stores its rounding in `sum`.
// Backward is one pass over dy and x (dgamma, dbeta accumulate, deterministic, through
// `colsum_scratch` of kColumnSumScratchFloats floats); dx may alias dy.
void LaunchLayerNormForward(const __nv_bfloat16* x, const float* gamma, const float* beta,
                            int64_t rows, int cols, float eps, __nv_bfloat16* y, float* mean,
                            float* rstd, const LaunchContext& ctx);
void LaunchResidualLayerNormForward(const __nv_bfloat16* x, const __nv_bfloat16* sub, float rate,
                                    uint64_t seed, uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, __nv_bfloat16* sum, __nv_bfloat16* y, float* mean,
                                    float* rstd, const LaunchContext& ctx);
void LaunchLayerNormBackward(const __nv_bfloat16* dy, const __nv_bfloat16* x, const float* gamma,
                             const float* mean, const float* rstd, int64_t rows, int cols,
                             __nv_bfloat16* dx, float* dgamma, float* dbeta, float* colsum_scratch,
                             const LaunchContext& ctx);
void LaunchResidualLayerNormBackward(const __nv_bfloat16* dy, const __nv_bfloat16* sum,
                                     const float* gamma, const float* mean, const float* rstd,
                                     int64_t rows, int cols, float rate, uint64_t seed,
                                     uint64_t step, uint32_t layer, uint32_t site,
                                     __nv_bfloat16* dsum, __nv_bfloat16* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch, const LaunchContext& ctx);
// The same two with the residual stream in fp32 (train.fp32_residual, Bf16ActivationOps'
// default): forward stores the sum in fp32 (x, sub and y bf16); backward reads fp32 dy and sum
// and writes fp32 dsum (which may alias dy) and bf16 dsub.
void LaunchResidualLayerNormForward(const __nv_bfloat16* x, const __nv_bfloat16* sub, float rate,
                                    uint64_t seed, uint64_t step, uint32_t layer, uint32_t site,
                                    const float* gamma, const float* beta, int64_t rows, int cols,
                                    float eps, float* sum, __nv_bfloat16* y, float* mean,
                                    float* rstd, const LaunchContext& ctx);
void LaunchResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                     const float* mean, const float* rstd, int64_t rows, int cols,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* dsum, __nv_bfloat16* dsub, float* dgamma,
                                     float* dbeta, float* colsum_scratch, const LaunchContext& ctx);
// Pre-LN with bf16 activations: the LayerNorm of the fp32 residual stream into bf16 y, and its
// backward from bf16 dy into bf16 dx (dgamma, dbeta accumulate; scratch as above); and the
// post-LN LayerNorm input recomputed into fp32 from the bf16 output.
void LaunchLayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                            int cols, float eps, __nv_bfloat16* y, float* mean, float* rstd,
                            const LaunchContext& ctx);
void LaunchLayerNormBackward(const __nv_bfloat16* dy, const float* x, const float* gamma,
                             const float* mean, const float* rstd, int64_t rows, int cols,
                             __nv_bfloat16* dx, float* dgamma, float* dbeta, float* colsum_scratch,
                             const LaunchContext& ctx);
void LaunchLayerNormInputFromOutput(const __nv_bfloat16* y, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, int64_t rows, int cols,
                                    float* x, const LaunchContext& ctx);
// The packed kernels' shape check, shared by their launchers: kPacks (1, 2, 4 or 8) for rows of
// `cols` in packs of `pack_size`, or 0 after recording in ctx.err why the shape or a pointer does
// not fit.
int PacksOrRecord(const char* launcher, int cols, int pack_size,
                  std::initializer_list<const void*> pointers, const LaunchContext& ctx);

// Activations (activation.cu), elementwise; in place allowed as the float launchers.
void LaunchGeluForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                       const LaunchContext& ctx);
void LaunchGeluBackward(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, const LaunchContext& ctx);
void LaunchGeluTanhForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                           const LaunchContext& ctx);
void LaunchGeluTanhBackward(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                            int64_t n, const LaunchContext& ctx);
void LaunchReluForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                       const LaunchContext& ctx);
void LaunchReluBackward(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, const LaunchContext& ctx);
void LaunchTanhForward(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n,
                       const LaunchContext& ctx);
void LaunchTanhBackward(const __nv_bfloat16* y, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, const LaunchContext& ctx);

// The model's input block (embedding.cu): sum = word[ids] * word_scale + pos[positions]
// (+ type[segments] when segments is non-null), from fp32 tables, summed in fp32; with gamma
// non-null `sum` receives it (fp32: the residual stream) and y = dropout(LayerNorm(sum)) with
// mean and rstd, with gamma null (pre-LN) y = dropout(sum) (sum, mean, rstd unused). Dropout's
// mask under (seed, step, layer, site) over the [rows, cols] output; rate 0 drops nothing. cols
// and pointers as the bf16 LayerNorm's. Post-LN with a bf16 y, and pre-LN with an fp32 y.
void LaunchEmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                                     const int32_t* positions, const float* pos_table,
                                     const int32_t* segments, const float* type_table, int64_t rows,
                                     int cols, const float* gamma, const float* beta, float eps,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* sum, __nv_bfloat16* y, float* mean,
                                     float* rstd, const LaunchContext& ctx);
void LaunchEmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                                     const int32_t* positions, const float* pos_table,
                                     const int32_t* segments, const float* type_table, int64_t rows,
                                     int cols, const float* gamma, const float* beta, float eps,
                                     float rate, uint64_t seed, uint64_t step, uint32_t layer,
                                     uint32_t site, float* sum, float* y, float* mean, float* rstd,
                                     const LaunchContext& ctx);

// Cross-entropy in place over bf16 logits (cross_entropy.cu): fp32 losses, the bf16 gradient.
void LaunchSoftmaxCrossEntropy(const __nv_bfloat16* logits, const int32_t* labels,
                               const float* weights, int64_t rows, int V, int ld,
                               float label_smoothing, float* losses, __nv_bfloat16* dlogits,
                               float grad_scale, const LaunchContext& ctx);

// Storage conversion and elementwise ops of bf16 activations (elementwise.cu), as the float
// ones: Convert rounds to nearest even or widens; Scale in place; Add of the fp32 residual stream
// and a bf16 sublayer output into fp32 (out may alias a).
void LaunchConvert(const float* x, __nv_bfloat16* y, int64_t n, const LaunchContext& ctx);
void LaunchConvert(const __nv_bfloat16* x, float* y, int64_t n, const LaunchContext& ctx);
void LaunchScale(__nv_bfloat16* x, int64_t n, float alpha, const LaunchContext& ctx);
void LaunchAddBias(__nv_bfloat16* x, const float* bias, int64_t rows, int cols,
                   const LaunchContext& ctx);
void LaunchAdd(const float* a, const __nv_bfloat16* b, float* out, int64_t n,
               const LaunchContext& ctx);
// Dropout into bf16 (dropout.cu), the float launcher's mask and scale: from bf16 (y may alias
// x) or from fp32 (rate 0 converts).
void LaunchDropout(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n, float rate, uint64_t seed,
                   uint64_t step, uint32_t layer, uint32_t site, const LaunchContext& ctx);
void LaunchDropout(const float* x, __nv_bfloat16* y, int64_t n, float rate, uint64_t seed,
                   uint64_t step, uint32_t layer, uint32_t site, const LaunchContext& ctx);
// The attention softmax of bf16 scores (softmax.cu), statistics in fp32; in place as the float
// launchers.
void LaunchSoftmaxForward(const __nv_bfloat16* scores, __nv_bfloat16* probs, int B, int H, int Sq,
                          int Sk, float scale, const int32_t* segments, bool causal,
                          const LaunchContext& ctx);
void LaunchSoftmaxBackward(const __nv_bfloat16* probs, const __nv_bfloat16* dprobs,
                           __nv_bfloat16* dscores, int64_t rows, int Sk, float scale,
                           const LaunchContext& ctx);
// The fused attention over bf16 q, k, v (and out, dout), writing bf16 out (dq, dk, dv), the
// statistics fp32 (attention.cu): the float launchers' contract; the tiles are loaded as they are
// (the float launchers round them to bf16 on loading), so on bf16 inputs the forward's out is the
// float launcher's rounded to bf16.
void LaunchAttentionForward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                            int B, int S, int H, int D, float scale, const int32_t* segments,
                            bool causal, float rate, uint64_t seed, uint64_t step, uint32_t layer,
                            uint32_t site, __nv_bfloat16* out, float* lse,
                            const LaunchContext& ctx);
void LaunchAttentionBackward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                             const __nv_bfloat16* out, const __nv_bfloat16* dout, const float* lse,
                             int B, int S, int H, int D, float scale, const int32_t* segments,
                             bool causal, float rate, uint64_t seed, uint64_t step, uint32_t layer,
                             uint32_t site, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                             float* delta, DeviceScratch& scratch, const LaunchContext& ctx);
// Head split and merge of bf16 activations (permute.cu).
void LaunchPermuteHeads(const __nv_bfloat16* x, __nv_bfloat16* y, int B, int S, int H, int D,
                        bool inverse, const LaunchContext& ctx);
// GatherRows of bf16 rows, and ScatterAddRows of bf16 rows into an fp32 gradient (embedding.cu;
// the same deterministic order as the float launcher).
void LaunchGatherRows(const __nv_bfloat16* src, const int32_t* idx, int64_t m, int d,
                      __nv_bfloat16* dst, const LaunchContext& ctx);
void LaunchScatterAddRows(const __nv_bfloat16* src, const int32_t* idx, int64_t m, int d,
                          float* dst, DeviceScratch& scratch, const LaunchContext& ctx);

// The optimizers updating the fp32 master weights and writing `mirror`, their bf16 copy (round to
// nearest even), in the same pass (optimizer.cu); mirror null writes none.
void LaunchAdamW(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                 __nv_bfloat16* mirror, const LaunchContext& ctx);
void LaunchLamb(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p,
                float* u, float* norms, float* partials, __nv_bfloat16* mirror,
                const LaunchContext& ctx);

// The bias gradient from bf16 dy (reduce.cu): dsum[c] += sum_r dy[r, c] in fp32, deterministic;
// `scratch` as LaunchColumnSums'.
void LaunchColumnSums(const __nv_bfloat16* dy, int64_t rows, int cols, float* dsum, float* scratch,
                      const LaunchContext& ctx);

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_LAUNCH_H_
