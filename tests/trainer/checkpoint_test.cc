// Checkpoints: bitwise round trip of weights, moments and state under the documented names;
// retention of the last K; discovery that ignores interrupted writes; refusal to write NaN
// weights; a checkpoint of another model, damaged files and unwritable directories are one-line
// errors that leave the earlier checkpoints intact.
#include "trainer/checkpoint.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "config/load.h"
#include "gtest/gtest.h"
#include "trainer/safetensors.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

constexpr char kConfig[] = R"pb(
  name: "tiny"
  model {
    objective: BERT
    vocab_size: 11
    max_positions: 8
    type_vocab_size: 2
    num_layers: 2
    d_model: 4
    num_heads: 2
    ffn_size: 6
  }
  data { seq_length: 8 max_predictions_per_seq: 2 }
  train { steps: 10 global_batch_size: 2 }
)pb";

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_dir_ = ::testing::TempDir() + "checkpoint_test_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(run_dir_);
    fs::create_directories(run_dir_);
    auto c = ParseConfig(kConfig, "tiny.textproto");
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
    layout_ = std::make_unique<ParameterLayout>(ParameterLayout::ForModel(config_.model()));
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    for (auto* buf : {&params_, &m_, &v_}) {
      buf->resize(static_cast<size_t>(layout_->total()));
      for (float& x : *buf) x = normal(rng);
    }
  }
  void TearDown() override { fs::remove_all(run_dir_); }

  TrainerState State(int64_t step) {
    TrainerState st;
    st.step = step;
    st.seed = 1234;
    st.loader_state = "epoch: 1 step: 7";
    st.rng_state = std::string("\x00\xff\x10 binary", 9);
    st.loss = 2.5;
    st.config_text = kConfig;
    return st;
  }
  absl::StatusOr<std::string> Save(int64_t step, int keep = 0) {
    return SaveCheckpoint(run_dir_, *layout_, params_.data(), m_.data(), v_.data(), State(step),
                          keep);
  }

  std::string run_dir_;
  ExperimentConfig config_;
  std::unique_ptr<ParameterLayout> layout_;
  std::vector<float> params_, m_, v_;
};

TEST_F(CheckpointTest, RoundTripIsBitwiseUnderHuggingFaceNames) {
  auto dir = Save(7);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, run_dir_ + "/checkpoints/step-00000007");
  for (const char* f :
       {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.textproto"}) {
    EXPECT_TRUE(fs::is_regular_file(fs::path(*dir) / f)) << f;
  }
  auto ck = LoadCheckpoint(*dir, &config_.model());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->params, params_);
  EXPECT_EQ(ck->m, m_);
  EXPECT_EQ(ck->v, v_);
  EXPECT_EQ(ck->state.step, 7);
  EXPECT_EQ(ck->state.seed, 1234u);
  EXPECT_EQ(ck->state.loader_state, "epoch: 1 step: 7");
  EXPECT_EQ(ck->state.rng_state, std::string("\x00\xff\x10 binary", 9));
  EXPECT_EQ(ck->state.loss, 2.5);
  EXPECT_EQ(ck->config.name(), "tiny");
  EXPECT_EQ(ck->config.model().d_model(), 4);

  // The weights file is plain safetensors with BertForPreTraining's names and [out, in] shapes.
  auto f = SafeTensorsFile::Read(*dir + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  const SafeTensorInfo* emb = f->Find("bert.embeddings.word_embeddings.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{11, 4}));
  const SafeTensorInfo* ffn = f->Find("bert.encoder.layer.1.intermediate.dense.weight");
  ASSERT_NE(ffn, nullptr);
  EXPECT_EQ(ffn->shape, (std::vector<int64_t>{6, 4}));
  EXPECT_NE(f->Find("cls.seq_relationship.bias"), nullptr);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  auto o = SafeTensorsFile::Read(*dir + "/optimizer.safetensors");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_NE(o->Find("bert.pooler.dense.weight.exp_avg_sq"), nullptr);

  // Without the optimizer, only the weights.
  auto weights_only = LoadCheckpoint(*dir, nullptr, /*with_optimizer=*/false);
  ASSERT_TRUE(weights_only.ok());
  EXPECT_TRUE(weights_only->m.empty());
  EXPECT_EQ(weights_only->params, params_);
}

TEST_F(CheckpointTest, KeepsTheLastKAndFindsTheNewest) {
  for (int step : {10, 20, 30, 40, 50}) ASSERT_TRUE(Save(step, /*keep=*/2).ok());
  std::vector<std::string> all = ListCheckpoints(run_dir_);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fs::path(all[0]).filename(), "step-00000040");
  EXPECT_EQ(fs::path(all[1]).filename(), "step-00000050");
  auto latest = LatestCheckpoint(run_dir_);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, all[1]);
  // --checkpoint accepts the run directory or a checkpoint directory.
  EXPECT_EQ(*ResolveCheckpoint(run_dir_), all[1]);
  EXPECT_EQ(*ResolveCheckpoint(all[0]), all[0]);
  EXPECT_EQ(ResolveCheckpoint(run_dir_ + "/nope").status().code(), absl::StatusCode::kNotFound);
  // Steps beyond 8 digits still sort numerically.
  ASSERT_TRUE(Save(123456789, /*keep=*/0).ok());
  EXPECT_EQ(fs::path(*LatestCheckpoint(run_dir_)).filename(), "step-123456789");
}

TEST_F(CheckpointTest, InterruptedWritesAreIgnoredAndCleanedUp) {
  ASSERT_TRUE(Save(10).ok());
  // A save killed before its rename leaves a temporary directory; one killed by hand (or a
  // directory someone copied partially) lacks files. Neither counts as a checkpoint.
  const fs::path root = fs::path(run_dir_) / "checkpoints";
  fs::create_directories(root / ".tmp-step-00000020-999");
  std::ofstream(root / ".tmp-step-00000020-999" / "model.safetensors") << "partial";
  fs::create_directories(root / "step-00000030");
  std::ofstream(root / "step-00000030" / "model.safetensors") << "partial";
  EXPECT_EQ(fs::path(*LatestCheckpoint(run_dir_)).filename(), "step-00000010");
  EXPECT_FALSE(ResolveCheckpoint((root / "step-00000030").string()).ok());
  ASSERT_TRUE(Save(40).ok());
  EXPECT_FALSE(fs::exists(root / ".tmp-step-00000020-999"));
  EXPECT_EQ(ListCheckpoints(run_dir_).size(), 2u);
}

TEST_F(CheckpointTest, NoCheckpointIsNotFound) {
  auto latest = LatestCheckpoint(run_dir_);
  ASSERT_FALSE(latest.ok());
  EXPECT_EQ(latest.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(latest.status().message().find(run_dir_), absl::string_view::npos);
}

TEST_F(CheckpointTest, RefusesNonFiniteWeightsAndWritesNothing) {
  ASSERT_TRUE(Save(10).ok());
  const TensorSpec& t = layout_->Get("bert.encoder.layer.1.output.dense.weight");
  params_[t.offset + 3] = std::numeric_limits<float>::quiet_NaN();
  auto s = Save(20);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("bert.encoder.layer.1.output.dense.weight"),
            absl::string_view::npos)
      << s.status();
  params_[t.offset + 3] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(Save(20).ok());
  ASSERT_EQ(ListCheckpoints(run_dir_).size(), 1u);
  EXPECT_TRUE(LoadCheckpoint(ListCheckpoints(run_dir_)[0]).ok());
}

TEST_F(CheckpointTest, SavingTheSameStepAgainReplacesIt) {
  ASSERT_TRUE(Save(10).ok());
  params_[0] = 42.0f;
  ASSERT_TRUE(Save(10).ok());
  auto ck = LoadCheckpoint(CheckpointDir(run_dir_, 10));
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->params[0], 42.0f);
  EXPECT_EQ(ListCheckpoints(run_dir_).size(), 1u);
}

TEST_F(CheckpointTest, ADifferentModelIsRefusedWithTheDifferences) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok());
  ModelConfig other = config_.model();
  other.set_num_heads(1);
  other.set_num_layers(3);
  auto ck = LoadCheckpoint(*dir, &other);
  ASSERT_FALSE(ck.ok());
  const std::string msg(ck.status().message());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(msg.find("checkpoint " + *dir + " is for a different model: "), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model.num_layers is 2 in the checkpoint, 3 in the config"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model.num_heads is 2 in the checkpoint, 1 in the config"), std::string::npos)
      << msg;
  // head_size = 4/1 vs 4/2 as well; dropout differences do not matter.
  ModelConfig dropout = config_.model();
  dropout.set_hidden_dropout(0.0f);
  EXPECT_TRUE(LoadCheckpoint(*dir, &dropout).ok());
}

TEST_F(CheckpointTest, DamagedFilesAreClearErrors) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok());
  const fs::path model = fs::path(*dir) / "model.safetensors";
  fs::resize_file(model, fs::file_size(model) - 3);
  auto ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("model.safetensors"), absl::string_view::npos)
      << ck.status();

  // A well-formed file whose tensor has another shape.
  SafeTensorsWriter w;
  std::vector<float> junk(static_cast<size_t>(layout_->total()) + 1, 0.0f);
  for (const TensorSpec& t : layout_->tensors()) {
    std::vector<int64_t> shape = t.shape;
    if (t.name == "bert.pooler.dense.bias") shape = {t.numel + 1};
    ASSERT_TRUE(w.AddF32(t.name, shape, junk.data()).ok());
  }
  ASSERT_TRUE(w.Write(model.string()).ok());
  ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("bert.pooler.dense.bias has shape [5], expected [4]"),
            absl::string_view::npos)
      << ck.status();

  std::ofstream(fs::path(*dir) / "trainer_state.json") << "{\"format\": 1, \"step\": -4}";
  ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("trainer_state.json: \"step\""), absl::string_view::npos)
      << ck.status();
}

TEST_F(CheckpointTest, UnwritableRunDirectoryIsAnError) {
  const std::string file = run_dir_ + "/a_file";
  std::ofstream(file) << "x";
  auto s =
      SaveCheckpoint(file + "/run", *layout_, params_.data(), m_.data(), v_.data(), State(1), 3);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(file), absl::string_view::npos) << s.status();
  EXPECT_EQ(std::string(s.status().message()).find('\n'), std::string::npos);
}

TEST_F(CheckpointTest, MissingMomentsAreSavedAsZeros) {
  auto dir = SaveCheckpoint(run_dir_, *layout_, params_.data(), nullptr, nullptr, State(3), 0);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto ck = LoadCheckpoint(*dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  ASSERT_EQ(ck->m.size(), static_cast<size_t>(layout_->total()));
  ASSERT_EQ(ck->v.size(), static_cast<size_t>(layout_->total()));
  for (float x : ck->m) ASSERT_EQ(x, 0.0f);
  for (float x : ck->v) ASSERT_EQ(x, 0.0f);
}

}  // namespace
}  // namespace headroom
