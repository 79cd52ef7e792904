// Config loading; see load.h. Text parsing errors come from protobuf's TextFormat with line and
// column; validation errors are produced here, one per call, naming the dotted field path.
#include "config/load.h"

#include <cmath>
#include <filesystem>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace headroom {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Keeps the first text-format error with its position (1-based line and column).
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (error_.empty()) error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  void AddWarning(int, int, const std::string&) override {}
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::Status Invalid(const std::string& source, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", what));
}

absl::Status RequirePositive(const std::string& source, absl::string_view field, int64_t v) {
  if (v <= 0) return Invalid(source, field, absl::StrCat("must be > 0 (got ", v, ")"));
  return absl::OkStatus();
}

absl::Status RequireRate(const std::string& source, absl::string_view field, float v) {
  if (!(v >= 0.0f && v < 1.0f)) {
    return Invalid(source, field, absl::StrCat("must be in [0, 1) (got ", v, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateModel(const ModelConfig& m, const std::string& s) {
  if (m.objective() == ModelConfig::OBJECTIVE_UNSPECIFIED) {
    return Invalid(s, "model.objective", "must be set to BERT or CAUSAL_LM");
  }
  HR_RETURN_IF_ERROR(RequirePositive(s, "model.vocab_size", m.vocab_size()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "model.max_positions", m.max_positions()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "model.num_layers", m.num_layers()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "model.d_model", m.d_model()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "model.num_heads", m.num_heads()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "model.ffn_size", m.ffn_size()));
  if (m.head_size() < 0) {
    return Invalid(s, "model.head_size",
                   absl::StrCat("must be >= 0 (got ", m.head_size(),
                                "); 0 means the standard d_model / num_heads"));
  }
  if (m.head_size() == 0 && m.d_model() % m.num_heads() != 0) {
    return Invalid(s, "model.head_size",
                   absl::StrCat("is 0 (standard attention) but model.num_heads ", m.num_heads(),
                                " does not divide model.d_model ", m.d_model(),
                                "; set model.head_size for fixed head size attention"));
  }
  if (m.objective() == ModelConfig::BERT) {
    if (m.type_vocab_size() <= 0) {
      return Invalid(s, "model.type_vocab_size",
                     absl::StrCat("must be > 0 for a BERT model (got ", m.type_vocab_size(),
                                  "); BERT uses 2"));
    }
  } else if (m.type_vocab_size() != 0) {
    return Invalid(s, "model.type_vocab_size",
                   absl::StrCat("must be 0 for a CAUSAL_LM model (got ", m.type_vocab_size(), ")"));
  }
  if (m.activation() != ModelConfig::GELU && m.activation() != ModelConfig::RELU &&
      m.activation() != ModelConfig::GELU_TANH) {
    return Invalid(s, "model.activation", "must be GELU, GELU_TANH or RELU");
  }
  if (m.norm() != ModelConfig::POST_LN && m.norm() != ModelConfig::PRE_LN) {
    return Invalid(s, "model.norm", "must be POST_LN or PRE_LN");
  }
  if (m.position() != ModelConfig::LEARNED && m.position() != ModelConfig::SINUSOIDAL) {
    return Invalid(s, "model.position", "must be LEARNED or SINUSOIDAL");
  }
  HR_RETURN_IF_ERROR(RequireRate(s, "model.hidden_dropout", m.hidden_dropout()));
  HR_RETURN_IF_ERROR(RequireRate(s, "model.attention_dropout", m.attention_dropout()));
  HR_RETURN_IF_ERROR(RequireRate(s, "model.ffn_dropout", m.ffn_dropout()));
  if (m.initializer() != ModelConfig::TRUNCATED_NORMAL &&
      m.initializer() != ModelConfig::UNIFORM_UNIT_SCALING) {
    return Invalid(s, "model.initializer", "must be TRUNCATED_NORMAL or UNIFORM_UNIT_SCALING");
  }
  if (!(m.layer_norm_epsilon() > 0.0f)) {
    return Invalid(s, "model.layer_norm_epsilon",
                   absl::StrCat("must be > 0 (got ", m.layer_norm_epsilon(), ")"));
  }
  if (!(m.initializer_range() > 0.0f)) {
    return Invalid(s, "model.initializer_range",
                   absl::StrCat("must be > 0 (got ", m.initializer_range(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateData(const ExperimentConfig& c, const std::string& s) {
  const DataConfig& d = c.data();
  if (d.seq_length() < 0) {
    return Invalid(s, "data.seq_length", absl::StrCat("must be >= 0 (got ", d.seq_length(), ")"));
  }
  if (d.seq_length() > c.model().max_positions()) {
    return Invalid(
        s, "data.seq_length",
        absl::StrCat(d.seq_length(), " exceeds model.max_positions ", c.model().max_positions()));
  }
  if (d.max_predictions_per_seq() < 0) {
    return Invalid(s, "data.max_predictions_per_seq",
                   absl::StrCat("must be >= 0 (got ", d.max_predictions_per_seq(), ")"));
  }
  if (d.seq_length() > 0 && d.max_predictions_per_seq() > d.seq_length()) {
    return Invalid(
        s, "data.max_predictions_per_seq",
        absl::StrCat(d.max_predictions_per_seq(), " exceeds data.seq_length ", d.seq_length()));
  }
  if (!(d.masked_lm_prob() > 0.0f && d.masked_lm_prob() < 1.0f)) {
    return Invalid(s, "data.masked_lm_prob",
                   absl::StrCat("must be in (0, 1) (got ", d.masked_lm_prob(), ")"));
  }
  return absl::OkStatus();
}

// BERT examples have a fixed shape: when the phases differ in seq_length or
// max_predictions_per_seq, each phase must name its own train_files (and eval_files, when the
// run evaluates), and phases of different shapes must not name the same ones. (The LM's
// `targets` are padded to the phase's length, so its phases may share shards.)
absl::Status ValidatePhaseData(const ExperimentConfig& c, const std::string& s) {
  const TrainConfig& t = c.train();
  if (c.model().objective() != ModelConfig::BERT || t.phases_size() < 2) return absl::OkStatus();
  auto shape = [](const TrainPhase& p) {
    return std::make_pair(p.seq_length(), p.max_predictions_per_seq());
  };
  bool one_shape = true;
  for (const TrainPhase& p : t.phases()) one_shape &= shape(p) == shape(t.phases(0));
  if (one_shape) return absl::OkStatus();
  bool evaluates = !c.data().eval_files().empty();
  for (const TrainPhase& p : t.phases()) evaluates |= !p.eval_files().empty();
  for (int i = 0; i < t.phases_size(); ++i) {
    const TrainPhase& p = t.phases(i);
    const std::string f = absl::StrCat("train.phases[", i, "]");
    const std::string why = absl::StrCat(
        "BERT phases of different shapes read different shards; name this phase's ", p.seq_length(),
        "-token ones (prepare-bert --max_seq_length=128,512 "
        "--max_predictions_per_seq=20,80 writes DIR/seq128/ and DIR/seq512/)");
    if (p.train_files().empty()) return Invalid(s, f + ".train_files", why);
    if (evaluates && p.eval_files().empty()) return Invalid(s, f + ".eval_files", why);
    for (int j = 0; j < i; ++j) {
      const TrainPhase& q = t.phases(j);
      if (shape(q) == shape(p)) continue;
      if (q.train_files() == p.train_files() || (evaluates && q.eval_files() == p.eval_files())) {
        return Invalid(s, f,
                       absl::StrCat("reads the shards of train.phases[", j, "] (sequence length ",
                                    q.seq_length(), ") at sequence length ", p.seq_length(),
                                    "; name this phase's own"));
      }
    }
  }
  return absl::OkStatus();
}

// The batch: in sequences (global_batch_size) or in tokens (global_batch_tokens), not both, and
// a micro-batch dividing it.
absl::Status ValidateBatchSizes(const TrainConfig& t, const std::string& s) {
  if (t.global_batch_size() < 0) {
    return Invalid(s, "train.global_batch_size",
                   absl::StrCat("must be >= 0 (got ", t.global_batch_size(), ")"));
  }
  if (t.global_batch_tokens() < 0) {
    return Invalid(s, "train.global_batch_tokens",
                   absl::StrCat("must be >= 0 (got ", t.global_batch_tokens(), ")"));
  }
  if (t.global_batch_tokens() > 0 && t.global_batch_size() > 0) {
    return Invalid(s, "train.global_batch_tokens",
                   absl::StrCat("and train.global_batch_size (", t.global_batch_size(),
                                ") are both set; give the batch in tokens or in sequences"));
  }
  if (t.micro_batch_size() < 0) {
    return Invalid(s, "train.micro_batch_size",
                   absl::StrCat("must be >= 0 (got ", t.micro_batch_size(), ")"));
  }
  if (t.micro_batch_size() > 0 && t.global_batch_size() > 0 &&
      t.global_batch_size() % t.micro_batch_size() != 0) {
    return Invalid(s, "train.micro_batch_size",
                   absl::StrCat(t.micro_batch_size(), " does not divide train.global_batch_size ",
                                t.global_batch_size()));
  }
  return absl::OkStatus();
}

// The train settings that depend on the model: label smoothing, and the LayerNorm recomputation
// that only a POST_LN model has.
absl::Status ValidateTrainModelOptions(const ExperimentConfig& c, const std::string& s) {
  const TrainConfig& t = c.train();
  HR_RETURN_IF_ERROR(RequireRate(s, "train.label_smoothing", t.label_smoothing()));
  if (t.layernorm_from_output() && c.model().norm() == ModelConfig::PRE_LN) {
    return Invalid(s, "train.layernorm_from_output",
                   "recomputes post-LN LayerNorm inputs; a PRE_LN model keeps its LayerNorm "
                   "inputs anyway (the residual stream): set it to false");
  }
  return absl::OkStatus();
}

// train.optimizer and train.schedule.
absl::Status ValidateOptimizer(const TrainConfig& t, const std::string& s) {
  const OptimizerConfig& o = t.optimizer();
  HR_RETURN_IF_ERROR(RequireRate(s, "train.optimizer.beta1", o.beta1()));
  HR_RETURN_IF_ERROR(RequireRate(s, "train.optimizer.beta2", o.beta2()));
  if (!(o.epsilon() > 0.0f)) {
    return Invalid(s, "train.optimizer.epsilon",
                   absl::StrCat("must be > 0 (got ", o.epsilon(), ")"));
  }
  if (o.weight_decay() < 0.0f) {
    return Invalid(s, "train.optimizer.weight_decay",
                   absl::StrCat("must be >= 0 (got ", o.weight_decay(), ")"));
  }
  if (o.max_grad_norm() < 0.0f) {
    return Invalid(s, "train.optimizer.max_grad_norm",
                   absl::StrCat("must be >= 0 (got ", o.max_grad_norm(), "); 0 disables clipping"));
  }
  if (t.schedule().learning_rate() < 0.0f) {
    return Invalid(s, "train.schedule.learning_rate",
                   absl::StrCat("must be >= 0 (got ", t.schedule().learning_rate(), ")"));
  }
  if (t.schedule().warmup_steps() < 0) {
    return Invalid(s, "train.schedule.warmup_steps",
                   absl::StrCat("must be >= 0 (got ", t.schedule().warmup_steps(), ")"));
  }
  return absl::OkStatus();
}

// Checkpoints, skipped steps and the attention rank diagnostics of train.
absl::Status ValidateCheckpointsAndDiagnostics(const TrainConfig& t, const std::string& s) {
  if (t.checkpoint_every() < 0) {
    return Invalid(s, "train.checkpoint_every",
                   absl::StrCat("must be >= 0 (got ", t.checkpoint_every(),
                                "); 0 disables periodic checkpoints"));
  }
  if (t.keep_checkpoints() < 1) {
    return Invalid(s, "train.keep_checkpoints",
                   absl::StrCat("must be >= 1 (got ", t.keep_checkpoints(),
                                "): the newest checkpoints kept in the run directory"));
  }
  if (t.max_consecutive_skips() < 1) {
    return Invalid(s, "train.max_consecutive_skips",
                   absl::StrCat("must be >= 1 (got ", t.max_consecutive_skips(),
                                "): skipped non-finite steps in a row that stop the run"));
  }
  if (t.attention_rank_every() < 0) {
    return Invalid(
        s, "train.attention_rank_every",
        absl::StrCat("must be >= 0 (got ", t.attention_rank_every(), "); 0 disables it"));
  }
  if (t.has_attention_rank_sequences() && t.attention_rank_sequences() <= 0) {
    return Invalid(s, "train.attention_rank_sequences",
                   absl::StrCat("must be > 0 (got ", t.attention_rank_sequences(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTrain(const ExperimentConfig& c, const std::string& s) {
  const TrainConfig& t = c.train();
  if (t.steps() < 0)
    return Invalid(s, "train.steps", absl::StrCat("must be >= 0 (got ", t.steps(), ")"));
  HR_RETURN_IF_ERROR(ValidateBatchSizes(t, s));
  HR_RETURN_IF_ERROR(ValidateOptimizer(t, s));
  if (t.precision() != "fp32" && t.precision() != "bf16") {
    return Invalid(s, "train.precision",
                   absl::StrCat("must be \"fp32\" or \"bf16\" (got \"", t.precision(), "\")"));
  }
  if (t.comm() != "auto" && t.comm() != "single" && t.comm() != "mpi" && t.comm() != "nccl") {
    return Invalid(
        s, "train.comm",
        absl::StrCat("must be \"auto\", \"single\", \"mpi\" or \"nccl\" (got \"", t.comm(), "\")"));
  }
  if (!(t.comm_bucket_mb() > 0)) {
    return Invalid(s, "train.comm_bucket_mb",
                   absl::StrCat("must be > 0 MiB (got ", t.comm_bucket_mb(), ")"));
  }
  if (t.zero_stage() != 0 && t.zero_stage() != 1) {
    return Invalid(s, "train.zero_stage",
                   absl::StrCat("must be 0 or 1 (got ", t.zero_stage(), "); 1 is ZeRO-1"));
  }
  if (!(t.comm_timeout_s() > 0) || !std::isfinite(t.comm_timeout_s())) {
    return Invalid(
        s, "train.comm_timeout_s",
        absl::StrCat("must be a finite number of seconds > 0 (got ", t.comm_timeout_s(), ")"));
  }
  if (t.attention() != "auto" && t.attention() != "fused" && t.attention() != "materialized") {
    return Invalid(s, "train.attention",
                   absl::StrCat("must be \"auto\", \"fused\" or \"materialized\" (got \"",
                                t.attention(), "\")"));
  }
  HR_RETURN_IF_ERROR(ValidateCheckpointsAndDiagnostics(t, s));
  HR_RETURN_IF_ERROR(ValidateTrainModelOptions(c, s));
  for (int i = 0; i < t.phases_size(); ++i) {
    const TrainPhase& p = t.phases(i);
    std::string f = absl::StrCat("train.phases[", i, "]");
    HR_RETURN_IF_ERROR(RequirePositive(s, absl::StrCat(f, ".steps"), p.steps()));
    HR_RETURN_IF_ERROR(RequirePositive(s, absl::StrCat(f, ".seq_length"), p.seq_length()));
    if (p.seq_length() > c.model().max_positions()) {
      return Invalid(
          s, absl::StrCat(f, ".seq_length"),
          absl::StrCat(p.seq_length(), " exceeds model.max_positions ", c.model().max_positions()));
    }
  }
  return ValidatePhaseData(c, s);
}

// Google BERT's fine-tuning defaults: run_squad.py for SQuAD, run_classifier.py otherwise.
void FillFineTuneDefaults(FineTuneConfig& f) {
  const bool squad = f.task() == FineTuneConfig::SQUAD;
  if (!f.has_max_seq_length()) f.set_max_seq_length(squad ? 384 : 128);
  if (!f.has_doc_stride()) f.set_doc_stride(128);
  if (!f.has_max_query_length()) f.set_max_query_length(64);
  if (!f.has_learning_rate()) f.set_learning_rate(squad ? 3e-5f : 5e-5f);
  if (!f.has_num_train_epochs()) f.set_num_train_epochs(squad ? 2.0f : 3.0f);
  if (!f.has_train_batch_size()) f.set_train_batch_size(32);
  if (!f.has_micro_batch_size()) f.set_micro_batch_size(0);
  if (!f.has_warmup_proportion()) f.set_warmup_proportion(0.1f);
  if (!f.has_seed()) f.set_seed(42);
  if (!f.has_dropout()) f.set_dropout(0.1f);
  if (!f.has_n_best_size()) f.set_n_best_size(20);
  if (!f.has_max_answer_length()) f.set_max_answer_length(30);
  if (!f.has_eval_batch_size()) f.set_eval_batch_size(8);
  if (!f.has_do_lower_case()) f.set_do_lower_case(true);
  if (!f.has_log_every()) f.set_log_every(10);
  if (!f.has_checkpoint_every()) f.set_checkpoint_every(1000);
  if (!f.has_keep_checkpoints()) f.set_keep_checkpoints(1);
  if (!f.has_long_text_windows()) f.set_long_text_windows(false);
}

absl::Status ValidateFineTune(const ExperimentConfig& c, const std::string& s) {
  if (!c.has_finetune()) return absl::OkStatus();
  const FineTuneConfig& f = c.finetune();
  if (f.task() == FineTuneConfig::TASK_UNSPECIFIED) {
    return Invalid(s, "finetune.task", "must be set to SQUAD, MNLI or CLASSIFY (--task)");
  }
  HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.max_seq_length", f.max_seq_length()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.train_batch_size", f.train_batch_size()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.eval_batch_size", f.eval_batch_size()));
  HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.log_every", f.log_every()));
  if (f.micro_batch_size() < 0 ||
      (f.micro_batch_size() > 0 && f.train_batch_size() % f.micro_batch_size() != 0)) {
    return Invalid(
        s, "finetune.micro_batch_size",
        absl::StrCat(f.micro_batch_size(), " must be 0 or divide finetune.train_batch_size ",
                     f.train_batch_size()));
  }
  if (c.model().max_positions() > 0 && f.max_seq_length() > c.model().max_positions()) {
    return Invalid(s, "finetune.max_seq_length",
                   absl::StrCat(f.max_seq_length(), " exceeds model.max_positions ",
                                c.model().max_positions()));
  }
  if (f.task() == FineTuneConfig::SQUAD) {
    HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.doc_stride", f.doc_stride()));
    HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.max_query_length", f.max_query_length()));
    HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.n_best_size", f.n_best_size()));
    HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.max_answer_length", f.max_answer_length()));
    if (f.max_seq_length() < f.max_query_length() + 4) {
      return Invalid(s, "finetune.max_seq_length",
                     absl::StrCat(f.max_seq_length(),
                                  " leaves no room for the context: it must be "
                                  ">= finetune.max_query_length + 4 = ",
                                  f.max_query_length() + 4, " ([CLS], 2 x [SEP], 1 token)"));
    }
  }
  if (f.long_text_windows()) {
    if (f.task() != FineTuneConfig::CLASSIFY) {
      return Invalid(s, "finetune.long_text_windows",
                     "applies to --task=classify (single sentences) only; SQuAD always cuts its "
                     "contexts into doc_stride windows, and MNLI pairs are truncated");
    }
    HR_RETURN_IF_ERROR(RequirePositive(s, "finetune.doc_stride", f.doc_stride()));
    if (f.max_seq_length() < 3) {
      return Invalid(s, "finetune.max_seq_length",
                     absl::StrCat(f.max_seq_length(),
                                  " leaves no room for a window: it must be >= 3 ([CLS], "
                                  "[SEP], 1 token) with finetune.long_text_windows"));
    }
  }
  if (!(f.learning_rate() >= 0.0f)) {
    return Invalid(s, "finetune.learning_rate",
                   absl::StrCat("must be >= 0 (got ", f.learning_rate(), ")"));
  }
  if (!(f.num_train_epochs() > 0.0f)) {
    return Invalid(s, "finetune.num_train_epochs",
                   absl::StrCat("must be > 0 (got ", f.num_train_epochs(), ")"));
  }
  if (!(f.warmup_proportion() >= 0.0f && f.warmup_proportion() <= 1.0f)) {
    return Invalid(s, "finetune.warmup_proportion",
                   absl::StrCat("must be in [0, 1] (got ", f.warmup_proportion(), ")"));
  }
  HR_RETURN_IF_ERROR(RequireRate(s, "finetune.dropout", f.dropout()));
  if (f.checkpoint_every() < 0) {
    return Invalid(
        s, "finetune.checkpoint_every",
        absl::StrCat("must be >= 0 (got ", f.checkpoint_every(), "); 0: only at the end"));
  }
  return absl::OkStatus();
}

}  // namespace

int HeadSize(const ModelConfig& model) {
  if (model.head_size() > 0) return model.head_size();
  return model.num_heads() > 0 ? model.d_model() / model.num_heads() : 0;
}

bool IsFixedHeadSize(const ModelConfig& model) {
  return model.head_size() > 0 && !(model.d_model() % model.num_heads() == 0 &&
                                    model.head_size() == model.d_model() / model.num_heads());
}

SequenceShape TrainingSequenceShape(const ExperimentConfig& config) {
  const ModelConfig& m = config.model();
  SequenceShape s;
  s.seq = config.data().seq_length() > 0 ? config.data().seq_length() : m.max_positions();
  if (m.objective() == ModelConfig::BERT) {
    s.masked = config.data().max_predictions_per_seq();
    if (s.masked == 0) {
      s.masked = static_cast<int>(std::lround(s.seq * config.data().masked_lm_prob()));
    }
  }
  return s;
}

bool HasOutputBias(const ModelConfig& model) {
  return !model.has_output_bias() || model.output_bias();
}

void FillDefaults(ExperimentConfig& c) {
  ModelConfig& m = *c.mutable_model();
  if (!m.has_activation()) m.set_activation(ModelConfig::GELU);
  if (!m.has_hidden_dropout()) m.set_hidden_dropout(0.1f);
  if (!m.has_attention_dropout()) m.set_attention_dropout(0.1f);
  if (!m.has_layer_norm_epsilon()) m.set_layer_norm_epsilon(1e-12f);
  if (!m.has_tie_output_embedding()) m.set_tie_output_embedding(true);
  if (!m.has_initializer_range()) m.set_initializer_range(0.02f);
  if (!m.has_norm()) m.set_norm(ModelConfig::POST_LN);
  if (!m.has_position()) m.set_position(ModelConfig::LEARNED);
  if (!m.has_scale_embeddings()) m.set_scale_embeddings(false);
  if (!m.has_output_bias()) m.set_output_bias(true);
  if (!m.has_ffn_dropout()) m.set_ffn_dropout(0.0f);
  if (!m.has_initializer()) m.set_initializer(ModelConfig::TRUNCATED_NORMAL);
  DataConfig& d = *c.mutable_data();
  if (!d.has_masked_lm_prob()) d.set_masked_lm_prob(0.15f);
  TrainConfig& t = *c.mutable_train();
  OptimizerConfig& o = *t.mutable_optimizer();
  if (!o.has_type()) o.set_type(OptimizerConfig::ADAMW);
  if (!o.has_beta1()) o.set_beta1(0.9f);
  if (!o.has_beta2()) o.set_beta2(0.999f);
  if (!o.has_epsilon()) o.set_epsilon(1e-6f);
  if (!o.has_weight_decay()) o.set_weight_decay(0.01f);
  if (!o.has_bias_correction()) o.set_bias_correction(false);
  if (!o.has_max_grad_norm()) o.set_max_grad_norm(1.0f);
  ScheduleConfig& sc = *t.mutable_schedule();
  if (!sc.has_type()) sc.set_type(ScheduleConfig::LINEAR_WARMUP_LINEAR_DECAY);
  if (!t.has_seed()) t.set_seed(1234);
  if (!t.has_precision()) t.set_precision("fp32");
  if (!t.has_fp32_residual()) t.set_fp32_residual(true);
  if (!t.has_log_every()) t.set_log_every(10);
  if (!t.has_eval_every()) t.set_eval_every(1000);
  if (!t.has_eval_batches()) t.set_eval_batches(20);
  if (!t.has_checkpoint_every()) t.set_checkpoint_every(1000);
  if (!t.has_keep_checkpoints()) t.set_keep_checkpoints(3);
  if (!t.has_comm()) t.set_comm("auto");
  if (!t.has_comm_bucket_mb()) t.set_comm_bucket_mb(25);
  if (!t.has_comm_timeout_s()) t.set_comm_timeout_s(600);
  if (!t.has_max_consecutive_skips()) t.set_max_consecutive_skips(10);
  if (!t.has_attention_rank_every()) t.set_attention_rank_every(0);
  if (!t.has_attention_rank_sequences()) t.set_attention_rank_sequences(4);
  if (!t.has_attention_rank_per_head()) t.set_attention_rank_per_head(true);
  if (!t.has_attention()) t.set_attention("auto");
  if (!t.has_recompute_gelu()) t.set_recompute_gelu(false);
  if (!t.has_layernorm_from_output()) t.set_layernorm_from_output(false);
  if (c.has_finetune()) FillFineTuneDefaults(*c.mutable_finetune());
  if (!t.has_label_smoothing()) t.set_label_smoothing(0.0f);
}

absl::Status ApplyOverride(ExperimentConfig& config, absl::string_view spec) {
  std::pair<absl::string_view, absl::string_view> kv =
      absl::StrSplit(spec, absl::MaxSplits('=', 1));
  absl::string_view path = absl::StripAsciiWhitespace(kv.first);
  absl::string_view value = absl::StripAsciiWhitespace(kv.second);
  if (path.empty() || spec.find('=') == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", spec,
                     ": expected FIELD=VALUE with a dotted field path, e.g. model.num_heads=16"));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  const Descriptor* desc = config.GetDescriptor();
  std::string open, close;
  for (size_t i = 0; i < parts.size(); ++i) {
    const FieldDescriptor* f = desc->FindFieldByName(std::string(parts[i]));
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", spec, ": unknown field '", parts[i], "' in ", desc->full_name()));
    }
    bool last = i + 1 == parts.size();
    if (!last) {
      if (f->type() != FieldDescriptor::TYPE_MESSAGE || f->is_repeated()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--set ", spec, ": '", parts[i], "' is not a message field, cannot descend into it"));
      }
      absl::StrAppend(&open, parts[i], " { ");
      absl::StrAppend(&close, " }");
      desc = f->message_type();
      continue;
    }
    std::string v(value);
    if (f->type() == FieldDescriptor::TYPE_STRING && !(v.size() >= 2 && v.front() == '"')) {
      v = absl::StrCat("\"", absl::CEscape(v), "\"");
    }
    if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      absl::StrAppend(&open, parts[i], " ", v);
    } else {
      absl::StrAppend(&open, parts[i], ": ", v);
    }
  }
  std::string text = absl::StrCat(open, close);
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.MergeFromString(text, &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", spec, ": cannot set '", path, "' to '", value, "': ",
                     errors.error().empty() ? "parse error"
                                            : errors.error().substr(errors.error().find(' ') + 1)));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const ExperimentConfig& config, const std::string& source) {
  HR_RETURN_IF_ERROR(ValidateModel(config.model(), source));
  HR_RETURN_IF_ERROR(ValidateData(config, source));
  HR_RETURN_IF_ERROR(ValidateTrain(config, source));
  HR_RETURN_IF_ERROR(ValidateFineTune(config, source));
  return absl::OkStatus();
}

absl::StatusOr<ExperimentConfig> ParseConfigUnvalidated(absl::string_view text,
                                                        const std::string& source,
                                                        const std::vector<std::string>& overrides) {
  ExperimentConfig config;
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", errors.error().empty() ? " parse error" : errors.error()));
  }
  for (const std::string& o : overrides) HR_RETURN_IF_ERROR(ApplyOverride(config, o));
  return config;
}

absl::StatusOr<ExperimentConfig> ParseConfig(absl::string_view text, const std::string& source,
                                             const std::vector<std::string>& overrides) {
  HR_ASSIGN_OR_RETURN(ExperimentConfig config, ParseConfigUnvalidated(text, source, overrides));
  FillDefaults(config);
  HR_RETURN_IF_ERROR(ValidateConfig(config, source));
  return config;
}

absl::Status ValidateFineTuneConfig(const ExperimentConfig& config, const std::string& source) {
  return ValidateFineTune(config, source);
}

absl::StatusOr<ExperimentConfig> LoadConfig(const std::string& path,
                                            const std::vector<std::string>& overrides) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(text.status().message(), "; check the --config path"));
  }
  HR_ASSIGN_OR_RETURN(ExperimentConfig config, ParseConfig(*text, path, overrides));
  if (config.name().empty()) config.set_name(std::filesystem::path(path).stem().string());
  return config;
}

}  // namespace headroom
