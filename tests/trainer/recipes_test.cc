// The paper's recipes through the trainer (issue 16): BERT's two phases switch shards and
// sequence length at the boundary, and a run SIGKILLed on either side of it resumes bit for bit;
// packed LM rows train as one sentence per row, loss for loss, on both attention paths; the
// learning rate logged at steps W/2, W and 4W is tensor2tensor's
// 0.1 * min(1, t/W) / sqrt(max(t, W)).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "base/file.h"
#include "config/load.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "data/record_writer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/trainer/killed_run.h"
#include "tests/trainer/lm_shards.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluation.h"
#include "trainer/trainer.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

// `n` BERT records of `seq` tokens with `preds` masked slots in DIR/NAME-0.tfrecord: random
// ids in [5, 20), two segments, the masked slots [MASK] (id 4) at distinct positions.
void WriteBertRecords(const std::string& dir, const std::string& name, int n, int seq, int preds,
                      uint32_t seed) {
  fs::create_directories(dir);
  auto w = RecordWriter::Create(dir + "/" + name + "-0.tfrecord");
  ASSERT_TRUE(w.ok()) << w.status();
  std::mt19937 rng(seed);
  for (int i = 0; i < n; ++i) {
    std::vector<int64_t> ids(seq), mask(seq, 1), segments(seq, 0), positions, labels;
    for (int j = 0; j < seq; ++j) {
      ids[j] = 5 + rng() % 15;
      segments[j] = j >= seq / 2;
    }
    for (int k = 0; k < preds; ++k) {
      const int p = 1 + k * (seq - 2) / preds;  // distinct, never [CLS] at 0
      positions.push_back(p);
      labels.push_back(ids[p]);
      ids[p] = 4;
    }
    tf::Example e;
    SetInt64Feature(&e, "input_ids", ids);
    SetInt64Feature(&e, "input_mask", mask);
    SetInt64Feature(&e, "segment_ids", segments);
    SetInt64Feature(&e, "masked_lm_positions", positions);
    SetInt64Feature(&e, "masked_lm_ids", labels);
    SetFloatFeature(&e, "masked_lm_weights", std::vector<float>(preds, 1.0f));
    SetInt64Feature(&e, "next_sentence_labels", std::vector<int64_t>{int64_t(rng() % 2)});
    ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
  }
  ASSERT_TRUE((*w)->Close().ok());
}

// The model and data blocks of the recipes' tiny BERT.
constexpr char kTinyBert[] = R"cfg(
  model {
    objective: BERT vocab_size: 20 max_positions: 16 type_vocab_size: 2 num_layers: 1
    d_model: 8 num_heads: 2 ffn_size: 16
  }
  data { seq_length: 8 max_predictions_per_seq: 2 }
)cfg";

class RecipesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "recipes_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  TrainOptions Options(const std::string& config, const std::string& run) {
    auto c = ParseConfig(config, "recipe.textproto");
    EXPECT_TRUE(c.ok()) << c.status();
    TrainOptions o;
    o.config = *c;
    o.run_dir = root_ + "/" + run;
    o.console = nullptr;
    return o;
  }

  // BERT's recipe in miniature: phase 1, 3 steps at 8 tokens (2 predictions), then (with
  // `two_phases`) phase 2, 3 steps at 16 (3 predictions) with a re-warm-up, each on its own
  // shards under root_/data/seqN (and, with `eval`, its own eval shards); `train_extra` closes the
  // train block.
  std::string BertRecipe(bool two_phases, bool eval, const std::string& train_extra) const {
    auto phase = [eval](int seq, int predictions) {
      const std::string dir = "DATA/seq" + std::to_string(seq);
      return absl::StrCat("phases { steps: 3 seq_length: ", seq,
                          " max_predictions_per_seq: ", predictions,
                          " warmup_steps: 1 train_files: \"", dir, "/train-*\"",
                          eval ? absl::StrCat(" eval_files: \"", dir, "/valid-*\"") : "", " }\n");
    };
    return absl::StrReplaceAll(
        absl::StrCat(kTinyBert, R"cfg(
      train {
        global_batch_size: 4
        optimizer { type: ADAMW bias_correction: true }
        schedule { type: LINEAR_WARMUP_LINEAR_DECAY learning_rate: 0.01 }
      )cfg",
                     phase(8, 2), two_phases ? phase(16, 3) : "", train_extra, " }"),
        {{"DATA", root_ + "/data"}});
  }

  std::string root_;
};

// BERT's recipe in miniature: 3 steps at 8 tokens (2 predictions), then 3 at 16 (3 predictions),
// each phase with its own shards (prepare-bert --max_seq_length=8,16 would write them), a
// re-warm-up and evaluation on the phase's own eval shards. Runs first: fork needs a parent
// without threads.
TEST_F(RecipesTest, BertPhasesSwitchShardsAndResumeAcrossTheBoundaryBitwise) {
  for (int seq : {8, 16}) {
    const std::string dir = root_ + "/data/seq" + std::to_string(seq);
    WriteBertRecords(dir, "train", 12, seq, seq == 8 ? 2 : 3, seq);
    WriteBertRecords(dir, "valid", 4, seq, seq == 8 ? 2 : 3, seq + 1);
  }
  const std::string config = BertRecipe(
      /*two_phases=*/true, /*eval=*/true,
      "log_every: 1 eval_every: 3 eval_batches: 1 checkpoint_every: 1 keep_checkpoints: 10");
  // Killed after steps 3 (the last checkpoint is step 2, in phase 1) and 5 (checkpoint 4, in
  // phase 2), each then resumed to the end.
  for (int kill_after : {3, 5}) {
    testing::TrainKilledAfterStep(Options(config, "resumed" + std::to_string(kill_after)),
                                  kill_after);
    if (HasFatalFailure()) return;
  }
  auto straight = Train(Options(config, "straight"));
  ASSERT_TRUE(straight.ok()) << straight.status();
  ASSERT_EQ(straight->losses.size(), 6u);
  for (int kill_after : {3, 5}) {
    TrainOptions o = Options(config, "resumed" + std::to_string(kill_after));
    o.resume = true;
    auto resumed = Train(o);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ(resumed->first_step, kill_after - 1);
    ASSERT_EQ(resumed->losses.size(), static_cast<size_t>(7 - kill_after));
    for (size_t i = 0; i < resumed->losses.size(); ++i) {
      EXPECT_EQ(resumed->losses[i], straight->losses[kill_after - 1 + i])  // bitwise
          << "step " << kill_after + i << " after a kill at step " << kill_after;
    }
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
      auto a = ReadFile(CheckpointDir(root_ + "/straight", 6) + "/" + f);
      auto b = ReadFile(CheckpointDir(o.run_dir, 6) + "/" + f);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_TRUE(*a == *b) << f << " after a kill at step " << kill_after;
    }
  }
  // Evaluation ran on each phase's own shards: at step 3 (8 tokens) and step 6 (16 tokens).
  std::ifstream in(root_ + "/straight/metrics.jsonl");
  std::map<int64_t, double> eval_loss;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("split", "") == "eval") eval_loss[j["step"].get<int64_t>()] = j["loss"];
  }
  EXPECT_EQ(eval_loss.size(), 2u);
  EXPECT_TRUE(eval_loss.count(3) && eval_loss.count(6));
  // `headroom eval` on the last checkpoint (phase 2) reads phase 2's own 16-token eval shards
  // (there is no data.eval_files): 4 sequences, scored as the trainer scored them at step 6.
  auto e = EvaluateCheckpoint(root_ + "/straight", "", 1, 4, DeviceKind::kCpu);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->sequences, 4);
  EXPECT_NEAR(e->loss, eval_loss[6], 1e-6 * eval_loss[6]);
}

// A finished run extended by a new phase (BERT's phase 2 added once phase 1 has run alone): the
// checkpoint at the boundary holds phase 1's data position, which is not phase 2's; phase 2
// reads its own shards from the start, so the extended run is the run planned with both phases,
// loss for loss. (Both phases have 12 records: a restored position would fit, silently.)
TEST_F(RecipesTest, ARunExtendedByANewPhaseTrainsAsTheRunPlannedWithIt) {
  for (int seq : {8, 16}) {
    WriteBertRecords(root_ + "/data/seq" + std::to_string(seq), "train", 12, seq, seq == 8 ? 2 : 3,
                     seq);
  }
  auto config = [&](bool two_phases) {
    return BertRecipe(two_phases, /*eval=*/false, "checkpoint_every: 3 keep_checkpoints: 10");
  };
  auto phase1 = Train(Options(config(false), "extended"));
  ASSERT_TRUE(phase1.ok()) << phase1.status();
  TrainOptions o = Options(config(true), "extended");
  o.resume = true;
  auto extended = Train(o);
  ASSERT_TRUE(extended.ok()) << extended.status();
  auto planned = Train(Options(config(true), "planned"));
  ASSERT_TRUE(planned.ok()) << planned.status();
  ASSERT_EQ(planned->losses.size(), 6u);
  EXPECT_EQ(extended->first_step, 3);
  ASSERT_EQ(extended->losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(extended->losses[i], planned->losses[3 + i]) << "step " << 4 + i;  // bitwise
  }
}

TEST_F(RecipesTest, APhaseReadingShardsOfAnotherLengthFailsBeforeTheFirstStep) {
  WriteBertRecords(root_ + "/data/seq8", "train", 8, 8, 2, 1);
  // Phase 2 (16 tokens) names the 8-token shards too.
  const std::string config = absl::StrReplaceAll(absl::StrCat(kTinyBert, R"cfg(
    train {
      global_batch_size: 4
      phases { steps: 2 seq_length: 8 max_predictions_per_seq: 2 train_files: "DATA/seq8/*" }
      phases { steps: 2 seq_length: 16 max_predictions_per_seq: 3 train_files: "DATA/seq*/*" }
      checkpoint_every: 0
    })cfg"),
                                                 {{"DATA", root_ + "/data"}});
  int steps = 0;
  TrainOptions o = Options(config, "run");
  o.on_step = [&steps](int64_t, double) { ++steps; };
  auto r = Train(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(steps, 0);
  EXPECT_NE(r.status().message().find("train.phases[1]"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("input_ids"), std::string::npos) << r.status();
}

// Sentences of 2 to 7 tokens, one per record, or packed (prepare-lm --pack's layout) into
// 16-token records with their segments and positions.
void WriteSentences(const std::string& dir, bool pack) {
  std::mt19937 rng(9);
  std::vector<std::vector<int64_t>> sentences(18);
  for (auto& s : sentences) {
    s.resize(2 + rng() % 6);
    for (int64_t& t : s) t = 2 + rng() % 14;
    s.back() = 1;  // EOS
  }
  fs::create_directories(dir);
  auto w = RecordWriter::Create(dir + "/train-0.tfrecord");
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<int64_t> targets, segmentation, position;
  auto flush = [&] {
    tf::Example e;
    SetInt64Feature(&e, "targets", targets);
    if (pack) {
      SetInt64Feature(&e, "targets_segmentation", segmentation);
      SetInt64Feature(&e, "targets_position", position);
    }
    ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
    targets.clear();
    segmentation.clear();
    position.clear();
  };
  for (const auto& s : sentences) {
    if (!targets.empty() && (!pack || targets.size() + s.size() > 16)) flush();
    const int64_t segment = segmentation.empty() ? 1 : segmentation.back() + 1;
    for (size_t i = 0; i < s.size(); ++i) {
      targets.push_back(s[i]);
      segmentation.push_back(segment);
      position.push_back(static_cast<int64_t>(i));
    }
  }
  flush();
  ASSERT_TRUE((*w)->Close().ok());
}

int64_t Records(const std::string& path) {
  int64_t n = 0;
  auto r = RecordReader::Open(path);
  std::string record;
  while (r.ok() && *(*r)->ReadNext(&record)) ++n;
  return n;
}

// Every step trains on all the sentences (the global batch is the whole data set), so the packed
// run and the one-sentence-per-row run see the same tokens each step: the same losses up to
// float rounding, step after step, through the materialised and the fused attention.
TEST_F(RecipesTest, PackedLmTrainingEqualsOneSentencePerRowLossForLoss) {
  WriteSentences(root_ + "/packed", true);
  WriteSentences(root_ + "/plain", false);
  const int64_t packed_rows = Records(root_ + "/packed/train-0.tfrecord");
  const int64_t plain_rows = Records(root_ + "/plain/train-0.tfrecord");
  ASSERT_EQ(plain_rows, 18);
  ASSERT_LT(packed_rows, plain_rows);
  for (const char* attention : {"materialized", "fused"}) {
    std::vector<double> losses[2];
    int i = 0;
    for (const auto& [dir, rows] : {std::pair{"packed", packed_rows}, {"plain", plain_rows}}) {
      const std::string config =
          absl::StrReplaceAll(R"cfg(
        model {
          objective: CAUSAL_LM vocab_size: 16 max_positions: 16 num_layers: 2 d_model: 8
          num_heads: 2 head_size: 4 ffn_size: 16 hidden_dropout: 0 attention_dropout: 0
          norm: PRE_LN position: SINUSOIDAL
        }
        data { seq_length: 16 }
        train {
          steps: 5 global_batch_size: ROWS
          optimizer { type: ADAMW bias_correction: true }
          schedule { type: CONSTANT learning_rate: 0.01 }
          label_smoothing: 0.1
          attention: "ATTENTION"
          checkpoint_every: 0 eval_every: 0
        })cfg",
                              {{"ROWS", std::to_string(rows)}, {"ATTENTION", attention}});
      TrainOptions o = Options(config, std::string(dir) + attention);
      o.train_files = root_ + "/" + dir + "/train-*";
      auto r = Train(o);
      ASSERT_TRUE(r.ok()) << r.status();
      losses[i++] = r->losses;
    }
    ASSERT_EQ(losses[0].size(), 5u);
    for (size_t s = 0; s < 5; ++s) {
      EXPECT_NEAR(losses[0][s], losses[1][s], 2e-6 * losses[1][s])
          << attention << " attention, step " << s + 1;
    }
    EXPECT_LT(losses[0][4], losses[0][0]) << "nothing was learned";
  }
}

// The schedule the trainer applies and logs, against tensor2tensor's definition by hand: with
// learning_rate 0.1 and W = 4, the update after t earlier ones (logged as step t + 1) has
// 0.1 * min(1, t/4) / sqrt(max(t, 4)): 0.025 at t = 2, 0.05 at t = 4, 0.025 at t = 16.
TEST_F(RecipesTest, TheLoggedLearningRateIsTensor2tensorsRsqrtSchedule) {
  testing::WriteCountingLmShards(root_ + "/data", "train", 1, 16, 1);
  const std::string config = R"cfg(
    model {
      objective: CAUSAL_LM
      vocab_size: 16
      max_positions: 8
      num_layers: 1
      d_model: 8
      num_heads: 2
      ffn_size: 16
    }
    data { seq_length: 8 }
    train {
      steps: 17
      global_batch_size: 4
      schedule { type: LINEAR_WARMUP_RSQRT learning_rate: 0.1 warmup_steps: 4 }
      log_every: 1
      checkpoint_every: 0
      eval_every: 0
    })cfg";
  TrainOptions o = Options(config, "run");
  o.train_files = root_ + "/data/train-*";
  ASSERT_TRUE(Train(o).ok());
  std::ifstream in(root_ + "/run/metrics.jsonl");
  std::map<int64_t, double> lr;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("split", "") == "train") lr[j["step"].get<int64_t>()] = j["lr"];
  }
  const double c = static_cast<double>(0.1f);  // the config's float
  EXPECT_DOUBLE_EQ(lr.at(1), 0.0);             // t = 0
  EXPECT_DOUBLE_EQ(lr.at(3), c * 0.5 / 2);     // t = W/2 = 2
  EXPECT_DOUBLE_EQ(lr.at(5), c * 1.0 / 2);     // t = W = 4: the peak, c / sqrt(W)
  EXPECT_DOUBLE_EQ(lr.at(17), c / 4);          // t = 4W = 16
  EXPECT_NEAR(lr.at(5), 0.05, 1e-8);
}

}  // namespace
}  // namespace headroom
