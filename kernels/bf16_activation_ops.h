// Bf16ActivationOps: the CPU twin of bf16 activation storage (`train.precision: "bf16"` with
// --device=cpu). It wraps a CPU Ops<float> and rounds, to the nearest bf16 (ties to even,
// base/bf16.h), every value that the bf16 GPU step stores in bf16, and nothing else, so a model
// run on it computes what `Model<float>` with activations stored in bf16 computes:
//
//   bf16 (rounded after the op that writes it):
//     - every GEMM operand: activations as stored, and the weights as read through a bf16
//       mirror (rounding a weight at each read is what a mirror rewritten after every optimizer
//       update holds); products accumulate in fp32 and the output is rounded once, after the
//       bias, itself read through the mirror (cuBLASLt's epilogue adds the bf16 bias in fp32);
//     - every activation and activation gradient an op writes: Q/K/V and the attention context,
//       scores and probabilities of the materialised path, LayerNorm, GELU, tanh and dropout
//       outputs, gathered rows, the logits and their gradient (in place);
//   fp32 (never rounded):
//     - parameters, their gradients (LinearBackwardWeights, BiasBackward, LayerNorm's dgamma
//       and dbeta, EmbeddingBackward accumulate in fp32), optimizer moments (AdamW, Lamb);
//     - statistics: LayerNorm mean and rstd, attention's log-sum-exp and delta, losses, Dot;
//     - the residual stream, when Bf16ActivationOptions::fp32_residual is set: the outputs of
//       Add (the pre-LN residual adds and the gradient sums of the skip paths), the `sum` and
//       `dsum` of the post-LN residual LayerNorm, and the embedding sum (EmbeddingForward and
//       Scale: the pre-LN h_0, the post-LN embedding LayerNorm's input, which the fused bf16
//       embedding kernel sums in fp32 before normalising); with a bf16 stream these round after
//       every op, where the fused kernel rounds the three tables' sum once.
//
// Every op computes in fp32 on its (already bf16) inputs, as a CUDA kernel reading bf16 and
// computing in registers does; rounding the op's outputs is the store. The CPU's fused
// attention keeps its probabilities in fp32 between the two products, where a tensor-core
// kernel rounds P to bf16 before P.V: that one rounding is the only place the twin is more
// precise than the GPU step. Values are bf16, their containers float: the twin proves the
// numerics, not the memory (a bf16 model on the CPU uses the fp32 model's memory).
//
// Only the model runs on the wrapper. The optimizer, the gradient reduction and the trainer's
// own arithmetic (norms, scaling, zeroing) run on the inner backend, whose ops write fp32
// (trainer/training_backend.h sets this up). Through the wrapper, an op that writes a
// parameter or gradient buffer by its role (the list above) writes fp32; a generic op (Fill,
// Scale, Add, Axpy, Gemm, Dropout, ...) rounds its output, so do not point one at a gradient.
//
// Example:
//   CpuOps<float> cpu;
//   auto ops = Bf16ActivationOps::Create(&cpu, {.fp32_residual = true}).value();
//   auto model = Model<float>::Create(config, ops.get(), limits).value();
//   Optimizer<float> optimizer(cpu, model->layout(), ...);   // fp32 master weights
#ifndef HEADROOM_KERNELS_BF16_ACTIVATION_OPS_H_
#define HEADROOM_KERNELS_BF16_ACTIVATION_OPS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/forwarding_ops.h"
#include "kernels/ops.h"

namespace headroom {

struct Bf16ActivationOptions {
  // Keep the residual stream in fp32 (see the file comment): train.fp32_residual, whose default
  // (true) is the one measured closer to float64 (bench/RESULTS.md, "bf16 twin").
  bool fp32_residual = true;
};

// Rounds x[0 .. n) to bf16 in place.
void RoundToBf16InPlace(float* x, int64_t n);

class Bf16ActivationOps : public ForwardingOps<float> {
 public:
  // InvalidArgument unless `inner` (not owned, outliving the wrapper) is a CPU backend: the
  // rounding runs on the host, on the buffers themselves.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Bf16ActivationOps>> Create(
      Ops<float>* inner, const Bf16ActivationOptions& options = {});

  // The bf16 GPU step uses its fused attention (Ops::PrefersFusedAttention), so the twin does
  // too, for every head size.
  bool PrefersFusedAttention(int head_size) const override;

  void Scale(float* x, int64_t n, float alpha) override;
  void Add(const float* a, const float* b, float* out, int64_t n) override;
  void Axpy(float alpha, const float* x, float* y, int64_t n) override;
  void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A,
                          int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch) override;
  void Linear(const float* x, const float* w, const float* bias, int rows, int out, int in,
              float* y) override;
  void LinearBackwardWeights(const float* dy, const float* x, int rows, int out, int in, float* dw,
                             float* dbias) override;
  void AddBias(float* x, const float* bias, int64_t rows, int cols) override;
  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int cols, float eps, float* y, float* mean, float* rstd) override;
  void LayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                         float* dbeta) override;
  void LayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                const float* mean, const float* rstd, int64_t rows, int cols,
                                float* x) override;
  void ResidualLayerNormForward(const float* x, const float* sub, float rate, const DropoutKey& key,
                                const float* gamma, const float* beta, int64_t rows, int cols,
                                float eps, float* sum, float* y, float* mean, float* rstd) override;
  void ResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                 const float* mean, const float* rstd, int64_t rows, int cols,
                                 float rate, const DropoutKey& key, float* dsum, float* dsub,
                                 float* dgamma, float* dbeta) override;
  void GeluForward(const float* x, float* y, int64_t n) override;
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override;
  void ActivationForward(Activation act, const float* x, float* y, int64_t n) override;
  void ActivationBackward(Activation act, const float* x, const float* dy, float* dx,
                          int64_t n) override;
  void TanhForward(const float* x, float* y, int64_t n) override;
  void TanhBackward(const float* y, const float* dy, float* dx, int64_t n) override;
  void SoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk, float scale,
                      const int32_t* segments, bool causal) override;
  void SoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                       int Sk, float scale) override;
  void AttentionForward(const float* q, const float* k, const float* v, int B, int S, int H, int D,
                        float scale, const int32_t* segments, bool causal, float dropout_rate,
                        const DropoutKey& key, float* out, float* lse) override;
  void AttentionBackward(const float* q, const float* k, const float* v, const float* out,
                         const float* dout, const float* lse, int B, int S, int H, int D,
                         float scale, const int32_t* segments, bool causal, float dropout_rate,
                         const DropoutKey& key, float* dq, float* dk, float* dv,
                         float* delta) override;
  void Dropout(const float* x, float* y, int64_t n, float rate, const DropoutKey& key) override;
  void EmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                        bool accumulate) override;
  void GatherRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) override;
  void ScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) override;
  void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                           int64_t rows, int V, float* losses, float* dlogits,
                           float grad_scale) override;
  void LabelSmoothedCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                                 int64_t rows, int V, int ld, float label_smoothing, float* losses,
                                 float* dlogits, float grad_scale) override;

 private:
  Bf16ActivationOps(Ops<float>* inner, const Bf16ActivationOptions& options);

  // A bf16 copy of the operand of a (batched) product: op(X) is rows x cols of a matrix with
  // leading dimension ld (transposed: stored cols x rows), `batch` of them `stride` apart. The
  // copy keeps the layout, so the returned pointer replaces X in the call.
  const float* Bf16Operand(int slot, const float* x, Trans t, int rows, int cols, int ld,
                           int64_t stride, int batch);
  // Rounds the rows x cols matrix at c (leading dimension ldc), `batch` of them `stride` apart.
  static void RoundMatrix(float* c, int rows, int cols, int ldc, int64_t stride, int batch);
  void RoundResidual(float* x, int64_t n) const;

  Bf16ActivationOptions options_;
  std::vector<float> operand_[3];  // the bf16 copies of a product's two operands and bias
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_BF16_ACTIVATION_OPS_H_
