// CpuBf16Ops: the CPU backend of Ops<float, Bf16> (kernels/mixed_ops.h), the op set of a model
// whose activations are stored in bf16 (`train.precision: "bf16"` with --device=cpu), with real
// 2-byte storage for the A (Bf16) buffers.
//
// It computes exactly what the bf16 twin, Bf16ActivationOps (kernels/bf16_activation_ops.h),
// computes, bit for bit, because it runs the twin:
//  - every Ops<float> op (the T forms) is forwarded to a twin it owns, so a T buffer is rounded
//    exactly where the twin rounds it (the residual stream by Bf16ActivationOptions, the T forms
//    of the generic ops always; see the twin's comment);
//  - every A overload widens its Bf16 inputs into float scratch (exact), runs the twin's float
//    op on the scratch (fp32 arithmetic, its bf16-role outputs rounded to nearest even, the bf16
//    GPU step's stores), and narrows each A output back into its Bf16 buffer (exact, since the
//    twin rounded it already). T inputs and outputs are the caller's buffers themselves.
// So a Model<float, Bf16> on this backend and a Model<float> on the twin see the same bits.
//
// One deviation from mixed_ops.h's "a T output is not rounded" is the default, for that parity:
// the two A overloads with a T output that the twin rounds (Gemm into T and ScatterAddRows into
// T, the gradient of the residual stream; "T~" in the bf16 design note) round it as the twin
// does under ResidualGradientStores::kRoundedAsTwin, and leave it fp32 under kFp32.
//
// Aliasing and accumulation keep the Ops contracts: an output that may alias an input is
// computed in place on the input's scratch and narrowed once; accumulating outputs (T parameter
// gradients, ScatterAddRows' dst, a GEMM's C with beta != 0) start from what they hold. A GEMM
// reads and writes only the elements its leading dimensions address (the rows x cols spans),
// never the padding columns of C.
//
// The scratch is grow-only host memory owned by the object (up to eight buffers of the largest
// operand seen), not counted by any memory report. Not thread-safe, as every Ops.
//
// Example:
//   CpuOps<float> cpu;
//   auto ops = CpuBf16Ops::Create(&cpu).value();
//   Bf16* x = static_cast<Bf16*>(ops->AllocBytes(n * sizeof(Bf16)));
//   ops->ActivationForward(Activation::kGelu, x, x, n);   // rounded to bf16 once, in place
#ifndef HEADROOM_KERNELS_CPU_BF16_OPS_H_
#define HEADROOM_KERNELS_CPU_BF16_OPS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/bf16.h"
#include "kernels/bf16_activation_ops.h"
#include "kernels/forwarding_ops.h"
#include "kernels/mixed_ops.h"

namespace headroom {

// How Gemm into T and ScatterAddRows into T (the residual stream's gradient) store their output.
enum class ResidualGradientStores {
  kRoundedAsTwin,  // rounded to bf16 after the op, as Bf16ActivationOps does: bit parity with it
  kFp32,           // not rounded, as mixed_ops.h specifies for T outputs
};

class CpuBf16Ops final : public Ops<float, Bf16> {
  using T = float;  // the element type HEADROOM_OPS_COMPUTE's signatures use
  using A = Bf16;

 public:
  // InvalidArgument unless `inner` (not owned, outliving this object) is a CPU backend. `options`
  // configure the twin (the residual stream's rounding).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CpuBf16Ops>> Create(
      Ops<float>* inner, const Bf16ActivationOptions& options = {},
      ResidualGradientStores residual_gradients = ResidualGradientStores::kRoundedAsTwin);

  DeviceKind device() const override { return twin_->device(); }
  absl::Status status() const override { return twin_->status(); }
  bool PrefersFusedAttention(int head_size) const override {
    return twin_->PrefersFusedAttention(head_size);
  }
  int64_t AttentionBackwardScratchBytes(int B, int S, int H, int D) const override {
    return twin_->AttentionBackwardScratchBytes(B, S, H, D);
  }
  int64_t PeakAllocatedBytes() const override { return twin_->PeakAllocatedBytes(); }

  // The Ops<float> ops, forwarded to the twin.
#define HEADROOM_CPU_BF16_FORWARD(ret, op, params, args) \
  ret op params override { return twin_->op args; }
  HEADROOM_OPS_MEMORY(HEADROOM_CPU_BF16_FORWARD)
  HEADROOM_OPS_COMPUTE(HEADROOM_CPU_BF16_FORWARD)
#undef HEADROOM_CPU_BF16_FORWARD

  // The A overloads (contracts in kernels/mixed_ops.h and kernels/ops.h).
  void Convert(const T* src, A* dst, int64_t n) override;
  void Convert(const A* src, T* dst, int64_t n) override;
  void Scale(A* x, int64_t n, T alpha) override;
  void Add(const T* a, const A* b, T* out, int64_t n) override;
  void Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda, const A* b,
            int ldb, T beta, A* c, int ldc) override;
  void Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda, const A* b,
            int ldb, T beta, T* c, int ldc) override;
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda,
                          int64_t stride_a, const A* b, int ldb, int64_t stride_b, T beta, A* c,
                          int ldc, int64_t stride_c, int batch) override;
  void Linear(const A* x, const A* w, const A* bias, int rows, int out, int in, A* y) override;
  void LinearBackwardWeights(const A* dy, const A* x, int rows, int out, int in, T* dw,
                             T* dbias) override;
  void PermuteHeads(const A* x, A* y, int B, int S, int H, int D, bool inverse) override;
  void LayerNormForward(const A* x, const T* gamma, const T* beta, int64_t rows, int cols, T eps,
                        A* y, T* mean, T* rstd) override;
  void LayerNormForward(const T* x, const T* gamma, const T* beta, int64_t rows, int cols, T eps,
                        A* y, T* mean, T* rstd) override;
  void LayerNormBackward(const A* dy, const A* x, const T* gamma, const T* mean, const T* rstd,
                         int64_t rows, int cols, A* dx, T* dgamma, T* dbeta) override;
  void LayerNormBackward(const A* dy, const T* x, const T* gamma, const T* mean, const T* rstd,
                         int64_t rows, int cols, A* dx, T* dgamma, T* dbeta) override;
  void LayerNormInputFromOutput(const A* y, const T* gamma, const T* beta, const T* mean,
                                const T* rstd, int64_t rows, int cols, T* x) override;
  void ResidualLayerNormForward(const A* x, const A* sub, float rate, const DropoutKey& key,
                                const T* gamma, const T* beta, int64_t rows, int cols, T eps,
                                T* sum, A* y, T* mean, T* rstd) override;
  void ResidualLayerNormBackward(const T* dy, const T* sum, const T* gamma, const T* mean,
                                 const T* rstd, int64_t rows, int cols, float rate,
                                 const DropoutKey& key, T* dsum, A* dsub, T* dgamma,
                                 T* dbeta) override;
  void ActivationForward(Activation act, const A* x, A* y, int64_t n) override;
  void ActivationBackward(Activation act, const A* x, const A* dy, A* dx, int64_t n) override;
  void TanhForward(const A* x, A* y, int64_t n) override;
  void TanhBackward(const A* y, const A* dy, A* dx, int64_t n) override;
  void SoftmaxForward(const A* scores, A* probs, int B, int H, int Sq, int Sk, T scale,
                      const int32_t* segments, bool causal) override;
  void SoftmaxBackward(const A* probs, const A* dprobs, A* dscores, int64_t rows, int Sk,
                       T scale) override;
  void AttentionForward(const A* q, const A* k, const A* v, int B, int S, int H, int D, T scale,
                        const int32_t* segments, bool causal, float dropout_rate,
                        const DropoutKey& key, A* out, T* lse) override;
  void AttentionBackward(const A* q, const A* k, const A* v, const A* out, const A* dout,
                         const T* lse, int B, int S, int H, int D, T scale, const int32_t* segments,
                         bool causal, float dropout_rate, const DropoutKey& key, A* dq, A* dk,
                         A* dv, T* delta) override;
  void Dropout(const A* x, A* y, int64_t n, float rate, const DropoutKey& key) override;
  void Dropout(const T* x, A* y, int64_t n, float rate, const DropoutKey& key) override;
  void GatherRows(const A* src, const int32_t* idx, int64_t m, int d, A* dst) override;
  void ScatterAddRows(const A* src, const int32_t* idx, int64_t m, int d, T* dst) override;
  void SoftmaxCrossEntropy(const A* logits, const int32_t* labels, const T* weights, int64_t rows,
                           int V, T* losses, A* dlogits, T grad_scale) override;
  void LabelSmoothedCrossEntropy(const A* logits, const int32_t* labels, const T* weights,
                                 int64_t rows, int V, int ld, T label_smoothing, T* losses,
                                 A* dlogits, T grad_scale) override;
  void EmbeddingLayerNormForward(const int32_t* ids, const T* word, T word_scale,
                                 const int32_t* positions, const T* pos_table,
                                 const int32_t* segments, const T* type_table, int64_t rows,
                                 int cols, const T* gamma, const T* beta, T eps, float rate,
                                 const DropoutKey& key, T* sum, A* y, T* mean, T* rstd) override;
  void AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, A* mirror) override;
  void Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch,
            A* mirror) override;

 private:
  static constexpr int kSlots = 8;  // AttentionBackward: five inputs, three outputs

  CpuBf16Ops(std::unique_ptr<Bf16ActivationOps> twin, ResidualGradientStores residual_gradients);

  // Scratch slot `slot`, at least n floats (contents unspecified).
  float* Scratch(int slot, int64_t n);
  // Scratch slot `slot` holding x[0 .. n) widened.
  float* Widen(int slot, const A* x, int64_t n);
  // The (batched) matrix op(X) of rows x cols with leading dimension ld (stored cols x rows when
  // transposed), `batch` of them `stride` apart, widened into scratch in its own layout: the
  // returned pointer replaces X in the call. `read` false leaves the scratch unwidened (a C that
  // beta == 0 ignores).
  float* WidenMatrix(int slot, const A* x, Trans t, int rows, int cols, int ld, int64_t stride,
                     int batch, bool read = true);
  // Stores the rows x cols matrices at `from` (layout as WidenMatrix's) into `to`, rounding.
  static void NarrowMatrix(const float* from, int rows, int cols, int ld, int64_t stride, int batch,
                           A* to);
  // LayerNormBackward with dy and dx in A and x already in float.
  void LayerNormBackwardInA(const A* dy, const T* x, const T* gamma, const T* mean, const T* rstd,
                            int64_t rows, int cols, A* dx, T* dgamma, T* dbeta);
  // An op whose output may alias its one A input: x widened into scratch s, f(s) computes the
  // output in place there, and s is narrowed into y.
  template <typename F>
  void InPlace(const A* x, A* y, int64_t n, F f);
  // The same for an op whose output may alias its second A input: f(s0, s1) writes s1.
  template <typename F>
  void InPlaceOnSecond(const A* x0, const A* x1, A* y, int64_t n, F f);
  // Where the A overloads with a T output that the twin rounds run.
  Ops<float>* ResidualGradientOps() const;

  std::unique_ptr<Bf16ActivationOps> twin_;
  ResidualGradientStores residual_gradients_;
  std::vector<float> scratch_[kSlots];
};

// dst[i] = Bf16(src[i]) (nearest, ties to even) and its inverse, widening exactly.
void NarrowToBf16(const float* src, Bf16* dst, int64_t n);
void WidenFromBf16(const Bf16* src, float* dst, int64_t n);

}  // namespace headroom

#endif  // HEADROOM_KERNELS_CPU_BF16_OPS_H_
