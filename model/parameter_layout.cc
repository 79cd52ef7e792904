// Parameter layout and FLOP accounting; see parameter_layout.h for the order and names.
#include "model/parameter_layout.h"

#include <cassert>

#include "absl/strings/str_cat.h"
#include "config/load.h"

namespace headroom {

int64_t PaddedVocabSize(const ModelConfig& model) {
  return AlignUp(model.vocab_size(), kVocabAlignment);
}

void ParameterLayout::Add(std::string name, std::vector<int64_t> shape, ParamInit init, bool decay,
                          int layer, int64_t reserved_rows, bool packed) {
  TensorSpec t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.numel = 1;
  for (int64_t d : t.shape) t.numel *= d;
  t.reserved = t.numel;
  if (reserved_rows > 0 && !t.shape.empty() && t.shape[0] > 0) {
    t.reserved = t.numel / t.shape[0] * reserved_rows;
  }
  t.offset = packed ? total_ : AlignUp(total_, kTensorAlignment);
  // The previous tensor reserves the alignment gap too: the tensors tile the buffer.
  if (!tensors_.empty()) tensors_.back().reserved = t.offset - tensors_.back().offset;
  t.init = init;
  t.weight_decay = decay;
  t.layer = layer;
  total_ = t.offset + t.reserved;
  num_parameters_ += t.numel;
  index_[t.name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

std::string ParameterLayout::LayerPrefix(int layer) const {
  return absl::StrCat(prefix_, "encoder.layer.", layer, ".");
}

const TensorSpec* ParameterLayout::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorSpec& ParameterLayout::Get(const std::string& name) const {
  const TensorSpec* t = Find(name);
  assert(t != nullptr && "unknown parameter name");
  return *t;
}

TaskHead TaskHeadOf(const ExperimentConfig& config) {
  TaskHead head;
  if (!config.has_finetune()) return head;
  switch (config.finetune().task()) {
    case FineTuneConfig::SQUAD:
      head.kind = TaskHead::Kind::kSpan;
      break;
    case FineTuneConfig::MNLI:
    case FineTuneConfig::CLASSIFY:
      head.kind = TaskHead::Kind::kClassifier;
      head.num_labels = config.finetune().labels_size();
      break;
    default:
      break;
  }
  return head;
}

ParameterLayout ParameterLayout::ForExperiment(const ExperimentConfig& config) {
  return ForModel(config.model(), TaskHeadOf(config));
}

void ParameterLayout::AddLayer(const ModelConfig& m, int i) {
  const int64_t d = m.d_model(), ff = m.ffn_size();
  const int64_t inner = static_cast<int64_t>(m.num_heads()) * HeadSize(m);
  constexpr ParamInit kN = ParamInit::kMatrix, kZ = ParamInit::kZeros, kO = ParamInit::kOnes;
  const bool pre_ln = m.norm() == ModelConfig::PRE_LN;
  const std::string lp = LayerPrefix(i);
  if (pre_ln) {
    Add(lp + "attention.LayerNorm.weight", {d}, kO, false, i);
    Add(lp + "attention.LayerNorm.bias", {d}, kZ, false, i);
  }
  // One [3I, d] weight and one [3I] bias; query, key and value are views (packed).
  for (const char* part : {"weight", "bias"}) {
    const bool weight = part[0] == 'w';
    for (const char* qkv : {"query", "key", "value"}) {
      Add(absl::StrCat(lp, "attention.self.", qkv, ".", part),
          weight ? std::vector<int64_t>{inner, d} : std::vector<int64_t>{inner}, weight ? kN : kZ,
          weight, i, 0, /*packed=*/qkv[0] != 'q');
    }
  }
  Add(lp + "attention.output.dense.weight", {d, inner}, kN, true, i);
  Add(lp + "attention.output.dense.bias", {d}, kZ, false, i);
  if (pre_ln) {
    Add(lp + "intermediate.LayerNorm.weight", {d}, kO, false, i);
    Add(lp + "intermediate.LayerNorm.bias", {d}, kZ, false, i);
  } else {
    Add(lp + "attention.output.LayerNorm.weight", {d}, kO, false, i);
    Add(lp + "attention.output.LayerNorm.bias", {d}, kZ, false, i);
  }
  Add(lp + "intermediate.dense.weight", {ff, d}, kN, true, i);
  Add(lp + "intermediate.dense.bias", {ff}, kZ, false, i);
  Add(lp + "output.dense.weight", {d, ff}, kN, true, i);
  Add(lp + "output.dense.bias", {d}, kZ, false, i);
  if (!pre_ln) {
    Add(lp + "output.LayerNorm.weight", {d}, kO, false, i);
    Add(lp + "output.LayerNorm.bias", {d}, kZ, false, i);
  }
}

ParameterLayout ParameterLayout::ForModel(const ModelConfig& m, const TaskHead& head) {
  ParameterLayout L;
  const bool bert = m.objective() == ModelConfig::BERT;
  L.prefix_ = bert ? "bert." : "lm.";
  const int64_t d = m.d_model(), V = m.vocab_size(), P = m.max_positions();
  const int64_t Vp = PaddedVocabSize(m);
  constexpr ParamInit kN = ParamInit::kMatrix, kE = ParamInit::kEmbedding, kZ = ParamInit::kZeros,
                      kO = ParamInit::kOnes;
  const std::string& p = L.prefix_;

  const bool pre_ln = m.norm() == ModelConfig::PRE_LN;
  L.Add(p + "embeddings.word_embeddings.weight", {V, d}, kE, true, -1, Vp);
  if (m.position() != ModelConfig::SINUSOIDAL) {
    L.Add(p + "embeddings.position_embeddings.weight", {P, d}, kE, true, -1);
  }
  if (bert)
    L.Add(p + "embeddings.token_type_embeddings.weight", {m.type_vocab_size(), d}, kE, true, -1);
  if (!pre_ln) {
    L.Add(p + "embeddings.LayerNorm.weight", {d}, kO, false, -1);
    L.Add(p + "embeddings.LayerNorm.bias", {d}, kZ, false, -1);
  }

  for (int i = 0; i < m.num_layers(); ++i) L.AddLayer(m, i);
  if (pre_ln) {
    L.Add(p + "encoder.LayerNorm.weight", {d}, kO, false, -1);
    L.Add(p + "encoder.LayerNorm.bias", {d}, kZ, false, -1);
  }

  if (bert) {
    L.Add("bert.pooler.dense.weight", {d, d}, kN, true, -1);
    L.Add("bert.pooler.dense.bias", {d}, kZ, false, -1);
    L.Add("cls.predictions.transform.dense.weight", {d, d}, kN, true, -1);
    L.Add("cls.predictions.transform.dense.bias", {d}, kZ, false, -1);
    L.Add("cls.predictions.transform.LayerNorm.weight", {d}, kO, false, -1);
    L.Add("cls.predictions.transform.LayerNorm.bias", {d}, kZ, false, -1);
    if (!m.tie_output_embedding()) {
      L.Add("cls.predictions.decoder.weight", {V, d}, kE, true, -1, Vp);
    }
    if (HasOutputBias(m)) L.Add("cls.predictions.bias", {V}, kZ, false, -1, Vp);
    L.Add("cls.seq_relationship.weight", {2, d}, kN, true, -1);
    L.Add("cls.seq_relationship.bias", {2}, kZ, false, -1);
    if (head.kind == TaskHead::Kind::kSpan) {
      L.Add("qa_outputs.weight", {2, d}, kN, true, -1);
      L.Add("qa_outputs.bias", {2}, kZ, false, -1);
    } else if (head.kind == TaskHead::Kind::kClassifier) {
      L.Add("classifier.weight", {head.num_labels, d}, kN, true, -1);
      L.Add("classifier.bias", {head.num_labels}, kZ, false, -1);
    }
  } else {
    if (!m.tie_output_embedding()) L.Add("lm.output.weight", {V, d}, kE, true, -1, Vp);
    if (HasOutputBias(m)) L.Add("lm.output.bias", {V}, kZ, false, -1, Vp);
  }
  L.total_ = AlignUp(L.total_, kTensorAlignment);
  L.tensors_.back().reserved = L.total_ - L.tensors_.back().offset;
  return L;
}

double TrainingFlopsPerToken(const ModelConfig& m, int seq_length, int masked_per_seq) {
  const double d = m.d_model(), V = m.vocab_size(), ff = m.ffn_size();
  const double inner = static_cast<double>(m.num_heads()) * HeadSize(m);
  const double S = seq_length;
  // Multiply-adds per token in the forward pass.
  double per_layer = 3 * d * inner     // Q, K, V projections
                     + inner * d       // output projection
                     + 2 * d * ff      // FFN
                     + 2 * S * inner;  // scores QK^T and context PV
  double macs = m.num_layers() * per_layer;
  if (m.objective() == ModelConfig::BERT) {
    double frac = S > 0 ? masked_per_seq / S : 0.0;
    macs += frac * (d * d + d * V);             // MLM transform and decoder at masked positions
    macs += S > 0 ? (d * d + 2 * d) / S : 0.0;  // pooler and NSP, once per sequence
  } else {
    macs += d * V;  // decoder at every position
  }
  return 6.0 * macs;  // 2 FLOPs per MAC, x3 for forward + backward
}

}  // namespace headroom
