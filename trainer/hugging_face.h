// Hugging Face interoperability: BERT's config.json, and weights from a Hugging Face
// safetensors file copied into a headroom parameter layout by name.
//
// config.json is transformers' BertConfig: vocab_size, hidden_size (d_model),
// num_hidden_layers, num_attention_heads, intermediate_size (ffn_size), hidden_act ("gelu", the
// erf form), hidden_dropout_prob, attention_probs_dropout_prob, max_position_embeddings,
// type_vocab_size, initializer_range, layer_norm_eps, tie_word_embeddings. headroom adds
// "head_size" for fixed head size attention (h x d_p != d): stock transformers ignores it and
// cannot load such a model (its BertModel has h x d/h-wide projections), so those files are
// for headroom (and code that reads the field) only.
//
// Weight names (model/parameter_layout.h uses BertForPreTraining's): a headroom tensor
// "bert.X" is looked up as "bert.X" (BertForPreTraining, BertForQuestionAnswering, ...) and as
// "X" (a bare BertModel), and every "LayerNorm.weight" / "LayerNorm.bias" also under the older
// "LayerNorm.gamma" / "LayerNorm.beta" (Google-converted checkpoints such as
// bert-base-uncased). F32, F16, BF16 and F64 tensors are accepted (converted to float).
//
// Example:
//   HR_ASSIGN_OR_RETURN(ModelConfig m, ReadHuggingFaceConfig("bert/config.json"));
//   ParameterLayout layout = ParameterLayout::ForModel(m, head);
//   HR_ASSIGN_OR_RETURN(SafeTensorsFile f, SafeTensorsFile::Read("bert/model.safetensors"));
//   std::vector<float> w = ...;  // initialised
//   HR_ASSIGN_OR_RETURN(std::vector<std::string> kept, CopyHuggingFaceWeights(f, layout, w));
#ifndef HEADROOM_TRAINER_HUGGING_FACE_H_
#define HEADROOM_TRAINER_HUGGING_FACE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "model/parameter_layout.h"
#include "trainer/checkpoint.h"
#include "trainer/safetensors.h"

namespace headroom {

// The BertConfig JSON of `config`'s model (pretty-printed, sorted keys, final newline). A
// config with a finetune block names the matching architecture (BertForQuestionAnswering, or
// BertForSequenceClassification with id2label / label2id from finetune.labels).
std::string HuggingFaceConfigJson(const ExperimentConfig& config);

// The BERT ModelConfig of a config.json text (`source` names it in errors): InvalidArgument for
// a missing or mistyped required field, a hidden_act other than "gelu", a
// position_embedding_type other than "absolute", or a model_type other than "bert".
[[nodiscard]] absl::StatusOr<ModelConfig> ParseHuggingFaceConfig(const std::string& text,
                                                                 const std::string& source);
[[nodiscard]] absl::StatusOr<ModelConfig> ReadHuggingFaceConfig(const std::string& path);

// Copies every tensor of `layout` that `file` holds (names as in the file comment) into
// `params` (layout.total() floats, layout order). Tensors of the encoder (names starting with
// "bert." other than the pooler) are required: InvalidArgument naming the tensor and the file
// when one is missing or has another shape. The others (pooler, pre-training and task heads)
// keep their values when absent; their names are returned.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> CopyHuggingFaceWeights(
    const SafeTensorsFile& file, const ParameterLayout& layout, std::vector<float>& params);

// Writes `checkpoint`'s weights to the safetensors file `path` (its layout's names) and
// HuggingFaceConfigJson beside it as DIR/config.json, both atomically. Returns the config.json
// path.
[[nodiscard]] absl::StatusOr<std::string> ExportHuggingFace(const Checkpoint& checkpoint,
                                                            const std::string& path);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_HUGGING_FACE_H_
