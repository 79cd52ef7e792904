// Ops<T, A>: the op set of a model whose activations are stored as A (bf16) while its parameters,
// gradients, optimizer state and statistics are T (fp32): `train.precision: "bf16"` (issue 15).
//
// It is Ops<T> (kernels/ops.h, all of whose ops it keeps, on T buffers) plus an overload of each
// activation op with the A-typed buffers the model passes. Overload resolution picks by pointer
// type, so the model (Model<T, A>, model/transformer.h) calls the same names whatever A is, and
// an A buffer can never reach a T op by mistake: A* does not convert to T*. Every op keeps its
// Ops<T> contract (shapes, aliasing, accumulation, masks, dropout keys); only the storage
// differs:
//  - an op reads its A inputs widened exactly to T and computes in T, as a GPU kernel reading bf16
//    computes in fp32 registers;
//  - an A output is rounded to nearest, ties to even, once, when stored; a T output is not
//    rounded (LayerNorm statistics, log-sum-exp, losses, parameter gradients, the residual
//    stream);
//  - products accumulate in T: the GEMMs take A operands (the weights through a bf16 mirror of
//    the parameters the model keeps, Convert) and write A, or T where the output is the residual
//    stream or its gradient (beta = 1 adds to what C holds in T).
// Which buffer is which type is the model's decision (model/transformer.h lists it); these
// signatures are the combinations it uses.
//
// Backends: CpuBf16Ops (kernels/cpu_bf16_ops.h; widens, runs the CPU op, rounds) and CudaOps
// (kernels/cuda/cuda_bf16_ops.cc; the bf16 launchers of kernels/cuda/launch.h, not yet run on a
// GPU).
#ifndef HEADROOM_KERNELS_MIXED_OPS_H_
#define HEADROOM_KERNELS_MIXED_OPS_H_

#include <cstdint>
#include <type_traits>

#include "kernels/ops.h"

namespace headroom {

template <typename T, typename A>
class Ops : public Ops<T, T> {
  static_assert(!std::is_same_v<T, A>, "Ops<T, T> is kernels/ops.h's");

 public:
  using Base = Ops<T, T>;
  // The T forms stay visible next to the A overloads.
  using Base::ActivationBackward;
  using Base::ActivationForward;
  using Base::AdamW;
  using Base::Add;
  using Base::AttentionBackward;
  using Base::AttentionForward;
  using Base::Dropout;
  using Base::GatherRows;
  using Base::Gemm;
  using Base::GemmStridedBatched;
  using Base::LabelSmoothedCrossEntropy;
  using Base::Lamb;
  using Base::LayerNormBackward;
  using Base::LayerNormForward;
  using Base::LayerNormInputFromOutput;
  using Base::Linear;
  using Base::LinearBackwardWeights;
  using Base::PermuteHeads;
  using Base::ResidualLayerNormBackward;
  using Base::ResidualLayerNormForward;
  using Base::Scale;
  using Base::ScatterAddRows;
  using Base::SoftmaxBackward;
  using Base::SoftmaxCrossEntropy;
  using Base::SoftmaxForward;
  using Base::TanhBackward;
  using Base::TanhForward;

  // ---- Conversion -------------------------------------------------------------------------
  // dst[i] = src[i] rounded to A (nearest, ties to even): the weight mirror's refresh.
  virtual void Convert(const T* src, A* dst, int64_t n) = 0;
  // dst[i] = src[i] widened (exact).
  virtual void Convert(const A* src, T* dst, int64_t n) = 0;

  // ---- Elementwise --------------------------------------------------------------------------
  virtual void Scale(A* x, int64_t n, T alpha) = 0;
  // out = a + b, the residual stream (T) plus a sublayer's output (A). `out` may alias `a`.
  virtual void Add(const T* a, const A* b, T* out, int64_t n) = 0;

  // ---- Matrix products (A operands, T accumulation) ------------------------------------------
  virtual void Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda,
                    const A* b, int ldb, T beta, A* c, int ldc) = 0;
  // The same with a T result: the gradient of the residual stream, which beta = 1 adds into.
  virtual void Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda,
                    const A* b, int ldb, T beta, T* c, int ldc) = 0;
  virtual void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a,
                                  int lda, int64_t stride_a, const A* b, int ldb, int64_t stride_b,
                                  T beta, A* c, int ldc, int64_t stride_c, int batch) = 0;
  // w and bias from the parameters' A mirror: y = x w^T + bias accumulated in T and rounded to
  // A once (the bias widened exactly, as cuBLASLt's bias epilogue reads a bias of D's type).
  virtual void Linear(const A* x, const A* w, const A* bias, int rows, int out, int in, A* y) = 0;
  virtual void LinearBackwardWeights(const A* dy, const A* x, int rows, int out, int in, T* dw,
                                     T* dbias) = 0;
  virtual void PermuteHeads(const A* x, A* y, int B, int S, int H, int D, bool inverse) = 0;

  // ---- Normalisation and activations ----------------------------------------------------------
  virtual void LayerNormForward(const A* x, const T* gamma, const T* beta, int64_t rows, int cols,
                                T eps, A* y, T* mean, T* rstd) = 0;
  // A LayerNorm of the residual stream (pre-LN).
  virtual void LayerNormForward(const T* x, const T* gamma, const T* beta, int64_t rows, int cols,
                                T eps, A* y, T* mean, T* rstd) = 0;
  virtual void LayerNormBackward(const A* dy, const A* x, const T* gamma, const T* mean,
                                 const T* rstd, int64_t rows, int cols, A* dx, T* dgamma,
                                 T* dbeta) = 0;
  virtual void LayerNormBackward(const A* dy, const T* x, const T* gamma, const T* mean,
                                 const T* rstd, int64_t rows, int cols, A* dx, T* dgamma,
                                 T* dbeta) = 0;
  // The residual stream's LayerNorm input recomputed from the kept A output.
  virtual void LayerNormInputFromOutput(const A* y, const T* gamma, const T* beta, const T* mean,
                                        const T* rstd, int64_t rows, int cols, T* x) = 0;
  // Post-LN "add & norm": sum (the residual stream) in T, y in A.
  virtual void ResidualLayerNormForward(const A* x, const A* sub, float rate, const DropoutKey& key,
                                        const T* gamma, const T* beta, int64_t rows, int cols,
                                        T eps, T* sum, A* y, T* mean, T* rstd) = 0;
  virtual void ResidualLayerNormBackward(const T* dy, const T* sum, const T* gamma, const T* mean,
                                         const T* rstd, int64_t rows, int cols, float rate,
                                         const DropoutKey& key, T* dsum, A* dsub, T* dgamma,
                                         T* dbeta) = 0;
  virtual void ActivationForward(Activation act, const A* x, A* y, int64_t n) = 0;
  virtual void ActivationBackward(Activation act, const A* x, const A* dy, A* dx, int64_t n) = 0;
  virtual void TanhForward(const A* x, A* y, int64_t n) = 0;
  virtual void TanhBackward(const A* y, const A* dy, A* dx, int64_t n) = 0;

  // ---- Attention --------------------------------------------------------------------------
  virtual void SoftmaxForward(const A* scores, A* probs, int B, int H, int Sq, int Sk, T scale,
                              const int32_t* segments, bool causal) = 0;
  virtual void SoftmaxBackward(const A* probs, const A* dprobs, A* dscores, int64_t rows, int Sk,
                               T scale) = 0;
  virtual void AttentionForward(const A* q, const A* k, const A* v, int B, int S, int H, int D,
                                T scale, const int32_t* segments, bool causal, float dropout_rate,
                                const DropoutKey& key, A* out, T* lse) = 0;
  virtual void AttentionBackward(const A* q, const A* k, const A* v, const A* out, const A* dout,
                                 const T* lse, int B, int S, int H, int D, T scale,
                                 const int32_t* segments, bool causal, float dropout_rate,
                                 const DropoutKey& key, A* dq, A* dk, A* dv, T* delta) = 0;

  // ---- Dropout, gathers -------------------------------------------------------------------
  virtual void Dropout(const A* x, A* y, int64_t n, float rate, const DropoutKey& key) = 0;
  // From the residual stream's gradient (T) into a sublayer's (A); rate 0 converts.
  virtual void Dropout(const T* x, A* y, int64_t n, float rate, const DropoutKey& key) = 0;
  virtual void GatherRows(const A* src, const int32_t* idx, int64_t m, int d, A* dst) = 0;
  // Into the residual stream's gradient (T).
  virtual void ScatterAddRows(const A* src, const int32_t* idx, int64_t m, int d, T* dst) = 0;

  // ---- Loss (A logits, T losses; the gradient in A) ------------------------------------------
  virtual void SoftmaxCrossEntropy(const A* logits, const int32_t* labels, const T* weights,
                                   int64_t rows, int V, T* losses, A* dlogits, T grad_scale) = 0;
  virtual void LabelSmoothedCrossEntropy(const A* logits, const int32_t* labels, const T* weights,
                                         int64_t rows, int V, int ld, T label_smoothing, T* losses,
                                         A* dlogits, T grad_scale) = 0;

  // ---- The model's input block --------------------------------------------------------------
  // Model::EmbeddingsForward in one op (one pass over the rows on a GPU): e = word[ids] *
  // word_scale + pos[positions] (+ type[segments] where segments is non-null), in T, in that
  // order (EmbeddingForward, Scale when word_scale != 1, the accumulating EmbeddingForwards).
  // Post-LN (gamma non-null): sum = e (the LayerNorm's input, T) and y = Dropout(LayerNorm(e))
  // in A, with mean and rstd. Pre-LN (gamma null): sum = Dropout(e), the residual stream h_0;
  // y, beta, mean and rstd unused. Dropout as Dropout's under `key`; rate 0 drops nothing.
  virtual void EmbeddingLayerNormForward(const int32_t* ids, const T* word, T word_scale,
                                         const int32_t* positions, const T* pos_table,
                                         const int32_t* segments, const T* type_table, int64_t rows,
                                         int cols, const T* gamma, const T* beta, T eps, float rate,
                                         const DropoutKey& key, T* sum, A* y, T* mean, T* rstd) = 0;

  // ---- Optimizer updates writing the weight mirror -------------------------------------------
  // Ops<T>::AdamW / Lamb (the same T results, bit for bit), also storing each updated w[i]
  // rounded to A into mirror[i] in the same pass: the mirror's refresh without a Convert pass
  // that reads the parameters again.
  virtual void AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s,
                     A* mirror) = 0;
  virtual void Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch,
                    A* mirror) = 0;
};

// EmbeddingLayerNormForward's contract as the op-by-op sequence on `ops` (Ops<T> with A = T, or
// an Ops<T, A> backend's own ops): what Model<T> runs, and the CPU's Ops<T, A> op.
template <typename T, typename A, typename O>
void EmbeddingLayerNormBySteps(O& ops, const int32_t* ids, const T* word, T word_scale,
                               const int32_t* positions, const T* pos_table,
                               const int32_t* segments, const T* type_table, int64_t rows, int cols,
                               const T* gamma, const T* beta, T eps, float rate,
                               const DropoutKey& key, T* sum, A* y, T* mean, T* rstd) {
  const int64_t n = rows * cols;
  ops.EmbeddingForward(ids, word, rows, cols, sum, false);
  if (word_scale != T(1)) ops.Scale(sum, n, word_scale);
  ops.EmbeddingForward(positions, pos_table, rows, cols, sum, true);
  if (segments != nullptr) ops.EmbeddingForward(segments, type_table, rows, cols, sum, true);
  if (gamma == nullptr) {
    if (rate > 0) ops.Dropout(sum, sum, n, rate, key);
    return;
  }
  ops.LayerNormForward(sum, gamma, beta, rows, cols, eps, y, mean, rstd);
  if (rate > 0) ops.Dropout(y, y, n, rate, key);
}

// The optimizer's view of a model that keeps a weight mirror (Model<T, A>::mirror()): AdamW and
// Lamb over a range of the model's parameters that also rewrite the mirror's elements at the same
// offsets (Ops<T, A>'s overloads above). The optimizer (trainer/optimizer.h) takes one where the
// model has a mirror, so no step reads the parameters a second time to refresh it.
template <typename T>
class MirroredUpdate {
 public:
  virtual ~MirroredUpdate() = default;
  // `w` points into the parameters the mirror copies; the arguments are Ops<T>'s.
  virtual void AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s) = 0;
  virtual void Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s,
                    T* scratch) = 0;
};

// MirroredUpdate on Ops<T, A>, for `params` and its A copy `mirror` (same flat layout; neither
// owned, both outliving this object).
template <typename T, typename A>
class MirroredUpdateOn final : public MirroredUpdate<T> {
 public:
  MirroredUpdateOn(Ops<T, A>& ops, const T* params, A* mirror)
      : ops_(ops), params_(params), mirror_(mirror) {}
  void AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s) override {
    ops_.AdamW(w, g, m, v, n, s, mirror_ + (w - params_));
  }
  void Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch) override {
    ops_.Lamb(w, g, m, v, n, s, scratch, mirror_ + (w - params_));
  }

 private:
  Ops<T, A>& ops_;
  const T* params_;
  A* mirror_;
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_MIXED_OPS_H_
