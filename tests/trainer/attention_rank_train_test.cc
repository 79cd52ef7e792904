// Attention rank diagnostics during training (train.attention_rank_every): a short run writes
// per-layer (and per-head) rank, stable rank and entropy entries to metrics.jsonl and
// TensorBoard at step 0, every K steps and at the end; a standard-head model's logged rank never
// exceeds its head size d/h (the paper's bottleneck) while a fixed-head-size model with d_p = S
// exceeds d/h; the option is off by default and validated.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/file.h"
#include "config/load.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/trainer/lm_shards.h"
#include "trainer/trainer.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

// Causal LM, 2 layers, d = 16, 4 standard heads of d/h = 4 < S = 16.
constexpr char kConfig[] = R"pb(
  name: "rank_lm"
  model {
    objective: CAUSAL_LM
    vocab_size: 32
    max_positions: 16
    num_layers: 2
    d_model: 16
    num_heads: 4
    head_size: 0
    ffn_size: 32
    hidden_dropout: 0
    attention_dropout: 0
  }
  data { seq_length: 16 }
  train {
    steps: 7
    global_batch_size: 4
    optimizer { type: ADAMW bias_correction: true }
    schedule { type: CONSTANT learning_rate: 0.01 warmup_steps: 0 }
    log_every: 1
    eval_every: 0
    checkpoint_every: 0
    attention_rank_every: 3
    attention_rank_sequences: 2
  }
)pb";

void WriteShard(const std::string& path, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int64_t>> sequences(n, std::vector<int64_t>(16));
  for (std::vector<int64_t>& t : sequences) {
    for (int64_t& v : t) v = 1 + static_cast<int64_t>(rng() % 31);
  }
  testing::WriteTargetsRecords(path, sequences);
}

class AttentionRankTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "attention_rank_train_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    fs::create_directories(root_ + "/data");
    WriteShard(root_ + "/data/train-0.tfrecord", 40, 1);
    WriteShard(root_ + "/data/eval-0.tfrecord", 8, 2);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Trains `overrides` of kConfig into root_/run and returns the eval lines of metrics.jsonl.
  std::vector<nlohmann::json> TrainAndReadEval(const std::vector<std::string>& overrides) {
    auto c = ParseConfig(kConfig, "rank_lm.textproto", overrides);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return {};
    TrainOptions o;
    o.config = *c;
    o.run_dir = root_ + "/run";
    o.train_files = root_ + "/data/train-*.tfrecord";
    o.eval_files = root_ + "/data/eval-*.tfrecord";
    o.console = nullptr;
    auto r = Train(o);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<nlohmann::json> out;
    std::ifstream in(root_ + "/run/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      nlohmann::json j = nlohmann::json::parse(line);
      if (j["split"] == "eval") out.push_back(j);
    }
    return out;
  }

  std::string root_;
};

TEST_F(AttentionRankTrainTest, StandardHeadsLogRankAtMostTheHeadSize) {
  const std::vector<nlohmann::json> lines = TrainAndReadEval({});
  std::vector<int64_t> steps;
  for (const nlohmann::json& j : lines) steps.push_back(j["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 3, 6, 7}));  // start, every 3, the end
  for (const nlohmann::json& j : lines) {
    for (int l = 0; l < 2; ++l) {
      const std::string lp = "attention/l" + std::to_string(l) + "/";
      for (const char* k : {"rank_max", "stable_rank", "entropy"}) {
        ASSERT_TRUE(j.contains(lp + k)) << j.dump();
        ASSERT_TRUE(std::isfinite(j[lp + k].get<double>())) << j.dump();
      }
      EXPECT_LE(j[lp + "rank_max"].get<double>(), 4) << j.dump();
      EXPECT_GE(j[lp + "rank_max"].get<double>(), 1) << j.dump();
      // Causal rows over 1..16 keys: mean entropy in (0, mean log(#keys)).
      EXPECT_GT(j[lp + "entropy"].get<double>(), 0) << j.dump();
      EXPECT_LT(j[lp + "entropy"].get<double>(), std::log(16.0)) << j.dump();
      EXPECT_GE(j[lp + "stable_rank"].get<double>(), 1 - 1e-9) << j.dump();
      EXPECT_LE(j[lp + "stable_rank"].get<double>(), 4 + 1e-9) << j.dump();
      for (int h = 0; h < 4; ++h) {
        const std::string hp = lp + "h" + std::to_string(h) + "/";
        for (const char* k : {"rank", "stable_rank", "entropy"}) {
          ASSERT_TRUE(j.contains(hp + k)) << j.dump();
        }
        EXPECT_LE(j[hp + "rank"].get<double>(), 4) << j.dump();  // d_p = d/h = 4 < S = 16
      }
    }
  }
  // TensorBoard got the same scalars.
  std::string events;
  for (const auto& e : fs::directory_iterator(root_ + "/run/tb")) {
    auto s = ReadFile(e.path().string());
    ASSERT_TRUE(s.ok());
    events += *s;
  }
  EXPECT_NE(events.find("eval/attention/l1/rank_max"), std::string::npos);
  EXPECT_NE(events.find("eval/attention/l0/h3/entropy"), std::string::npos);
}

TEST_F(AttentionRankTrainTest, FixedHeadSizeAtTheSequenceLengthExceedsTheStandardHeadSize) {
  const std::vector<nlohmann::json> lines = TrainAndReadEval(
      {"model.head_size=16", "train.steps=2", "train.attention_rank_per_head=false"});
  ASSERT_EQ(lines.size(), 2u);  // step 0 and the end
  for (const nlohmann::json& j : lines) {
    EXPECT_FALSE(j.contains("attention/l0/h0/rank")) << j.dump();  // per-head off
    EXPECT_GT(j["attention/l0/rank_max"].get<double>(), 4) << j.dump();
    EXPECT_LE(j["attention/l0/rank_max"].get<double>(), 16) << j.dump();
  }
}

TEST_F(AttentionRankTrainTest, OffByDefaultAndValidated) {
  auto c = ParseConfig(R"pb(model {
                              objective: CAUSAL_LM
                              vocab_size: 8
                              max_positions: 4
                              num_layers: 1
                              d_model: 4
                              num_heads: 1
                              ffn_size: 4
                            })pb",
                       "plain.textproto", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train().attention_rank_every(), 0);
  EXPECT_EQ(c->train().attention_rank_sequences(), 4);
  const std::vector<nlohmann::json> lines = TrainAndReadEval({"train.attention_rank_every=0"});
  EXPECT_TRUE(lines.empty());  // eval_every 0 and no diagnostics: no eval lines
  auto bad = ParseConfig(kConfig, "rank_lm.textproto", {"train.attention_rank_every=-1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.attention_rank_every"), absl::string_view::npos);
  bad = ParseConfig(kConfig, "rank_lm.textproto", {"train.attention_rank_sequences=0"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.attention_rank_sequences"), absl::string_view::npos);
}

}  // namespace
}  // namespace headroom
