// EstimateTrainingMemory and ActivationElements (see memory_estimate.h): Model<T>'s constructor
// and FixedHeadAttention's and EncoderLayer's allocations, counted instead of made.
#include "model/memory_estimate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/bf16.h"
#include "base/host_memory.h"
#include "config/load.h"
#include "model/attention.h"
#include "model/parameter_layout.h"

namespace headroom {
namespace {

constexpr int64_t kElementBytes = 4;  // float and int32

struct Shape {
  int64_t B, S, N, P, d, F, V, h, dp, L;
  bool bert, pre_ln;
};

Shape ShapeOf(const ModelConfig& m, const ModelLimits& limits) {
  Shape s;
  s.bert = m.objective() == ModelConfig::BERT;
  s.pre_ln = m.norm() == ModelConfig::PRE_LN;
  s.B = limits.max_batch;
  s.S = limits.max_seq;
  s.N = s.B * s.S;
  s.P = s.bert ? s.B * limits.max_predictions : 0;
  s.d = m.d_model();
  s.F = m.ffn_size();
  s.V = PaddedVocabSize(m);  // the decoder's logits are over the padded vocabulary
  s.h = m.num_heads();
  s.dp = HeadSize(m);
  s.L = m.num_layers();
  return s;
}

// Elements kept from Forward for Backward: embeddings, hidden states, layers (with their
// attention), the heads' logits and BERT's head activations.
int64_t KeptElements(const Shape& s, const ModelOptions& o, bool fused, bool keep_dropped) {
  const int64_t n_inner = s.N * s.h * s.dp, n_probs = s.B * s.h * s.S * s.S;
  const int64_t attention =
      4 * n_inner + (fused ? s.B * s.h * s.S : (keep_dropped ? 2 : 1) * n_probs);
  const int64_t layer = attention + s.N * ((o.layernorm_from_output ? 1 : 3) * s.d +
                                           (o.recompute_gelu ? 1 : 2) * s.F + 4);
  const int64_t rows = s.bert ? s.P : s.N;
  int64_t kept = s.N * s.d + 2 * s.N + (s.L + 1) * s.N * s.d + s.L * layer + rows * s.V + rows;
  if (s.bert) kept += 4 * s.P * s.d + 2 * s.P + 2 * s.B * s.d + 3 * s.B;
  return kept;
}

// The shared scratch (a layer's, also the heads' two [rows, d] buffers).
int64_t ScratchElements(const Shape& s, bool fused) {
  const int64_t attention = FixedHeadAttention<float>::ScratchElements(
      static_cast<int>(s.h), static_cast<int>(s.dp), static_cast<int>(s.B), static_cast<int>(s.S),
      fused);
  const int64_t layer =
      AlignUp(s.N * s.d, kTensorAlignment) + std::max({s.N * s.F, attention, s.N * s.d});
  return std::max(layer,
                  AlignUp(std::max(s.P, s.B) * s.d, kTensorAlignment) + std::max(s.P, s.B) * s.d);
}

// Everything else the model allocates: Backward's two [N, d] gradient buffers, NSP's logit
// gradient, the batch's ids, positions, segments, padding flags, labels, gathered rows and
// weights, a ones vector and four scalars.
int64_t OtherElements(const Shape& s) {
  return 2 * s.N * s.d + (s.bert ? 2 * s.B : 0) + 4 * s.N + std::max(s.N, s.P) + s.P + 2 * s.B +
         s.P + std::max(s.N, s.B) + 4;
}

// Model<float, A>'s activation bytes, counted the way Model::AllocateActivations, EncoderLayer
// and FixedHeadAttention type their buffers (A: activations; float: the residual stream,
// statistics, losses and the gradient buffers; model/transformer.h): kept for Backward, and the
// shared scratch (in whole floats, as allocated). Model::ActivationBytes() is kept + scratch +
// GradientBufferBytes.
struct TypedBytes {
  int64_t kept = 0, scratch = 0;
};

template <typename A>
TypedBytes TypedActivationBytes(const Shape& s, const ModelOptions& o, bool fused,
                                bool keep_dropped) {
  const int64_t a = sizeof(A), t = sizeof(float);
  const int64_t n_inner = s.N * s.h * s.dp, n_probs = s.B * s.h * s.S * s.S;
  const int64_t attention = fused ? 4 * n_inner * a + s.B * s.h * s.S * t
                                  : (4 * n_inner + (keep_dropped ? 2 : 1) * n_probs) * a;
  const int64_t norm =
      s.pre_ln ? s.N * s.d * (t + 2 * a) : s.N * s.d * (a + (o.layernorm_from_output ? 0 : 2 * t));
  const int64_t layer = attention + norm + s.N * s.F * (o.recompute_gelu ? 1 : 2) * a + 4 * s.N * t;
  const int64_t rows = s.bert ? s.P : s.N;
  TypedBytes b;
  b.kept = s.N * s.d * (s.pre_ln ? a : t) + 2 * s.N * t +
           (s.L + 1) * s.N * s.d * (s.pre_ln ? t : a) + s.L * layer + rows * s.V * a + rows * t;
  if (s.bert) b.kept += (4 * s.P * s.d + 2 * s.B * s.d + 2 * s.B) * a + (2 * s.P + s.B) * t;
  const int64_t attention_scratch = FixedHeadAttention<float, A>::ScratchBytes(
      static_cast<int>(s.h), static_cast<int>(s.dp), static_cast<int>(s.B), static_cast<int>(s.S),
      fused);
  const int64_t layer_scratch = AlignTensorBytes(s.N * s.d * a, t) +
                                std::max({s.N * s.F * a, attention_scratch, s.N * s.d * t});
  const int64_t head_rows = std::max(s.P, s.B);
  const int64_t heads = AlignTensorBytes(head_rows * s.d * a, t) + head_rows * s.d * a;
  b.scratch = (std::max(layer_scratch, heads) + t - 1) / t * t;
  return b;
}

// Backward's two [N, d] gradient buffers (float) and NSP's logit gradient (A).
int64_t GradientBufferBytes(const Shape& s, int64_t a) {
  return 2 * s.N * s.d * static_cast<int64_t>(sizeof(float)) + (s.bert ? 2 * s.B * a : 0);
}

}  // namespace

int64_t ActivationBytes(const ModelConfig& model, const ModelLimits& limits,
                        const ModelOptions& options, bool fused_attention, bool keep_dropped_probs,
                        bool bf16_activations) {
  const Shape s = ShapeOf(model, limits);
  const bool keep_dropped = keep_dropped_probs && !fused_attention;
  const TypedBytes b = bf16_activations
                           ? TypedActivationBytes<Bf16>(s, options, fused_attention, keep_dropped)
                           : TypedActivationBytes<float>(s, options, fused_attention, keep_dropped);
  return b.kept + b.scratch + GradientBufferBytes(s, bf16_activations ? 2 : 4);
}

std::string MemoryEstimate::ToString() const {
  return absl::StrCat("parameters ", FormatGiB(parameters), ", gradients ", FormatGiB(gradients),
                      ", optimizer state ", FormatGiB(optimizer), ", activations ",
                      FormatGiB(activations), ", workspace ", FormatGiB(workspace));
}

int64_t ActivationElements(const ModelConfig& model, const ModelLimits& limits,
                           const ModelOptions& options, bool fused_attention,
                           bool keep_dropped_probs) {
  const Shape s = ShapeOf(model, limits);
  const bool keep_dropped = keep_dropped_probs && !fused_attention;
  return KeptElements(s, options, fused_attention, keep_dropped) +
         ScratchElements(s, fused_attention) + 2 * s.N * s.d + (s.bert ? 2 * s.B : 0);
}

MemoryEstimate EstimateTrainingMemory(const ModelConfig& model, const ModelLimits& limits,
                                      const ModelOptions& options, const Ops<float>& ops,
                                      const OptimizerConfig& optimizer, bool bf16_activations) {
  ExperimentConfig e;
  *e.mutable_model() = model;
  FillDefaults(e);  // as Model::Create does
  const ModelConfig& m = e.model();
  const Shape s = ShapeOf(m, limits);
  // kAuto and the dropped probabilities as Model::Create and EncoderLayer resolve them.
  const bool fused = options.attention == AttentionPath::kFused ||
                     (options.attention == AttentionPath::kAuto &&
                      ops.PrefersFusedAttention(static_cast<int>(s.dp)));
  const bool keep_dropped = !fused && ops.device() == DeviceKind::kCpu && m.attention_dropout() > 0;

  const ParameterLayout layout = ParameterLayout::ForModel(m);
  int64_t largest = 0;
  for (const TensorSpec& t : layout.tensors()) largest = std::max(largest, t.numel);
  MemoryEstimate need;
  need.parameters = layout.total() * kElementBytes;
  need.gradients = layout.total() * kElementBytes;
  need.optimizer =
      (2 * layout.total() + 1 + (optimizer.type() == OptimizerConfig::LAMB ? largest : 0)) *
      kElementBytes;
  // The fused backward's own scratch (CUDA: the stored dS), once: the layers run one at a time.
  const int64_t attention_scratch =
      fused ? ops.AttentionBackwardScratchBytes(static_cast<int>(s.B), static_cast<int>(s.S),
                                                static_cast<int>(s.h), static_cast<int>(s.dp))
            : 0;
  if (bf16_activations) {
    // As Model<float, Bf16> types them, and the bf16 weight mirror beside the parameters; the
    // batch's ids and scalars (OtherElements less the gradient buffers) as in fp32.
    const TypedBytes b = TypedActivationBytes<Bf16>(s, options, fused, keep_dropped);
    need.parameters += layout.total() * static_cast<int64_t>(sizeof(Bf16));
    need.activations = b.kept;
    need.workspace = b.scratch + GradientBufferBytes(s, sizeof(Bf16)) +
                     OtherElements(s) * kElementBytes - GradientBufferBytes(s, kElementBytes) +
                     attention_scratch;
    return need;
  }
  need.activations = KeptElements(s, options, fused, keep_dropped) * kElementBytes;
  need.workspace =
      (ScratchElements(s, fused) + OtherElements(s)) * kElementBytes + attention_scratch;
  return need;
}

}  // namespace headroom
