// The parameter layout: every trainable tensor of a model, named, shaped, in one flat buffer.
//
// All parameters live in one contiguous fp32 buffer (gradients in a second one of the same
// layout), so that the optimizer, the gradient all-reduce and checkpoints each see one array.
// The order is fixed and documented, front to back:
//
//   embeddings (token, position, [token type], LayerNorm gain, bias),
//   layer 0 .. layer L-1, each: query W, key W, value W; query b, key b, value b; attention
//     output W,b; attention LayerNorm gain,bias; intermediate W,b; output W,b; output LayerNorm
//     gain,bias,
//   heads: BERT pooler W,b; MLM transform W,b; MLM LayerNorm gain,bias; MLM output bias;
//     NSP W,b; then a fine-tuning head when there is one (TaskHead, model/task_model.h).
//     Causal LM: output bias (and output W when the embedding is not tied).
//
// The model options drop or move tensors: SINUSOIDAL positions have no position table, no
// output_bias drops the MLM / LM output bias, and PRE_LN (model/transformer.h) has no
// embedding LayerNorm, puts each layer's LayerNorms before their sublayers as
// "attention.LayerNorm" (before query) and "intermediate.LayerNorm" (before intermediate), and
// ends the encoder with "<prefix>encoder.LayerNorm" (after the last layer, before the heads).
//
// The layout is what the tensor cores like (and what a bf16 copy of the buffer keeps):
//  - Every tensor starts at an offset that is a multiple of kTensorAlignment (64) elements; the
//    gaps between tensors are zero and nothing reads or updates them (TensorSpec::reserved
//    counts each gap with the tensor before it, so the gradient buckets and ZeRO-1 shards,
//    built from offset and reserved, cover the whole buffer).
//  - Q, K and V of a layer are one [3I, d] weight and one [3I] bias (I = heads * head_size),
//    so that one GEMM computes all three projections: the query, key and value tensors are
//    views into them, at +0, +I*d, +2I*d (weights) and +0, +I, +2I (biases). The group starts
//    aligned; the key and value views are aligned when I*d (and I) are multiples of 64.
//  - The vocabulary of the token table, an untied decoder and the output bias is padded to
//    PaddedVocabSize (a multiple of kVocabAlignment, 128): their TensorSpec keeps the true
//    shape [V, d] / [V] and numel (what checkpoints, exports and the optimizer see), and
//    `reserved` counts the padded rows too. The padded rows follow the true ones, stay exactly
//    zero (initialisation, optimizer and checkpoints only touch numel elements; no id selects
//    them; the cross-entropy gives their logits zero probability and zero gradient) and are
//    never written to a file.
//
// Names follow Hugging Face `BertForPreTraining` for BERT (so exported safetensors load there),
// `BertForQuestionAnswering` (qa_outputs) and `BertForSequenceClassification` (classifier) for
// the fine-tuning heads, and the same scheme under `lm.` for the causal LM. A fine-tuning
// layout starts with the pre-training layout of its model, tensor for tensor. Weights are stored as
// [out, in] (as torch.nn.Linear), so a projection is y = x W^T + b.
//
// Example:
//   ParameterLayout layout = ParameterLayout::ForModel(config.model());
//   const TensorSpec& q = layout.Get("bert.encoder.layer.0.attention.self.query.weight");
//   float* q_ptr = params + q.offset;   // q.shape == {heads * head_size, d_model}
#ifndef HEADROOM_MODEL_PARAMETER_LAYOUT_H_
#define HEADROOM_MODEL_PARAMETER_LAYOUT_H_

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.pb.h"

namespace headroom {

// How a tensor is initialised (BERT's scheme).
enum class ParamInit {
  kMatrix,     // a weight matrix [out, in] (model.initializer: model/init.h)
  kEmbedding,  // an embedding table [rows, d] (word, position, token type; an untied output)
  kZeros,      // biases
  kOnes,       // LayerNorm gains
};

// Every tensor offset is a multiple of this many elements (see the file comment).
inline constexpr int64_t kTensorAlignment = 64;
// The decoder's vocabulary is padded to a multiple of this many rows.
inline constexpr int64_t kVocabAlignment = 128;

// n rounded up to a multiple of `alignment`.
inline int64_t AlignUp(int64_t n, int64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// `bytes` rounded up to a multiple of kTensorAlignment elements of `element_bytes` each: where a
// piece of a workspace holding several element types starts (the model's bf16 activations beside
// fp32 statistics), as aligned as a tensor of that element type.
inline int64_t AlignTensorBytes(int64_t bytes, int64_t element_bytes) {
  return AlignUp(bytes, kTensorAlignment * element_bytes);
}

// model.vocab_size rounded up to a multiple of kVocabAlignment: the rows of the token table
// (and of an untied decoder and the output bias) in the flat buffers, and the columns of the
// decoder's logits.
int64_t PaddedVocabSize(const ModelConfig& model);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in elements from the start of the flat buffer
  int64_t numel = 0;   // elements of `shape`: the tensor's values, offset .. offset + numel
  // Elements from offset to the next tensor's offset (the last: to total()): numel, then zeros
  // (a padded vocabulary's rows, the alignment gap). The tensors tile the flat buffer.
  int64_t reserved = 0;
  ParamInit init = ParamInit::kZeros;
  bool weight_decay = false;  // false for biases and LayerNorm parameters
  int layer = -1;             // transformer layer index, -1 for embeddings and heads
};

// A fine-tuning head, appended after the BERT pre-training heads:
//   kSpan:       qa_outputs.weight [2, d], qa_outputs.bias [2]           (SQuAD start/end)
//   kClassifier: classifier.weight [num_labels, d], classifier.bias [num_labels] (on the pooler)
struct TaskHead {
  enum class Kind { kNone, kSpan, kClassifier };
  Kind kind = Kind::kNone;
  int num_labels = 0;  // kClassifier
};

// The head a config's finetune block asks for: kSpan for SQUAD, kClassifier with
// finetune.labels for MNLI and CLASSIFY, kNone without a finetune block.
TaskHead TaskHeadOf(const ExperimentConfig& config);

class ParameterLayout {
 public:
  // The layout of `model` (which must have passed ValidateConfig), with `head` (BERT only).
  static ParameterLayout ForModel(const ModelConfig& model, const TaskHead& head = {});
  // ForModel(config.model(), TaskHeadOf(config)): the layout of a run's checkpoints.
  static ParameterLayout ForExperiment(const ExperimentConfig& config);

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  // Elements of the flat buffer: every tensor, the alignment gaps and the padded vocabulary
  // rows (what the parameter, gradient and moment buffers allocate).
  int64_t total() const { return total_; }
  // The number of parameters: the sum of the tensors' numel (the model's size as published,
  // without padding).
  int64_t num_parameters() const { return num_parameters_; }
  // The tensor named `name`, or nullptr.
  const TensorSpec* Find(const std::string& name) const;
  // The tensor named `name`; it must exist (asserted).
  const TensorSpec& Get(const std::string& name) const;

  // The name prefix of every tensor: "bert." or "lm.".
  const std::string& prefix() const { return prefix_; }
  // "bert.encoder.layer.3." (or "lm.encoder.layer.3.").
  std::string LayerPrefix(int layer) const;

 private:
  // Appends a tensor at the next aligned offset (packed: right after the previous tensor, for
  // the key and value views of a fused QKV group), reserving `reserved_rows` rows of
  // shape[1..] (0: the shape's own rows).
  void Add(std::string name, std::vector<int64_t> shape, ParamInit init, bool decay, int layer,
           int64_t reserved_rows = 0, bool packed = false);
  // The tensors of transformer layer i of `m`, in the documented order.
  void AddLayer(const ModelConfig& m, int i);

  std::string prefix_;
  std::vector<TensorSpec> tensors_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
  int64_t num_parameters_ = 0;
};

// Model FLOPs of one training step (forward + backward = 3x forward, 2 FLOPs per multiply-add)
// per token, counting every matrix product: Q/K/V/output projections, attention scores and
// context (full S x S, also for the causal mask), FFN, and the output head (BERT: transform and
// decoder at the `masked_per_seq` masked positions only, pooler and NSP once per sequence;
// causal LM: the decoder at every position). Embedding lookups, LayerNorm, softmax and other
// elementwise work are not counted (the usual MFU convention).
double TrainingFlopsPerToken(const ModelConfig& model, int seq_length, int masked_per_seq);

}  // namespace headroom

#endif  // HEADROOM_MODEL_PARAMETER_LAYOUT_H_
