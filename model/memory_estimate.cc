// EstimateTrainingMemory and ActivationElements (see memory_estimate.h): Model<T>'s constructor
// and FixedHeadAttention's and EncoderLayer's allocations, counted instead of made.
#include "model/memory_estimate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/host_memory.h"
#include "config/load.h"
#include "model/attention.h"
#include "model/parameter_layout.h"

namespace headroom {
namespace {

constexpr int64_t kElementBytes = 4;  // float and int32

struct Shape {
  int64_t B, S, N, P, d, F, V, h, dp, L;
  bool bert;
};

Shape ShapeOf(const ModelConfig& m, const ModelLimits& limits) {
  Shape s;
  s.bert = m.objective() == ModelConfig::BERT;
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

}  // namespace

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
                                      const OptimizerConfig& optimizer) {
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
  need.activations = KeptElements(s, options, fused, keep_dropped) * kElementBytes;
  need.workspace = (ScratchElements(s, fused) + OtherElements(s)) * kElementBytes;
  return need;
}

}  // namespace headroom
