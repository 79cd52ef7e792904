// The transformer of the paper, BERT or causal LM, forward and backward on any backend.
//
// Model<T> is written once against Ops<T> (kernels/ops.h): it only calls ops on device
// pointers, so the same code runs on CpuOps<float>, CpuOps<double> (gradient checks) and the
// CUDA backend. Structure, as Google BERT and the paper (post-LN, model.norm = POST_LN):
//
//   embeddings: c E_tok[ids] + E_pos[s] (+ E_type[segment]) -> LayerNorm -> dropout    = h_0
//   layer l:    a = LN(h_l + dropout(Attn(h_l)))          (FixedHeadAttention, attention.h)
//               h_{l+1} = LN(a + dropout(W2 act(W1 a + b1) + b2))
//               encoder output z = h_L
//   BERT heads: MLM at the masked positions only: t = LN(act(z[pos] Wt^T + bt)),
//               logits = t E_tok^T + b_out (decoder tied to the token embedding);
//               NSP: pooled = tanh(z[:, 0] Wp^T + bp), logits = pooled Wn^T + bn.
//               loss = sum(w * mlm_loss) / (sum(w) + 1e-5) + mean(nsp_loss)   (Google BERT)
//   causal LM:  causal attention mask; logits = z E_tok^T + b_out at every position;
//               loss = mean over positions with targets != 0 (tensor2tensor's convention: the
//               input is shift_right(targets), see model/batch.h).
// With `tie_output_embedding` false the decoder uses its own [V, d] matrix instead of E_tok.
//
// tensor2tensor's choices, as ModelConfig options (config/config.proto):
//   norm = PRE_LN      h_0 = dropout(c E_tok[ids] + E_pos[s] (+ E_type)) (no LayerNorm);
//                      a = h_l + dropout(Attn(LN1(h_l))); h_{l+1} = a + dropout(FFN(LN2(a)));
//                      z = LN_f(h_L), a final LayerNorm.
//   position           LEARNED: E_pos is a trained table; SINUSOIDAL: tensor2tensor's fixed
//                      timing signal (config.proto gives the formula), not a parameter.
//   activation         act is GELU (erf), GELU_TANH or RELU.
//   scale_embeddings   c = sqrt(d) (else 1).
//   output_bias        false drops b_out.
// and ModelOptions::label_smoothing smooths the training loss of the token predictions.
//
// Parameters and gradients are two flat buffers of ParameterLayout order (parameter_layout.h);
// gradients ACCUMULATE across Backward calls (micro-batches) until ZeroGrads.
//
// Memory is allocated once, at Create, for (max_batch, max_seq, max_predictions); Forward and
// Backward allocate nothing. With N = B*S tokens, I = heads*head_size, F = ffn_size, V = vocab,
// P = B*M masked slots, the activations kept from Forward for Backward are (elements):
//   embeddings:  LayerNorm input N*d, its mean and rstd 2N, output h_0 N*d (PRE_LN: h_0 N*d,
//                and the final LayerNorm's output N*d and mean and rstd 2N)
//   per layer:   attention (attention.h): q, k, v 3*N*I, context N*I, and either (materialised
//                path) probs B*h*S*S plus, on the CPU with attention dropout, the dropped probs
//                B*h*S*S (the GPU redraws them), or (fused path) one log-sum-exp per query B*h*S;
//                attention residual sum (LN1 input) N*d, LN1 mean/rstd 2N, LN1 output N*d;
//                FFN pre-activation N*F, activation output N*F (unless
//                ModelOptions::recompute_gelu: then Backward recomputes it into the workspace);
//                FFN residual sum (LN2 input) N*d, LN2 mean/rstd 2N, layer output h_{l+1} N*d
//                (PRE_LN keeps the same amounts: LN1 output, the residual sum after attention,
//                LN2 output, the statistics, the FFN's two)
//   BERT heads:  gathered rows P*d, transform pre-GELU P*d, GELU output P*d, LN stats 2P,
//                transform output P*d, logits (then their gradient, in place) P*Vp;
//                [CLS] rows B*d, pooled B*d, NSP logits 2B
//   causal LM:   logits (then their gradient, in place) N*Vp
// where Vp = PaddedVocabSize (parameter_layout.h): the decoder runs over the padded vocabulary,
// whose extra logits are 0 and excluded from the loss, the gradient and the accuracy.
// Dropout masks are never stored: Backward recomputes them from their Philox keys. Besides
// these, one workspace of N*d + max(N*F, N*d, attention scratch: materialised
// max(2*N*I + 2*B*h*S*S, 3*N*I), fused 4*N*I + B*h*S) elements is shared by all layers and the
// heads, and Backward uses two [N, d] gradient buffers. Each piece carved out of the workspace
// starts at a multiple of kTensorAlignment (64) elements, which adds up to 63 elements per
// piece to these counts. ActivationElements() returns the exact total (the
// SINUSOIDAL position table, [max_positions, d], is neither a parameter nor an activation and
// is not counted).
//
// Dropout sites: layer l uses DropoutKey{seed, step, l, site} with site 0 = attention
// probabilities, 1 = attention output, 2 = FFN output; the embedding dropout uses layer
// kEmbeddingDropoutLayer, site 0. The heads have no dropout (as Google BERT's pre-training).
//
// Example (one training micro-batch):
//   CpuOps<float> ops;
//   auto model = Model<float>::Create(config.model(), &ops, {32, 128, 20}).value();
//   model->InitParameters(/*seed=*/1234);
//   model->ZeroGrads();
//   absl::StatusOr<LossStats> s = model->Forward(batch, /*training=*/true, {seed, step});
//   model->Backward();            // grads() += d s->loss / d params
#ifndef HEADROOM_MODEL_TRANSFORMER_H_
#define HEADROOM_MODEL_TRANSFORMER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/batch.h"
#include "model/parameter_layout.h"

namespace headroom {

// DropoutKey::layer of the embedding dropout (distinct from every transformer layer index).
inline constexpr uint32_t kEmbeddingDropoutLayer = 0xFFFFFF;

// The largest batch a Model accepts; buffers are sized for it.
struct ModelLimits {
  int max_batch = 0;        // sequences per Forward
  int max_seq = 0;          // tokens per sequence (<= model.max_positions)
  int max_predictions = 0;  // BERT masked slots per sequence (ignored for the causal LM)
};

// Which of FixedHeadAttention's two paths the layers take (model/attention.h). kAuto asks the
// backend (Ops::PrefersFusedAttention: fused on the GPU in bf16 mode, materialised on the CPU).
enum class AttentionPath { kAuto, kFused, kMaterialized };

// "auto", "fused" or "materialized"; InvalidArgument naming the accepted values otherwise.
[[nodiscard]] absl::StatusOr<AttentionPath> ParseAttentionPath(const std::string& name);

// Implementation choices that do not change the function the model computes, and the training
// loss's label smoothing (train.label_smoothing), which the trainer owns.
struct ModelOptions {
  AttentionPath attention = AttentionPath::kAuto;
  // Recompute each FFN's GELU output in Backward from the kept pre-activation instead of
  // keeping it: N * ffn_size fewer kept elements per layer for one elementwise pass.
  bool recompute_gelu = false;
  // Recompute each LayerNorm's input in Backward from its kept output (Ops::
  // LayerNormInputFromOutput) instead of keeping it, as apex's memory-efficient LayerNorm:
  // 2 * N * d fewer kept elements per layer, one elementwise pass each; exact up to rounding
  // unless a LayerNorm gain is near zero.
  bool layernorm_from_output = false;
  // tensor2tensor's label smoothing eps in [0, 1) of the token-prediction losses (LM targets,
  // BERT's masked tokens; not NSP) of a training Forward (Ops::LabelSmoothedCrossEntropy: the
  // smoothed cross-entropy minus its minimum). Evaluation Forwards are unsmoothed.
  float label_smoothing = 0;
};

// The options a config's train block asks for (train.attention, train.recompute_gelu,
// train.layernorm_from_output, train.label_smoothing; the config is validated, so the names are
// known).
ModelOptions ModelOptionsFromConfig(const TrainConfig& train);

// What one Forward computed. Losses are the means the gradient is of; the sums and counts let
// the trainer average over micro-batches and ranks exactly.
struct LossStats {
  // BERT: mlm_loss + nsp_loss; causal LM: lm_loss. A training Forward with label smoothing
  // reports the smoothed token losses (ModelOptions::label_smoothing).
  double loss = 0;

  // BERT.
  double mlm_loss = 0;        // mlm_loss_sum / (mlm_weight_sum + 1e-5)
  double mlm_loss_sum = 0;    // sum over slots of weight * cross-entropy
  double mlm_weight_sum = 0;  // sum of masked_lm_weights
  int64_t mlm_count = 0;      // slots with weight > 0
  int64_t mlm_correct = -1;   // of those, argmax == label; -1 unless count_correct was asked
  double nsp_loss = 0;        // mean over sequences
  int64_t nsp_count = 0;      // sequences
  int64_t nsp_correct = 0;    // argmax == next_sentence_label

  // Causal LM.
  double lm_loss = 0;       // lm_loss_sum / lm_tokens (0 when there are none)
  double lm_loss_sum = 0;   // sum of cross-entropy over predicted tokens
  int64_t lm_tokens = 0;    // positions with targets != 0
  int64_t lm_correct = -1;  // argmax == target; -1 unless count_correct was asked
};

template <typename T, typename A>
class EncoderLayer;  // transformer.cc
template <typename T>
class MirroredUpdate;  // kernels/mixed_ops.h

// A layer's input or output h_l: a LayerNorm output stored as A (post-LN) or the residual
// stream, T (pre-LN). Only the one of the model's norm is set (both, the same buffer, when A is
// T).
template <typename T, typename A>
struct HiddenState {
  A* a = nullptr;  // post-LN
  T* t = nullptr;  // pre-LN
};

// The model as training, evaluation and the tools use it, whatever its activations' storage
// type: Model<T, A> for every A implements it (see Model for each function's contract). The
// trainer holds a TrainableModel<float> and so trains Model<float> and Model<float, Bf16>
// (train.precision bf16) alike.
template <typename T>
class TrainableModel {
 public:
  using BackwardHook = std::function<void(int layer)>;
  virtual ~TrainableModel() = default;

  [[nodiscard]] virtual absl::StatusOr<LossStats> Forward(const Batch& batch, bool training,
                                                          const DropoutKey& base,
                                                          bool count_correct = false) = 0;
  [[nodiscard]] virtual absl::Status ForwardAsync(const Batch& batch, bool training,
                                                  const DropoutKey& base) = 0;
  [[nodiscard]] virtual absl::StatusOr<LossStats> ReadLossStatsOrError() = 0;
  virtual LossStats ReadLossStats() = 0;
  virtual void Backward(T loss_scale = T(1), const BackwardHook& hook = nullptr) = 0;

  virtual void ZeroGrads() = 0;
  virtual void InitParameters(uint64_t seed) = 0;
  virtual void ParametersUpdated() = 0;
  // The optimizer's updates that rewrite the weight mirror in their own pass (given to
  // Optimizer, trainer/optimizer.h, so that ParametersUpdated is not needed after its step);
  // nullptr when there is no mirror (A is T).
  virtual MirroredUpdate<T>* mirrored_update() = 0;
  virtual void CopyParametersToHost(T* dst) const = 0;
  virtual void CopyParametersToDevice(const T* src) = 0;
  virtual std::vector<T> GetParameters() const = 0;
  virtual std::vector<T> GetGradients() const = 0;
  virtual void SetParameters(const std::vector<T>& values) = 0;
  virtual T* params() = 0;
  virtual T* grads() = 0;
  virtual const T* params() const = 0;
  virtual const T* grads() const = 0;

  virtual const ParameterLayout& layout() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual const ModelLimits& limits() const = 0;
  virtual int64_t ActivationBytes() const = 0;
  // Bytes of the bf16 weight mirror (0 when the activations are T: the GEMMs read params()).
  virtual int64_t MirrorBytes() const = 0;
  virtual bool fused_attention() const = 0;
  // What layer l's attention projected in the last Forward (Model::attention_input), copied to
  // the host and widened to T: [B*S, d] of the last Forward's batch.
  virtual std::vector<T> AttentionInputToHost(int l) const = 0;
};

// Model<T, A>: T is the parameters', gradients' and statistics' type, A the activations' (A = T,
// or bf16 with T = float: `train.precision: "bf16"`, on Ops<float, Bf16>, kernels/mixed_ops.h).
// With A != T the model keeps an A copy of the parameters, the mirror its GEMMs read the weights
// from, refreshed by ParametersUpdated(); activations are A except the residual stream (post-LN
// the LayerNorm inputs, pre-LN h_l), its gradient, the LayerNorm statistics and the losses,
// which stay T. The element counts of the file comment are then bytes at sizeof(A) or
// sizeof(T) accordingly (ActivationBytes()).
template <typename T, typename A = T>
class Model final : public TrainableModel<T> {
 public:
  // Validates `model` (as config/load.h would) and `limits`, lays out and allocates parameters
  // (zero until InitParameters or CopyParametersToDevice), gradients (zero) and every
  // activation buffer. `ops` is not owned and must outlive the model. `head` adds a fine-tuning
  // head's tensors to the layout (ParameterLayout::ForModel); the model keeps them in its flat
  // buffers (initialised, updated, checkpointed with the rest) but never reads them: the head's
  // computation is model/task_model.h's, over ForwardEncoder / BackwardEncoder.
  // When an allocation fails (Ops::status()), that error is returned with the model's size and
  // what lowers it.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model<T, A>>> Create(
      const ModelConfig& model, Ops<T, A>* ops, const ModelLimits& limits,
      const ModelOptions& options = {}, const TaskHead& head = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Runs the model on `batch` (validated first; errors are InvalidArgument naming the field).
  // training: dropout at the configured rates with keys {base.seed, base.step, layer, site}, and
  // the gradient of the loss with respect to the logits is prepared for Backward (in the logits
  // buffer, which is why it costs nothing extra). Not training: no dropout, Backward not
  // allowed. count_correct: also count argmax-correct MLM / LM predictions, which copies the
  // logits to the host (P*V or N*V values; meant for evaluation). NSP accuracy is always
  // counted. A backend failure is returned as the error (see ReadLossStatsOrError).
  [[nodiscard]] absl::StatusOr<LossStats> Forward(const Batch& batch, bool training,
                                                  const DropoutKey& base,
                                                  bool count_correct = false) override;

  // Forward without waiting for the device: the batch is validated and staged and the work
  // enqueued, but the losses stay on the device until ReadLossStats, so a caller can enqueue
  // Backward first and read the loss once the step's work is in flight (one host
  // synchronisation per step instead of one per Forward). Forward == ForwardAsync followed by
  // ReadLossStats (count_correct needs the synchronous Forward).
  [[nodiscard]] absl::Status ForwardAsync(const Batch& batch, bool training,
                                          const DropoutKey& base) override;
  // The LossStats of the last Forward / ForwardAsync (waits for its work). Once per Forward.
  // The backend's error (Ops::status()) when any op since it was created failed: the losses
  // read back would not be trustworthy (a failed copy leaves zeros, which look like a loss).
  [[nodiscard]] absl::StatusOr<LossStats> ReadLossStatsOrError() override;
  // The same without the status, for callers that check Ops::status() themselves: on a backend
  // error every loss is NaN, so that a finiteness check stops the run rather than training on.
  LossStats ReadLossStats() override;

  // Called by Backward as groups of parameter gradients become final, so that a caller can
  // start reducing them while the rest of backward runs (comm/gradient_buckets.h): with
  // layer = num_layers after the output heads (every tensor of layer -1 that is not an
  // embedding; a tied decoder's gradient goes into the token embedding, which is final only at
  // the end), then layer = L-1 .. 0 after each transformer layer, then layer = -1 after the
  // embeddings. On a device backend the kernels are enqueued, not finished, when it runs.
  using BackwardHook = typename TrainableModel<T>::BackwardHook;

  // Adds loss_scale * d loss / d params of the last training Forward into grads(). loss_scale
  // is for averaging micro-batches (1 / accumulation steps) or loss scaling. Must follow a
  // Forward with training = true; may be called once per Forward. `hook`, when set, is called
  // as described at BackwardHook; it does not change what is computed.
  void Backward(T loss_scale = T(1), const BackwardHook& hook = nullptr) override;

  // ---- The encoder alone, for fine-tuning heads (model/task_model.h) ----------------------
  // Runs the embeddings and the layers of a BERT model on `batch`'s input_ids, input_mask and
  // segment_ids (ValidateEncoderInputs; the pre-training fields are not read), leaving the
  // encoder output (h_L; LN_f(h_L) for PRE_LN) in hidden(). `training` and `base` as Forward.
  // Computes no loss; after it BackwardEncoder (not Backward) is allowed when training.
  // FailedPrecondition for a causal LM.
  [[nodiscard]] absl::Status ForwardEncoder(const Batch& batch, bool training,
                                            const DropoutKey& base);
  // The [B*S, d] device buffer in which a head puts d loss / d hidden() before BackwardEncoder,
  // which destroys it.
  T* hidden_grad() { return dh_[0]; }
  // Back-propagates hidden_grad() through the layers and the embeddings of the last training
  // ForwardEncoder, adding into grads(). `hook` as Backward's: first with layer = num_layers
  // (the caller's head gradients are final by then), then L-1 .. 0, then -1.
  void BackwardEncoder(const BackwardHook& hook = nullptr);

  // Sets every gradient to zero.
  void ZeroGrads() override;
  // BERT initialisation (model/init.h) computed on the host and copied to the device.
  void InitParameters(uint64_t seed) override;
  // Refreshes the weight mirror from params() (Ops::Convert, rounding to nearest even): after
  // anything that writes params() other than this class's own setters (the optimizer step, a
  // ZeRO-1 parameter gather). Nothing to do when A is T.
  void ParametersUpdated() override;
  MirroredUpdate<T>* mirrored_update() override { return mirrored_update_.get(); }

  // Host <-> device copies of the whole flat buffers (layout().total() elements each). The
  // setters refresh the weight mirror.
  void CopyParametersToHost(T* dst) const override;
  void CopyParametersToDevice(const T* src) override;
  void CopyGradientsToHost(T* dst) const;
  std::vector<T> GetParameters() const override;
  std::vector<T> GetGradients() const override;
  void SetParameters(const std::vector<T>& values) override;

  // Device pointers to the flat buffers (layout().total() elements; owned by the model).
  T* params() override { return params_; }
  T* grads() override { return grads_; }
  const T* params() const override { return params_; }
  const T* grads() const override { return grads_; }
  const ParameterLayout& layout() const override { return layout_; }
  const ModelConfig& config() const override { return config_; }
  const ModelLimits& limits() const override { return limits_; }

  // The GEMMs' copy of the parameters, the weight mirror: params() itself when A is T.
  const A* mirror() const { return mirror_; }

  // The encoder output z of the last Forward (h_L, or LN_f(h_L) for PRE_LN), [B*S, d] on the
  // device (for tests and probing).
  const A* hidden() const { return encoder_output(); }
  // h_l of the last Forward, the input of layer l (0 <= l <= num_layers; hidden(num_layers) is
  // h_L), [B*S, d] on the device; where A is T (its type differs by norm otherwise).
  const T* hidden(int l) const requires std::is_same_v<T, A> {
    return hidden_.at(static_cast<size_t>(l)).t;
  }
  // What layer l's attention projected in the last Forward (0 <= l < num_layers), [B*S, d] on
  // the device: h_l (POST_LN) or LN1(h_l) (PRE_LN). Used by analysis/attention_rank.h to
  // recompute each head's attention logits from the parameters (additive probing hook, nothing
  // else reads it).
  const A* attention_input(int l) const;
  // Bytes allocated for kept activations plus scratch (see the file comment), excluding
  // parameters, gradients and the weight mirror; ActivationElements in T elements (exact when A
  // is T).
  int64_t ActivationBytes() const override { return activation_bytes_; }
  int64_t MirrorBytes() const override {
    return std::is_same_v<T, A> ? 0 : layout_.total() * static_cast<int64_t>(sizeof(A));
  }
  int64_t ActivationElements() const { return activation_bytes_ / static_cast<int64_t>(sizeof(T)); }
  // Whether the layers take the fused attention path (ModelOptions, resolved).
  bool fused_attention() const override { return fused_attention_; }
  std::vector<T> AttentionInputToHost(int l) const override;

 private:
  // `options` resolved: attention is kFused or kMaterialized.
  Model(const ModelConfig& model, Ops<T, A>* ops, const ModelLimits& limits,
        const ModelOptions& options, const TaskHead& head);
  template <typename U = T>
  U* Allocate(int64_t n);
  // The constructor's parts: the batch's device buffers (ids, masks, labels, weights) and the
  // fixed timing signal; then every activation and workspace buffer, counted in
  // activation_elements_.
  void AllocateInputs();
  void AllocateActivations();
  int32_t* AllocateInt(int64_t n);
  // A parameter (T), its gradient, and a GEMM weight (from the mirror, A).
  const T* P(const std::string& name) const;
  T* G(const std::string& name);
  const A* W(const std::string& name) const;
  // Forward's work: everything but reading the losses back.
  absl::Status Enqueue(const Batch& batch, bool training, const DropoutKey& base,
                       bool count_correct);
  // Stages a validated batch with M prediction slots and runs the embeddings and layers.
  absl::Status EnqueueEncoder(const Batch& batch, bool training, const DropoutKey& base, int M);
  // Backward from dh = d loss / d h_L (destroyed) through the layers and embeddings.
  void BackwardThroughEncoder(T* dh, const BackwardHook& hook);
  // The layers' view of h_l.
  HiddenState<T, A> Hidden(int l) const { return hidden_.at(static_cast<size_t>(l)); }
  // The heads' two [max(P, B), d] buffers in the workspace (which = 0, 1); the second starts
  // HeadScratchOffset() bytes in.
  A* HeadScratch(int which) const;
  int64_t HeadScratchOffset() const;
  void ForwardBertHeads(const Batch& batch, bool training, bool count_correct, LossStats& stats);
  void ForwardLmHead(const Batch& batch, bool training, bool count_correct, LossStats& stats);
  void BackwardBertHeads(T loss_scale, T* dhidden);
  void BackwardLmHead(T loss_scale, T* dhidden);
  // h_0 from the staged ids, positions and segments; and the embeddings' backward from
  // dh = d loss / d h_0 (destroyed).
  void EmbeddingsForward();
  void EmbeddingsBackward(T* dh);
  const A* encoder_output() const { return pre_ln_ ? final_out_ : hidden_.back().a; }
  // The position table: the learned parameter or the fixed timing signal.
  const T* PositionTable() const;
  // The output bias and its gradient, nullptr without one (model.output_bias false).
  const A* OutputBias() const;  // from the mirror, as the decoder's GEMM reads it
  T* OutputBiasGrad();
  // The label smoothing of this Forward's token losses: the option when training, else 0.
  T Smoothing(bool training) const { return training ? static_cast<T>(label_smoothing_) : T(0); }

  ModelConfig config_;
  Ops<T, A>* ops_;
  ModelLimits limits_;
  ParameterLayout layout_;
  bool bert_;
  bool pre_ln_;
  bool fused_attention_;
  Activation act_;
  float label_smoothing_;
  int d_, V_;
  int Vp_;  // the vocabulary padded to a multiple of kVocabAlignment (parameter_layout.h)
  T eps_;
  std::vector<void*> allocations_;
  int64_t activation_bytes_ = 0;

  T* params_ = nullptr;
  T* grads_ = nullptr;
  A* mirror_ = nullptr;  // the GEMMs' copy of params_ (params_ itself when A is T)
  std::unique_ptr<MirroredUpdate<T>> mirrored_update_;  // null when A is T
  std::vector<std::unique_ptr<EncoderLayer<T, A>>> layers_;

  // Inputs of the current batch (device).
  int32_t* ids_ = nullptr;        // [N] input token ids (causal LM: shift_right(targets))
  int32_t* positions_ = nullptr;  // [N] position of each token
  int32_t* segments_ = nullptr;   // [N] (BERT)
  int32_t* key_valid_ = nullptr;  // [N] input_mask (BERT), targets_segmentation (packed LM)
  const int32_t* attention_segments_ = nullptr;  // the layers' mask: key_valid_ or nullptr
  int32_t* labels_ = nullptr;       // [P] masked_lm_ids or -1 (BERT); [N] targets or -1 (LM)
  int32_t* gather_rows_ = nullptr;  // [P] b*S + masked_lm_positions (BERT)
  int32_t* cls_rows_ = nullptr;     // [B] b*S (BERT)
  int32_t* nsp_labels_ = nullptr;   // [B]
  T* weights_ = nullptr;            // [P] masked_lm_weights (BERT)
  T* ones_ = nullptr;               // [max(N, B)] all ones, for sums via Dot
  T* scalars_ = nullptr;            // [4] device scalars read back after Forward

  T* timing_signal_ = nullptr;  // [max_positions, d] fixed positions (SINUSOIDAL), else null

  // Kept activations.
  T* emb_sum_ = nullptr;  // [N, d] embedding LayerNorm input (POST_LN)
  T* emb_mean_ = nullptr;
  T* emb_rstd_ = nullptr;
  A* final_out_ = nullptr;  // [N, d] final LayerNorm output (PRE_LN)
  T* final_mean_ = nullptr;
  T* final_rstd_ = nullptr;
  std::vector<HiddenState<T, A>> hidden_;  // L + 1 buffers [N, d]: h_0 .. h_L
  A* logits_ = nullptr;  // [P, V] (BERT) or [N, V] (LM); gradient in place after training
  T* losses_ = nullptr;  // [max(P, N)] per-row cross-entropy
  // BERT heads.
  A* mlm_in_ = nullptr;            // [P, d] gathered rows
  A* mlm_pre_ = nullptr;           // [P, d] transform before GELU
  A* mlm_act_ = nullptr;           // [P, d] GELU output
  T* mlm_mean_ = nullptr;          // [P]
  T* mlm_rstd_ = nullptr;          // [P]
  A* mlm_out_ = nullptr;           // [P, d] transform LayerNorm output
  A* cls_ = nullptr;               // [B, d]
  A* pooled_ = nullptr;            // [B, d]
  A* nsp_logits_ = nullptr;        // [B, 2], gradient in place after training
  T* nsp_losses_ = nullptr;        // [B]
  A* nsp_dlogits_ = nullptr;       // [B, 2] gradient of the NSP logits (logits kept for accuracy)
  void* scratch_ = nullptr;        // layer and head workspace (see the file comment), bytes
  T* dh_[2] = {nullptr, nullptr};  // [N, d] gradient buffers Backward alternates between

  // The last Forward.
  LossStats pending_;                     // host-side counts, until ReadLossStats
  bool stats_pending_ = false;            // ReadLossStats allowed
  std::vector<int32_t> nsp_labels_host_;  // for NSP accuracy in ReadLossStats
  int B_ = 0, S_ = 0, M_ = 0;
  bool backward_ready_ = false;          // Backward allowed (training Forward)
  bool encoder_backward_ready_ = false;  // BackwardEncoder allowed (training ForwardEncoder)
  DropoutKey base_key_;
  float hidden_rate_ = 0, attention_rate_ = 0, ffn_rate_ = 0;
};

extern template class Model<float>;
extern template class Model<double>;

}  // namespace headroom

#endif  // HEADROOM_MODEL_TRANSFORMER_H_
