// Hugging Face config.json and weight-name interop; see hugging_face.h.
#include "trainer/hugging_face.h"

#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/bf16.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "nlohmann/json.hpp"

namespace headroom {
namespace {

using nlohmann::json;

// IEEE half to float (bfloat16: base/bf16.h).
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Copies tensor `t` of `file` (any float dtype) into out[0 .. numel).
absl::Status CopyAsFloat(const SafeTensorsFile& file, const SafeTensorInfo& t, float* out) {
  const absl::string_view d = file.data(t);
  const size_t n = static_cast<size_t>(t.numel);
  for (size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::kF32:
        std::memcpy(out + i, d.data() + 4 * i, 4);
        break;
      case DType::kF64: {
        double v;
        std::memcpy(&v, d.data() + 8 * i, 8);
        out[i] = static_cast<float>(v);
        break;
      }
      case DType::kF16:
      case DType::kBF16: {
        uint16_t v;
        std::memcpy(&v, d.data() + 2 * i, 2);
        out[i] = t.dtype == DType::kF16 ? HalfToFloat(v) : static_cast<float>(Bf16::FromBits(v));
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat(file.source(), ": tensor ", t.name, " is ",
                                                       DTypeName(t.dtype),
                                                       "; expected F32, F16, BF16 or F64"));
    }
  }
  return absl::OkStatus();
}

// The names a layout tensor may have in a Hugging Face file, most specific first.
std::vector<std::string> CandidateNames(const std::string& name) {
  std::vector<std::string> out = {name};
  if (absl::StartsWith(name, "bert.")) out.push_back(name.substr(5));
  const size_t n = out.size();
  for (size_t i = 0; i < n; ++i) {
    if (absl::EndsWith(out[i], "LayerNorm.weight")) {
      out.push_back(absl::StrReplaceAll(out[i], {{"LayerNorm.weight", "LayerNorm.gamma"}}));
    } else if (absl::EndsWith(out[i], "LayerNorm.bias")) {
      out.push_back(absl::StrReplaceAll(out[i], {{"LayerNorm.bias", "LayerNorm.beta"}}));
    }
  }
  return out;
}

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

}  // namespace

std::string HuggingFaceConfigJson(const ExperimentConfig& config) {
  const ModelConfig& m = config.model();
  json j;
  std::string architecture = "BertForPreTraining";
  if (config.has_finetune()) {
    if (config.finetune().task() == FineTuneConfig::SQUAD) {
      architecture = "BertForQuestionAnswering";
    } else {
      architecture = "BertForSequenceClassification";
      json id2label = json::object(), label2id = json::object();
      for (int i = 0; i < config.finetune().labels_size(); ++i) {
        id2label[std::to_string(i)] = config.finetune().labels(i);
        label2id[config.finetune().labels(i)] = i;
      }
      j["id2label"] = id2label;
      j["label2id"] = label2id;
    }
  }
  j["architectures"] = {architecture};
  j["model_type"] = "bert";
  j["vocab_size"] = m.vocab_size();
  j["hidden_size"] = m.d_model();
  j["num_hidden_layers"] = m.num_layers();
  j["num_attention_heads"] = m.num_heads();
  j["intermediate_size"] = m.ffn_size();
  j["hidden_act"] = "gelu";
  j["hidden_dropout_prob"] = static_cast<double>(m.hidden_dropout());
  j["attention_probs_dropout_prob"] = static_cast<double>(m.attention_dropout());
  j["max_position_embeddings"] = m.max_positions();
  j["type_vocab_size"] = m.type_vocab_size();
  j["initializer_range"] = static_cast<double>(m.initializer_range());
  j["layer_norm_eps"] = static_cast<double>(m.layer_norm_epsilon());
  j["position_embedding_type"] = "absolute";
  j["pad_token_id"] = 0;
  j["tie_word_embeddings"] = m.tie_output_embedding();
  if (IsFixedHeadSize(m)) j["head_size"] = HeadSize(m);
  return j.dump(2) + "\n";
}

absl::StatusOr<ModelConfig> ParseHuggingFaceConfig(const std::string& text,
                                                   const std::string& source) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad(source, "not a JSON object");
  auto integer = [&](const char* key, bool required, int64_t fallback) -> absl::StatusOr<int64_t> {
    auto it = j.find(key);
    if (it == j.end()) {
      if (required) return Bad(source, absl::StrCat("\"", key, "\" is missing"));
      return fallback;
    }
    if (!it->is_number_integer())
      return Bad(source, absl::StrCat("\"", key, "\" is not an integer"));
    return it->get<int64_t>();
  };
  auto number = [&](const char* key, double fallback) -> absl::StatusOr<double> {
    auto it = j.find(key);
    if (it == j.end()) return fallback;
    if (!it->is_number()) return Bad(source, absl::StrCat("\"", key, "\" is not a number"));
    return it->get<double>();
  };
  auto string = [&](const char* key, const char* want) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end()) return absl::OkStatus();
    if (!it->is_string() || it->get<std::string>() != want) {
      return Bad(source, absl::StrCat("\"", key, "\" is ", it->dump(), "; headroom supports \"",
                                      want, "\" only"));
    }
    return absl::OkStatus();
  };
  HR_RETURN_IF_ERROR(string("model_type", "bert"));
  HR_RETURN_IF_ERROR(string("hidden_act", "gelu"));
  HR_RETURN_IF_ERROR(string("position_embedding_type", "absolute"));
  ModelConfig m;
  m.set_objective(ModelConfig::BERT);
  HR_ASSIGN_OR_RETURN(int64_t vocab, integer("vocab_size", true, 0));
  HR_ASSIGN_OR_RETURN(int64_t d, integer("hidden_size", true, 0));
  HR_ASSIGN_OR_RETURN(int64_t layers, integer("num_hidden_layers", true, 0));
  HR_ASSIGN_OR_RETURN(int64_t heads, integer("num_attention_heads", true, 0));
  HR_ASSIGN_OR_RETURN(int64_t ffn, integer("intermediate_size", true, 0));
  HR_ASSIGN_OR_RETURN(int64_t positions, integer("max_position_embeddings", true, 0));
  HR_ASSIGN_OR_RETURN(int64_t types, integer("type_vocab_size", false, 2));
  HR_ASSIGN_OR_RETURN(int64_t head_size, integer("head_size", false, 0));
  HR_ASSIGN_OR_RETURN(double hidden_dropout, number("hidden_dropout_prob", 0.1));
  HR_ASSIGN_OR_RETURN(double attention_dropout, number("attention_probs_dropout_prob", 0.1));
  HR_ASSIGN_OR_RETURN(double range, number("initializer_range", 0.02));
  HR_ASSIGN_OR_RETURN(double eps, number("layer_norm_eps", 1e-12));
  m.set_vocab_size(static_cast<int32_t>(vocab));
  m.set_d_model(static_cast<int32_t>(d));
  m.set_num_layers(static_cast<int32_t>(layers));
  m.set_num_heads(static_cast<int32_t>(heads));
  m.set_ffn_size(static_cast<int32_t>(ffn));
  m.set_max_positions(static_cast<int32_t>(positions));
  m.set_type_vocab_size(static_cast<int32_t>(types));
  // A head_size equal to d / h is the standard model.
  m.set_head_size(heads > 0 && head_size * heads == d ? 0 : static_cast<int32_t>(head_size));
  m.set_hidden_dropout(static_cast<float>(hidden_dropout));
  m.set_attention_dropout(static_cast<float>(attention_dropout));
  m.set_initializer_range(static_cast<float>(range));
  m.set_layer_norm_epsilon(static_cast<float>(eps));
  auto tie = j.find("tie_word_embeddings");
  m.set_tie_output_embedding(tie == j.end() || !tie->is_boolean() || tie->get<bool>());
  m.set_activation(ModelConfig::GELU);
  ExperimentConfig e;
  *e.mutable_model() = m;
  FillDefaults(e);
  HR_RETURN_IF_ERROR(ValidateConfig(e, source));
  return e.model();
}

absl::StatusOr<ModelConfig> ReadHuggingFaceConfig(const std::string& path) {
  HR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseHuggingFaceConfig(text, path);
}

absl::StatusOr<std::vector<std::string>> CopyHuggingFaceWeights(const SafeTensorsFile& file,
                                                                const ParameterLayout& layout,
                                                                std::vector<float>& params) {
  std::vector<std::string> absent;
  for (const TensorSpec& t : layout.tensors()) {
    const SafeTensorInfo* found = nullptr;
    for (const std::string& name : CandidateNames(t.name)) {
      found = file.Find(name);
      if (found != nullptr) break;
    }
    const bool required =
        absl::StartsWith(t.name, "bert.") && !absl::StartsWith(t.name, "bert.pooler.");
    if (found == nullptr) {
      if (required) {
        return Bad(file.source(),
                   absl::StrCat("no tensor ", t.name, " (nor ", CandidateNames(t.name).back(),
                                "); is this a BERT model's safetensors file?"));
      }
      absent.push_back(t.name);
      continue;
    }
    if (found->shape != t.shape) {
      return Bad(file.source(),
                 absl::StrCat("tensor ", found->name, " has shape ", ShapeString(found->shape),
                              ", the model of config.json needs ", ShapeString(t.shape)));
    }
    HR_RETURN_IF_ERROR(CopyAsFloat(file, *found, params.data() + t.offset));
  }
  return absent;
}

absl::StatusOr<std::string> ExportHuggingFace(const Checkpoint& checkpoint,
                                              const std::string& path) {
  const ParameterLayout layout = ParameterLayout::ForExperiment(checkpoint.config);
  SafeTensorsWriter w;
  w.SetMetadata("format", "pt");
  w.SetMetadata("headroom_step", absl::StrCat(checkpoint.state.step));
  for (const TensorSpec& t : layout.tensors()) {
    HR_RETURN_IF_ERROR(w.AddF32(t.name, t.shape, checkpoint.params.data() + t.offset));
  }
  HR_RETURN_IF_ERROR(w.Write(path));
  const std::string config_path =
      (std::filesystem::path(path).parent_path() / "config.json").string();
  HR_RETURN_IF_ERROR(WriteFileAtomically(config_path, HuggingFaceConfigJson(checkpoint.config)));
  return config_path;
}

}  // namespace headroom
