// The training loop on a tiny causal LM and tiny shards written here: exact resume (a child
// process SIGKILLed after a checkpoint, then resumed, reproduces the uninterrupted run's losses
// and final weights bit for bit), a run directory with checkpoints is not overwritten, a
// checkpoint of another model is refused, a diverging loss stops with the step number and
// writes no checkpoint of it, a glob matching nothing is a clear error, the loss falls, and
// evaluation reports loss and perplexity.
#include "trainer/trainer.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "base/file.h"
#include "config/load.h"
#include "gtest/gtest.h"
#include "tests/console_capture.h"
#include "tests/trainer/killed_run.h"
#include "tests/trainer/lm_shards.h"
#include "tests/trainer/tiny_lm_config.h"
#include "trainer/checkpoint.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

const std::string kConfig = testing::TinyLmConfig(R"pb(
  train {
    steps: 8
    global_batch_size: 4
    micro_batch_size: 2
    optimizer { type: ADAMW bias_correction: true }
    schedule { type: LINEAR_WARMUP_LINEAR_DECAY learning_rate: 0.01 warmup_steps: 2 }
    log_every: 1
    eval_every: 4
    eval_batches: 2
    checkpoint_every: 2
    keep_checkpoints: 2
  }
)pb");

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "trainer_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    testing::WriteCountingLmShards(root_ + "/data", "train", 2, 40, 1);
    testing::WriteCountingLmShards(root_ + "/data", "eval", 1, 8, 2);
  }
  void TearDown() override { fs::remove_all(root_); }

  TrainOptions Options(const std::string& run, const std::vector<std::string>& overrides = {}) {
    auto c = ParseConfig(kConfig, "tiny_lm.textproto", overrides);
    EXPECT_TRUE(c.ok()) << c.status();
    TrainOptions o;
    o.config = *c;
    o.run_dir = root_ + "/" + run;
    o.train_files = root_ + "/data/train-*.tfrecord";
    o.eval_files = root_ + "/data/eval-*.tfrecord";
    o.console = nullptr;
    return o;
  }

  std::string root_;
};

// Runs first in its own process image (no threads yet): fork needs a single-threaded parent.
TEST_F(TrainerTest, AResumeAfterSigkillReproducesTheUninterruptedRunBitwise) {
  // The interrupted run: a child process trains and is SIGKILLed right after step 5 (the last
  // checkpoint is step 4), before it can save anything else.
  testing::TrainKilledAfterStep(Options("resumed"), 5);
  if (HasFatalFailure()) return;
  ASSERT_EQ(fs::path(*LatestCheckpoint(root_ + "/resumed")).filename(), "step-00000004");

  auto straight = Train(Options("straight"));
  ASSERT_TRUE(straight.ok()) << straight.status();
  ASSERT_EQ(straight->losses.size(), 8u);

  TrainOptions o = Options("resumed");
  o.resume = true;
  auto resumed = Train(o);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->first_step, 4);
  ASSERT_EQ(resumed->losses.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(resumed->losses[i], straight->losses[4 + i]) << "step " << 5 + i;  // bitwise
  }
  // Same final weights and moments, byte for byte.
  for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
    auto a = ReadFile(CheckpointDir(root_ + "/straight", 8) + "/" + f);
    auto b = ReadFile(CheckpointDir(root_ + "/resumed", 8) + "/" + f);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(*a == *b) << f;
  }
  // keep_checkpoints: 2.
  EXPECT_EQ(ListCheckpoints(root_ + "/straight").size(), 2u);
}

TEST_F(TrainerTest, TheLossFallsAndEvaluationReportsPerplexity) {
  auto r = Train(Options("run", {"train.steps=30", "train.schedule.learning_rate=0.03",
                                 "train.checkpoint_every=0", "train.eval_every=0"}));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->losses.size(), 30u);
  // Uniform guessing over 16 ids costs ln 16 = 2.77 nats; the pattern is learnable.
  EXPECT_GT(r->losses.front(), 2.0);
  EXPECT_LT(r->losses.back(), r->losses.front() - 0.5);
  auto e =
      EvaluateCheckpoint(root_ + "/run", root_ + "/data/eval-*.tfrecord", 4, 4, DeviceKind::kCpu);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_NEAR(e->perplexity, std::exp(e->loss), 1e-9);
  EXPECT_EQ(e->sequences, 8);  // 8 eval sequences: 2 batches of 4
  EXPECT_NE(e->ToString().find("perplexity="), std::string::npos);
  EXPECT_TRUE(fs::exists(root_ + "/run/metrics.jsonl"));
}

// train.eval_every with no evaluation data: the run says so in one line at the start, and says
// nothing when there is data.
TEST_F(TrainerTest, EvaluationAskedForWithoutDataIsSaid) {
  for (bool with_data : {false, true}) {
    TrainOptions o = Options(with_data ? "with" : "without",
                             {"train.steps=2", "train.eval_every=1", "train.checkpoint_every=0"});
    if (!with_data) o.eval_files = "";
    testing::ConsoleCapture console;
    ASSERT_NE(console.file(), nullptr);
    o.console = console.file();
    ASSERT_TRUE(Train(o).ok());
    const std::string text = console.Text();
    const std::string note =
        "note: train.eval_every=1, but the run has no evaluation data (--eval_data, "
        "data.eval_files): it trains without evaluation\n";
    EXPECT_EQ(text.find(note) != std::string::npos, !with_data) << text;
    EXPECT_EQ(text.find("eval step 1") != std::string::npos, with_data) << text;
  }
}

// --resume on a run directory without checkpoints (a requeued job's first attempt) starts the
// run from step 0 and says so.
TEST_F(TrainerTest, ResumeWithNothingToResumeStartsAndSaysSo) {
  TrainOptions o = Options("fresh", {"train.steps=2", "train.checkpoint_every=0"});
  o.resume = true;
  testing::ConsoleCapture console;
  ASSERT_NE(console.file(), nullptr);
  o.console = console.file();
  auto r = Train(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_step, 0);
  EXPECT_EQ(console.FirstLine(),
            "note: --resume: no checkpoint in " + o.run_dir + " yet; starting from step 0\n");
}

TEST_F(TrainerTest, ARunDirectoryWithCheckpointsIsNotOverwritten) {
  ASSERT_TRUE(Train(Options("run", {"train.steps=2"})).ok());
  auto again = Train(Options("run", {"train.steps=2"}));
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("--resume"), absl::string_view::npos) << again.status();
}

TEST_F(TrainerTest, ResumingWithAnotherModelIsRefused) {
  ASSERT_TRUE(Train(Options("run", {"train.steps=2"})).ok());
  TrainOptions o = Options("run", {"train.steps=4", "model.num_heads=4", "model.head_size=2"});
  o.resume = true;
  auto r = Train(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is for a different model: model.num_heads is 2 in the "
                                      "checkpoint, 4 in the config"),
            absl::string_view::npos)
      << r.status();
}

TEST_F(TrainerTest, ADivergingLossStopsWithTheStepAndSavesNothingOfIt) {
  TrainOptions o = Options("run", {"train.schedule.learning_rate=1e30", "train.steps=8",
                                   "train.checkpoint_every=1", "train.optimizer.max_grad_norm=0"});
  auto r = Train(o);
  ASSERT_FALSE(r.ok());
  const std::string msg(r.status().message());
  ASSERT_EQ(msg.rfind("step ", 0), 0u) << msg;
  EXPECT_NE(msg.find("training stopped"), std::string::npos) << msg;
  const int64_t failed = std::stoll(msg.substr(5));
  // Nothing of the failed step or later is saved; whatever was saved before is finite and loads.
  for (const std::string& dir : ListCheckpoints(root_ + "/run")) {
    EXPECT_LT(std::stoll(fs::path(dir).filename().string().substr(5)), failed) << dir;
    auto ck = LoadCheckpoint(dir);
    ASSERT_TRUE(ck.ok()) << ck.status();
    for (float x : ck->params) ASSERT_TRUE(std::isfinite(x)) << dir;
  }
}

TEST_F(TrainerTest, AGlobMatchingNothingIsAClearError) {
  TrainOptions o = Options("run");
  o.train_files = root_ + "/data/nothing-*.tfrecord";
  auto r = Train(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find("nothing-*"), absl::string_view::npos) << r.status();
  EXPECT_NE(r.status().message().find("--data"), absl::string_view::npos) << r.status();
  EXPECT_FALSE(fs::exists(root_ + "/run/checkpoints"));
  // Nothing at all is written: no empty metrics or TensorBoard files.
  EXPECT_FALSE(fs::exists(root_ + "/run/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(root_ + "/run/tb"));

  o = Options("run2");
  o.eval_files = root_ + "/data/no-eval-*.tfrecord";
  r = Train(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--eval_data"), absl::string_view::npos) << r.status();
  EXPECT_FALSE(fs::exists(root_ + "/run2/metrics.jsonl"));
}

}  // namespace
}  // namespace headroom
