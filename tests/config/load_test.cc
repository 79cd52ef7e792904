// Config loading: valid files load with defaults; each invalid case is rejected with one line
// naming the file and the field.
#include "config/load.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

constexpr char kValidBert[] = R"pb(
  model {
    objective: BERT
    vocab_size: 100
    max_positions: 32
    type_vocab_size: 2
    num_layers: 2
    d_model: 16
    num_heads: 4
    ffn_size: 32
  }
  data { seq_length: 16 max_predictions_per_seq: 3 }
)pb";

// Parses kValidBert with the text-format fields in `extra` merged over it.
absl::StatusOr<ExperimentConfig> ParseWith(const std::string& extra) {
  ExperimentConfig merged;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(kValidBert, &merged));
  EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(extra, &merged)) << extra;
  std::string text;
  google::protobuf::TextFormat::PrintToString(merged, &text);
  return ParseConfig(text, "cfg.textproto");
}

// Expects `result` to fail with a message naming the file and `field`.
void ExpectRejected(const absl::StatusOr<ExperimentConfig>& result, const std::string& field) {
  ASSERT_FALSE(result.ok()) << "expected an error naming " << field;
  const std::string msg(result.status().message());
  EXPECT_NE(msg.find("cfg.textproto"), std::string::npos) << msg;
  EXPECT_NE(msg.find(field), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "message must be one line: " << msg;
}

TEST(LoadConfigTest, ValidConfigGetsDocumentedDefaults) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model().activation(), ModelConfig::GELU);
  EXPECT_FLOAT_EQ(c->model().hidden_dropout(), 0.1f);
  EXPECT_FLOAT_EQ(c->model().attention_dropout(), 0.1f);
  EXPECT_FLOAT_EQ(c->model().layer_norm_epsilon(), 1e-12f);
  EXPECT_TRUE(c->model().tie_output_embedding());
  EXPECT_FLOAT_EQ(c->data().masked_lm_prob(), 0.15f);
  EXPECT_EQ(c->train().optimizer().type(), OptimizerConfig::ADAMW);
  EXPECT_EQ(HeadSize(c->model()), 4);
  EXPECT_FALSE(IsFixedHeadSize(c->model()));
  // BERT's architecture unless tensor2tensor's options are asked for.
  EXPECT_EQ(c->model().norm(), ModelConfig::POST_LN);
  EXPECT_EQ(c->model().position(), ModelConfig::LEARNED);
  EXPECT_FALSE(c->model().scale_embeddings());
  EXPECT_TRUE(c->model().output_bias());
  EXPECT_EQ(c->train().label_smoothing(), 0.0f);
  EXPECT_EQ(c->train().precision(), "fp32");
  EXPECT_TRUE(c->train().fp32_residual());
}

TEST(LoadConfigTest, BatchIsGivenInSequencesOrInTokens) {
  ExpectRejected(ParseWith("train { global_batch_size: 32 global_batch_tokens: 4096 }"),
                 "train.global_batch_tokens");
  ExpectRejected(ParseWith("train { global_batch_tokens: -1 }"), "train.global_batch_tokens");
  absl::StatusOr<ExperimentConfig> c = ParseWith("train { global_batch_tokens: 4096 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train().global_batch_tokens(), 4096);
}

// BERT's phase 2 at 512 tokens cannot read phase 1's 128-token shards (the run would stop at
// the switch with "feature 'input_ids' has 128 values, expected 512"): such phases must name
// their own.
TEST(LoadConfigTest, BertPhasesOfDifferentShapesNameTheirOwnShards) {
  const std::string phases =
      "model { max_positions: 64 } train { "
      "phases { steps: 5 seq_length: 16 max_predictions_per_seq: 3 %s } "
      "phases { steps: 5 seq_length: 64 max_predictions_per_seq: 10 %s } }";
  auto with = [&](const std::string& a, const std::string& b) {
    std::string text = phases;
    text.replace(text.find("%s"), 2, a);
    text.replace(text.find("%s"), 2, b);
    return ParseWith(text);
  };
  ExpectRejected(with("", ""), "train.phases[0].train_files");
  ExpectRejected(with("train_files: \"s16/train-*\"", ""), "train.phases[1].train_files");
  ExpectRejected(with("train_files: \"s/train-*\"", "train_files: \"s/train-*\""),
                 "reads the shards of train.phases[0]");
  EXPECT_TRUE(with("train_files: \"s16/train-*\"", "train_files: \"s64/train-*\"").ok());
  // With evaluation, the eval shards too.
  ExpectRejected(with("train_files: \"a\" eval_files: \"e16\"", "train_files: \"b\""),
                 "train.phases[1].eval_files");
  EXPECT_TRUE(
      with("train_files: \"a\" eval_files: \"e16\"", "train_files: \"b\" eval_files: \"e64\"")
          .ok());
}

TEST(LoadConfigTest, Tensor2tensorOptionsParseAndOutputBiasDefaultsOn) {
  absl::StatusOr<ExperimentConfig> c = ParseWith(
      "model { norm: PRE_LN position: SINUSOIDAL activation: RELU scale_embeddings: true "
      "output_bias: false } train { label_smoothing: 0.1 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model().norm(), ModelConfig::PRE_LN);
  EXPECT_FALSE(HasOutputBias(c->model()));
  ModelConfig unset;  // a config from before the field (an old checkpoint's) keeps the bias
  EXPECT_TRUE(HasOutputBias(unset));
  ExpectRejected(ParseWith("train { label_smoothing: 1 }"), "train.label_smoothing");
  ExpectRejected(ParseWith("train { label_smoothing: -0.1 }"), "train.label_smoothing");
  ExpectRejected(ParseWith("model { norm: PRE_LN } train { layernorm_from_output: true }"),
                 "train.layernorm_from_output");
}

// Google BERT's fine-tuning flags: run_squad.py's for SQuAD, run_classifier.py's otherwise;
// none of them when the config has no finetune block.
TEST(LoadConfigTest, FineTuneDefaultsFollowTheTask) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_finetune());
  c = ParseWith("model { max_positions: 512 } finetune { task: SQUAD }");
  ASSERT_TRUE(c.ok()) << c.status();
  const FineTuneConfig& f = c->finetune();
  EXPECT_EQ(f.max_seq_length(), 384);
  EXPECT_EQ(f.doc_stride(), 128);
  EXPECT_EQ(f.max_query_length(), 64);
  EXPECT_FLOAT_EQ(f.learning_rate(), 3e-5f);
  EXPECT_FLOAT_EQ(f.num_train_epochs(), 2.0f);
  EXPECT_EQ(f.train_batch_size(), 32);
  EXPECT_FLOAT_EQ(f.warmup_proportion(), 0.1f);
  EXPECT_EQ(f.n_best_size(), 20);
  EXPECT_EQ(f.max_answer_length(), 30);
  EXPECT_FLOAT_EQ(f.dropout(), 0.1f);
  c = ParseWith("model { max_positions: 512 } finetune { task: MNLI learning_rate: 2e-5 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->finetune().max_seq_length(), 128);
  EXPECT_FLOAT_EQ(c->finetune().learning_rate(), 2e-5f);  // given values are kept
  EXPECT_FLOAT_EQ(c->finetune().num_train_epochs(), 3.0f);
}

TEST(LoadConfigTest, FineTuneValuesAreChecked) {
  ExpectRejected(ParseWith("finetune { }"), "finetune.task");
  ExpectRejected(ParseWith("finetune { task: SQUAD max_seq_length: 16 }"),
                 "finetune.max_seq_length");  // no room after a 64-token query
  ExpectRejected(ParseWith("finetune { task: SQUAD max_seq_length: 64 }"),
                 "finetune.max_seq_length");  // beyond model.max_positions 32
  ExpectRejected(ParseWith("finetune { task: CLASSIFY max_seq_length: 16 micro_batch_size: 5 }"),
                 "finetune.micro_batch_size");
  ExpectRejected(ParseWith("finetune { task: CLASSIFY max_seq_length: 16 dropout: 1 }"),
                 "finetune.dropout");
  ExpectRejected(ParseWith("finetune { task: MNLI max_seq_length: 16 num_train_epochs: 0 }"),
                 "finetune.num_train_epochs");
}

TEST(LoadConfigTest, ExplicitZeroDropoutIsKeptNotDefaulted) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("model { hidden_dropout: 0 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model().hidden_dropout(), 0.0f);
}

TEST(LoadConfigTest, UnknownFieldNamesFileLineAndField) {
  absl::StatusOr<ExperimentConfig> c =
      ParseConfig("name: \"x\"\nmodel {\n  num_hedas: 3\n}\n", "cfg.textproto");
  ExpectRejected(c, "num_hedas");
  EXPECT_NE(std::string(c.status().message()).find("cfg.textproto:3:"), std::string::npos)
      << c.status();
}

TEST(LoadConfigTest, ZeroOrNegativeSizesAreRejected) {
  ExpectRejected(ParseWith("model { num_layers: 0 }"), "model.num_layers");
  ExpectRejected(ParseWith("model { d_model: -16 }"), "model.d_model");
  ExpectRejected(ParseWith("model { num_heads: 0 }"), "model.num_heads");
  ExpectRejected(ParseWith("model { vocab_size: 0 }"), "model.vocab_size");
  ExpectRejected(ParseWith("model { ffn_size: -1 }"), "model.ffn_size");
  ExpectRejected(ParseWith("model { max_positions: 0 }"), "model.max_positions");
  ExpectRejected(ParseWith("model { head_size: -2 }"), "model.head_size");
}

TEST(LoadConfigTest, StandardHeadSizeNeedsHeadsDividingDModel) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("model { num_heads: 3 }");
  ExpectRejected(c, "model.head_size");
  EXPECT_NE(std::string(c.status().message()).find("does not divide"), std::string::npos);
}

TEST(LoadConfigTest, FixedHeadSizeAllowsHeadsNotDividingDModel) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("model { num_heads: 3 head_size: 7 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(HeadSize(c->model()), 7);
  EXPECT_TRUE(IsFixedHeadSize(c->model()));
}

TEST(LoadConfigTest, ObjectiveMustBeSet) {
  ExpectRejected(ParseConfig("model { vocab_size: 3 }", "cfg.textproto"), "model.objective");
}

TEST(LoadConfigTest, TokenTypesMatchObjective) {
  ExpectRejected(ParseWith("model { type_vocab_size: 0 }"), "model.type_vocab_size");
  ExpectRejected(ParseWith("model { objective: CAUSAL_LM }"), "model.type_vocab_size");
}

TEST(LoadConfigTest, RatesOutOfRangeAreRejected) {
  ExpectRejected(ParseWith("model { hidden_dropout: 1.0 }"), "model.hidden_dropout");
  ExpectRejected(ParseWith("model { attention_dropout: -0.1 }"), "model.attention_dropout");
  ExpectRejected(ParseWith("model { layer_norm_epsilon: 0 }"), "model.layer_norm_epsilon");
  ExpectRejected(ParseWith("data { masked_lm_prob: 0 }"), "data.masked_lm_prob");
  ExpectRejected(ParseWith("train { optimizer { beta2: 1.5 } }"), "train.optimizer.beta2");
}

TEST(LoadConfigTest, CheckpointSettingsOutOfRangeAreRejected) {
  for (const char* keep : {"0", "-1"}) {
    ExpectRejected(ParseWith(std::string("train { keep_checkpoints: ") + keep + " }"),
                   "train.keep_checkpoints: must be >= 1 (got " + std::string(keep) + ")");
  }
  ExpectRejected(ParseWith("train { checkpoint_every: -1 }"),
                 "train.checkpoint_every: must be >= 0 (got -1)");
  EXPECT_TRUE(ParseWith("train { checkpoint_every: 0 keep_checkpoints: 1 }").ok());
}

TEST(LoadConfigTest, ZeroStageIsZeroOrOne) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train().zero_stage(), 0);
  ASSERT_TRUE(ParseWith("train { zero_stage: 1 }").ok());
  ExpectRejected(ParseWith("train { zero_stage: 2 }"), "train.zero_stage");
  ExpectRejected(ParseWith("train { zero_stage: -1 }"), "train.zero_stage");
}

TEST(LoadConfigTest, TrainingSequenceShapeFillsTheDefaults) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(TrainingSequenceShape(*c).seq, 16);
  EXPECT_EQ(TrainingSequenceShape(*c).masked, 3);
  // No sequence length: max_positions 32; no masked slots: round(32 * 0.15) = 5.
  c->mutable_data()->set_seq_length(0);
  c->mutable_data()->set_max_predictions_per_seq(0);
  EXPECT_EQ(TrainingSequenceShape(*c).seq, 32);
  EXPECT_EQ(TrainingSequenceShape(*c).masked, 5);
  c->mutable_model()->set_objective(ModelConfig::CAUSAL_LM);
  EXPECT_EQ(TrainingSequenceShape(*c).masked, 0);
}

TEST(LoadConfigTest, SequenceLongerThanPositionsIsRejected) {
  ExpectRejected(ParseWith("data { seq_length: 33 }"), "data.seq_length");
  ExpectRejected(ParseWith("data { max_predictions_per_seq: 17 }"), "data.max_predictions_per_seq");
  ExpectRejected(ParseWith("train { phases { steps: 1 seq_length: 64 } }"),
                 "train.phases[0].seq_length");
}

TEST(LoadConfigTest, BatchSizesMustDivide) {
  ExpectRejected(ParseWith("train { global_batch_size: 10 micro_batch_size: 4 }"),
                 "train.micro_batch_size");
}

TEST(LoadConfigTest, PrecisionMustBeKnown) {
  ExpectRejected(ParseWith("train { precision: \"fp8\" }"), "train.precision");
}

TEST(LoadConfigTest, AttentionPathMustBeKnown) {
  ExpectRejected(ParseWith("train { attention: \"flash\" }"), "train.attention");
  absl::StatusOr<ExperimentConfig> ok = ParseWith("train { attention: \"fused\" }");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->train().attention(), "fused");
}

TEST(LoadConfigTest, CommTimeoutDefaultsToTenMinutesAndMustBePositive) {
  absl::StatusOr<ExperimentConfig> c = ParseWith("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train().comm_timeout_s(), 600.0);
  c = ParseWith("train { comm_timeout_s: 2.5 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train().comm_timeout_s(), 2.5);
  ExpectRejected(ParseWith("train { comm_timeout_s: 0 }"), "train.comm_timeout_s");
  ExpectRejected(ParseWith("train { comm_timeout_s: -3 }"), "train.comm_timeout_s");
  ExpectRejected(ParseWith("train { comm_timeout_s: inf }"), "train.comm_timeout_s");
}

TEST(OverrideTest, SetsNestedScalarEnumAndString) {
  absl::StatusOr<ExperimentConfig> c =
      ParseConfig(kValidBert, "cfg.textproto",
                  {"model.num_heads=8", "model.objective=BERT", "data.vocab_file=/tmp/v.txt",
                   "train.optimizer.type=LAMB"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model().num_heads(), 8);
  EXPECT_EQ(c->data().vocab_file(), "/tmp/v.txt");
  EXPECT_EQ(c->train().optimizer().type(), OptimizerConfig::LAMB);
}

TEST(OverrideTest, OverrideIsValidatedLikeTheFile) {
  absl::StatusOr<ExperimentConfig> c =
      ParseConfig(kValidBert, "cfg.textproto", {"model.num_heads=5"});
  ExpectRejected(c, "model.head_size");
}

TEST(OverrideTest, UnknownFieldNamesTheFlag) {
  ExperimentConfig c;
  absl::Status s = ApplyOverride(c, "model.num_hedas=3");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("--set model.num_hedas=3"), std::string::npos);
  EXPECT_NE(std::string(s.message()).find("num_hedas"), std::string::npos);
}

TEST(OverrideTest, BadValueAndMissingEqualsAreErrors) {
  ExperimentConfig c;
  EXPECT_FALSE(ApplyOverride(c, "model.num_heads=many").ok());
  EXPECT_FALSE(ApplyOverride(c, "model.num_heads").ok());
  EXPECT_FALSE(ApplyOverride(c, "model.num_heads.x=1").ok());
}

TEST(LoadConfigTest, MissingFileNamesThePath) {
  absl::StatusOr<ExperimentConfig> c = LoadConfig("/nonexistent/x.textproto");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("/nonexistent/x.textproto"), std::string::npos);
}

TEST(LoadConfigTest, NameDefaultsToFileStem) {
  std::filesystem::path p = std::filesystem::temp_directory_path() / "headroom_tiny.textproto";
  std::ofstream(p) << kValidBert;
  absl::StatusOr<ExperimentConfig> c = LoadConfig(p.string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name(), "headroom_tiny");
  std::filesystem::remove(p);
}

// Every shipped config loads and validates: run configs whole; fine-tuning configs (a finetune
// block and no model, which `headroom finetune` takes from its checkpoint) in their block, with
// the defaults of their task.
TEST(LoadConfigTest, ShippedConfigsAreValid) {
  const char* src = std::getenv("HEADROOM_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "HEADROOM_SOURCE_DIR not set (ctest sets it)";
  int n = 0, finetune = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(std::filesystem::path(src) / "configs")) {
    if (e.path().extension() != ".textproto") continue;
    ++n;
    std::ifstream in(e.path());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    absl::StatusOr<ExperimentConfig> c = ParseConfigUnvalidated(text, e.path().string());
    ASSERT_TRUE(c.ok()) << c.status();
    if (c->has_finetune() && !c->has_model()) {
      ++finetune;
      FillDefaults(*c);
      EXPECT_TRUE(ValidateFineTuneConfig(*c, e.path().string()).ok()) << e.path();
      continue;
    }
    c = LoadConfig(e.path().string());
    EXPECT_TRUE(c.ok()) << c.status();
  }
  EXPECT_GE(n, 30);
  EXPECT_GE(finetune, 4);
}

}  // namespace
}  // namespace headroom
