// `headroom train` / `headroom eval` from the command line (the binary is HEADROOM_BINARY, from
// CMake) on bad inputs: each gives one line on stderr naming the problem, a non-zero exit, and
// leaves whatever the run directory held untouched. Covered: a data glob matching nothing, shards
// whose ids exceed the vocabulary or whose examples exceed the sequence length (found before the
// first step), a resume from a checkpoint of another model, an unwritable run directory, a disk
// filling up during a checkpoint (HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES, trainer/
// safetensors.h: the previous checkpoint stays loadable and the run resumes from it), a NaN loss
// (the step number, no checkpoint of it; or, with train.skip_nonfinite_steps, the step skipped),
// --steps 0, a capped --steps, train.max_consecutive_skips and a run whose every step was skipped,
// batches without targets (train and eval, and eval over zero batches), a model too large for
// memory, bench --batch -1, settings the CPU ignores named once; and `train --help` listing its
// flags.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/file.h"
#include "data/example_io.h"
#include "data/record_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/trainer/tiny_lm_config.h"
#include "trainer/checkpoint.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A causal LM of vocabulary 16 and sequence length 8, small enough for a step in milliseconds.
const std::string kConfig = testing::TinyLmConfig(R"pb(
  train {
    steps: 4
    global_batch_size: 4
    optimizer { type: ADAMW bias_correction: true }
    schedule { type: CONSTANT learning_rate: 0.01 warmup_steps: 0 }
    log_every: 1
    eval_every: 0
    checkpoint_every: 2
    keep_checkpoints: 5
  }
)pb");

struct Result {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};

class TrainCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/train_command_test_" +
            std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    fs::create_directories(root_);
    config_ = root_ + "/tiny_lm.textproto";
    WriteText(config_, kConfig);
    // 24 examples of 8 ids in [1, 15] over 2 shards.
    std::vector<std::vector<int64_t>> examples;
    for (int i = 0; i < 24; ++i) {
      std::vector<int64_t> t(8);
      for (int j = 0; j < 8; ++j) t[j] = 1 + (i + j) % 15;
      examples.push_back(t);
    }
    WriteShard(root_ + "/data/train-0.tfrecord",
               std::vector<std::vector<int64_t>>(examples.begin(), examples.begin() + 12));
    WriteShard(root_ + "/data/train-1.tfrecord",
               std::vector<std::vector<int64_t>>(examples.begin() + 12, examples.end()));
  }
  void TearDown() override { fs::remove_all(root_); }

  static void WriteText(const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr) << path;
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }

  static void WriteShard(const std::string& path, const std::vector<std::vector<int64_t>>& rows) {
    fs::create_directories(fs::path(path).parent_path());
    auto w = RecordWriter::Create(path);
    ASSERT_TRUE(w.ok()) << w.status();
    for (const auto& row : rows) {
      tf::Example e;
      SetInt64Feature(&e, "targets", row);
      ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
    }
    ASSERT_TRUE((*w)->Close().ok());
  }

  // Runs `env headroom ARGS`, capturing stdout and stderr.
  Result Headroom(const std::string& args, const std::string& env = "") {
    const std::string out = root_ + "/stdout.txt", err = root_ + "/stderr.txt";
    const std::string cmd =
        env + " " + HEADROOM_BINARY + " " + args + " >" + out + " 2>" + err + " </dev/null";
    const int status = std::system(cmd.c_str());
    auto o = ReadFile(out);
    auto e = ReadFile(err);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, o.ok() ? *o : "", e.ok() ? *e : ""};
  }

  // `headroom train` of the tiny config on the good shards into run directory `run`.
  Result Train(const std::string& run, const std::string& extra = "", const std::string& env = "") {
    return Headroom("train --config " + config_ + " --data '" + root_ +
                        "/data/train-*.tfrecord' --run_dir " + root_ + "/" + run + " " + extra,
                    env);
  }

  static void ExpectOneLineError(const Result& r, const std::string& what) {
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_THAT(r.err, HasSubstr(what));
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_EQ(r.err.rfind("headroom ", 0), 0u) << r.err;
  }

  // Every file under `dir` with its bytes, to show that nothing changed.
  static std::vector<std::pair<std::string, std::string>> Snapshot(const std::string& dir) {
    std::vector<std::pair<std::string, std::string>> files;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      auto bytes = ReadFile(e.path().string());
      files.emplace_back(e.path().string(), bytes.ok() ? *bytes : "?");
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  std::string root_, config_;
};

TEST_F(TrainCommandTest, AGoodRunTrainsAndCheckpoints) {
  Result r = Train("run");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("step 4/4"));
  EXPECT_EQ(ListCheckpoints(root_ + "/run").size(), 2u);  // steps 2 and 4
}

TEST_F(TrainCommandTest, EvalPrintsTheUnigramBaselineOfTheSameTokens) {
  ASSERT_EQ(Train("run").exit_code, 0);
  const std::string data = "'" + root_ + "/data/train-*.tfrecord'";
  Result r = Headroom("eval --checkpoint " + root_ + "/run --data " + data +
                      " --batch 4 --eval_batches 5 --unigram_data " + data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 5 batches of 4: the first 20 of the 24 examples (train-0's 12, then 8 of train-1's), each 8
  // tokens. The shards hold 1 + (i + j) % 15 for example i, position j (SetUp).
  EXPECT_THAT(r.out, HasSubstr(" sequences=20 tokens=160 "));
  std::vector<double> counts(16, 0);
  for (int i = 0; i < 24; ++i) {
    for (int j = 0; j < 8; ++j) counts[1 + (i + j) % 15] += 1;
  }
  double nll = 0;
  for (int i = 0; i < 20; ++i) {
    for (int j = 0; j < 8; ++j) nll -= std::log((counts[1 + (i + j) % 15] + 1) / (192.0 + 16));
  }
  const double expected = std::exp(nll / 160);
  const size_t at = r.out.find("unigram_perplexity=");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_NEAR(std::stod(r.out.substr(at + 19)), expected, 1e-3) << r.out;
  // A training glob matching nothing is one line.
  ExpectOneLineError(Headroom("eval --checkpoint " + root_ + "/run --data " + data +
                              " --unigram_data '" + root_ + "/none-*'"),
                     root_ + "/none-*");
}

TEST_F(TrainCommandTest, EvalRejectsANegativeBatch) {
  for (const char* flag : {"--batch=-1", "--batch -3"}) {
    Result r = Headroom("eval --checkpoint " + root_ + "/run " + flag);
    ExpectOneLineError(r, "--batch must be >= 0");
  }
}

// Eval and export given a run directory name the step they use; a damaged checkpoint (a
// changed byte, a missing file) is one line naming the file, never a score.
TEST_F(TrainCommandTest, EvalAndExportNameTheStepAndRefuseADamagedCheckpoint) {
  ASSERT_EQ(Train("run").exit_code, 0);
  const std::string data = "'" + root_ + "/data/train-*.tfrecord'";
  const std::string newest = CheckpointDir(root_ + "/run", 4);
  Result r = Headroom("eval --checkpoint " + root_ + "/run --data " + data + " --batch 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("eval: scored " + newest + " (step 4), the newest checkpoint"));
  r = Headroom("export --checkpoint " + root_ + "/run --output " + root_ + "/w.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("export: exported " + newest + " (step 4)"));

  // The last byte of the weights file belongs to the last tensor's last value.
  const std::string model = newest + "/model.safetensors";
  auto bytes = ReadFile(model);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::string changed = *bytes;
  changed.back() = static_cast<char>(changed.back() ^ 0x10);
  ASSERT_TRUE(WriteFileAtomically(model, changed).ok());
  r = Headroom("eval --checkpoint " + root_ + "/run --data " + data + " --batch 4");
  ExpectOneLineError(r,
                     "checkpoint " + newest + ": model.safetensors does not match manifest.json");
  EXPECT_THAT(r.out, Not(HasSubstr("loss=")));
  r = Headroom("export --checkpoint " + newest + " --output " + root_ + "/w2.safetensors");
  ExpectOneLineError(r, "model.safetensors does not match manifest.json");
  EXPECT_FALSE(fs::exists(root_ + "/w2.safetensors"));

  fs::remove(CheckpointDir(root_ + "/run", 2) + "/config.textproto");
  r = Headroom("eval --checkpoint " + CheckpointDir(root_ + "/run", 2) + " --data " + data);
  ExpectOneLineError(
      r, "checkpoint " + CheckpointDir(root_ + "/run", 2) + ": config.textproto is missing");
}

TEST_F(TrainCommandTest, ADataGlobMatchingNothing) {
  Result r = Headroom("train --config " + config_ + " --data '" + root_ +
                      "/data/none-*.tfrecord' --run_dir " + root_ + "/run");
  ExpectOneLineError(r, root_ + "/data/none-*.tfrecord");
  EXPECT_FALSE(fs::exists(root_ + "/run/checkpoints"));
}

TEST_F(TrainCommandTest, ShardsWithIdsOutsideTheVocabularyFailBeforeTheFirstStep) {
  // The bad id is in the 6th record of the second shard, not the first record the loader's
  // open probes: the start-up check reads further.
  std::vector<std::vector<int64_t>> rows(12, std::vector<int64_t>(8, 3));
  rows[5][2] = 16;  // vocab_size is 16: ids are 0..15
  WriteShard(root_ + "/data/train-1.tfrecord", rows);
  Result r = Train("run");
  ExpectOneLineError(r, "train-1.tfrecord: record 5");
  EXPECT_THAT(r.err, HasSubstr("feature 'targets' value 16"));
  EXPECT_THAT(r.err, HasSubstr("vocab"));
  EXPECT_THAT(r.out, Not(HasSubstr("step 1/")));  // stopped before training
  EXPECT_FALSE(fs::exists(root_ + "/run/checkpoints"));
}

TEST_F(TrainCommandTest, ShardsLongerThanTheSequenceLengthFailBeforeTheFirstStep) {
  std::vector<std::vector<int64_t>> rows(12, std::vector<int64_t>(8, 3));
  rows[3] = std::vector<int64_t>(12, 3);  // made for a sequence length of 12, not 8
  WriteShard(root_ + "/data/train-0.tfrecord", rows);
  Result r = Train("run");
  ExpectOneLineError(r, "train-0.tfrecord: record 3");
  EXPECT_THAT(r.err, HasSubstr("feature 'targets' has 12 values, expected at most 8"));
  EXPECT_THAT(r.out, Not(HasSubstr("step 1/")));
  EXPECT_FALSE(fs::exists(root_ + "/run/checkpoints"));
}

TEST_F(TrainCommandTest, ResumingFromAnotherModelIsRefusedAndChangesNothing) {
  ASSERT_EQ(Train("run", "--steps 2").exit_code, 0);
  const auto before = Snapshot(root_ + "/run/checkpoints");
  Result r = Train("run", "--resume --set model.num_heads=4 --set model.head_size=2");
  ExpectOneLineError(r,
                     "is for a different model: model.num_heads is 2 in the checkpoint, 4 in "
                     "the config");
  EXPECT_EQ(Snapshot(root_ + "/run/checkpoints"), before);
  // Without --resume the run directory is not overwritten either.
  ExpectOneLineError(Train("run"), "pass --resume");
  EXPECT_EQ(Snapshot(root_ + "/run/checkpoints"), before);
}

TEST_F(TrainCommandTest, AnUnwritableRunDirectory) {
  // A regular file where the run directory's parent should be: unwritable even for root, which
  // permission bits do not stop.
  WriteText(root_ + "/file", "not a directory");
  Result r = Train("file/run");
  ExpectOneLineError(r, root_ + "/file/run");
  auto text = ReadFile(root_ + "/file");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "not a directory");
}

TEST_F(TrainCommandTest, AKillDuringACheckpointWriteKeepsThePreviousOneUsable) {
  ASSERT_EQ(Train("reference", "--steps 2").exit_code, 0);
  uintmax_t checkpoint_bytes = 0;
  for (const auto& e : fs::directory_iterator(CheckpointDir(root_ + "/reference", 2))) {
    checkpoint_bytes += e.file_size();
  }
  ASSERT_GT(checkpoint_bytes, 0u);
  // SIGKILL half-way through the second checkpoint (step 4): the process dies, not fails.
  const std::string env = "HEADROOM_FAULT_INJECT_KILL_AFTER_BYTES=" +
                          std::to_string(checkpoint_bytes + checkpoint_bytes / 2);
  Result killed = Train("run", "", env);
  // std::system runs the command through sh, which reports a death by SIGKILL as 128 + 9.
  EXPECT_EQ(killed.exit_code, 128 + SIGKILL) << "expected death by SIGKILL; stderr: " << killed.err;
  std::vector<std::string> kept = ListCheckpoints(root_ + "/run");
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(fs::path(kept[0]).filename(), "step-00000002");
  auto ck = LoadCheckpoint(kept[0]);
  ASSERT_TRUE(ck.ok()) << ck.status();
  // Resuming picks step 2 (the half-written step 4 is not a checkpoint) and reaches the end with
  // the same final weights as a run that was never interrupted.
  Result resumed = Train("run", "--resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("(step 2)"));
  ASSERT_EQ(Train("straight").exit_code, 0);
  std::vector<std::string> a = ListCheckpoints(root_ + "/run"),
                           b = ListCheckpoints(root_ + "/straight");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  auto wa = ReadFile(a.back() + "/model.safetensors");
  auto wb = ReadFile(b.back() + "/model.safetensors");
  ASSERT_TRUE(wa.ok() && wb.ok());
  EXPECT_EQ(fs::path(a.back()).filename(), fs::path(b.back()).filename());
  EXPECT_TRUE(*wa == *wb) << "final weights differ after the resumed run";
}

// The newest checkpoint damaged after the run (a changed byte): --resume warns, naming it and
// the file, falls back to the one before and trains to the end.
TEST_F(TrainCommandTest, ResumeFallsBackPastADamagedCheckpointWithAWarning) {
  ASSERT_EQ(Train("run", "--steps 4").exit_code, 0);
  const std::string newest = CheckpointDir(root_ + "/run", 4);
  auto bytes = ReadFile(newest + "/model.safetensors");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::string changed = *bytes;
  changed[changed.size() - 5] = static_cast<char>(changed[changed.size() - 5] ^ 0x01);
  ASSERT_TRUE(WriteFileAtomically(newest + "/model.safetensors", changed).ok());
  Result r = Train("run", "--resume --set train.steps=6");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("warning: checkpoint " + newest +
                               " is damaged, skipped: model.safetensors does not match "
                               "manifest.json"));
  EXPECT_THAT(r.out, HasSubstr("resuming from " + CheckpointDir(root_ + "/run", 2) + " (step 2)"));
  EXPECT_THAT(r.out, HasSubstr("step 6/6"));
  // The damaged step 4 was trained again and saved over.
  EXPECT_TRUE(LoadCheckpoint(newest).ok());
}

TEST_F(TrainCommandTest, AFullDiskDuringACheckpointKeepsThePreviousOneUsable) {
  // The bytes of one checkpoint of this model, from a run without faults.
  ASSERT_EQ(Train("reference", "--steps 2").exit_code, 0);
  uintmax_t checkpoint_bytes = 0;
  for (const auto& e : fs::directory_iterator(CheckpointDir(root_ + "/reference", 2))) {
    checkpoint_bytes += e.file_size();
  }
  ASSERT_GT(checkpoint_bytes, 0u);
  // The disk fills up half-way through the second checkpoint (step 4).
  const std::string env = "HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES=" +
                          std::to_string(checkpoint_bytes + checkpoint_bytes / 2);
  Result r = Train("run", "", env);
  ExpectOneLineError(r, "checkpoint of step 4 not written");
  EXPECT_THAT(r.err, HasSubstr("No space left on device"));
  std::vector<std::string> kept = ListCheckpoints(root_ + "/run");
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(fs::path(kept[0]).filename(), "step-00000002");
  for (const auto& e : fs::directory_iterator(root_ + "/run/checkpoints")) {
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos) << e.path();
  }
  auto ck = LoadCheckpoint(kept[0]);
  ASSERT_TRUE(ck.ok()) << ck.status();
  // The run goes on from step 2 once there is space again.
  Result resumed = Train("run", "--resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("(step 2)"));
  EXPECT_EQ(ListCheckpoints(root_ + "/run").size(), 2u);
}

TEST_F(TrainCommandTest, ANanLossStopsWithTheStepAndWritesNoNanCheckpoint) {
  Result r = Train("run",
                   "--set train.schedule.learning_rate=1e30 --set train.optimizer.max_grad_norm=0 "
                   "--set train.checkpoint_every=1");
  ExpectOneLineError(r, "training stopped");
  const std::string prefix = "headroom train: step ";
  ASSERT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  const int64_t failed = std::stoll(r.err.substr(prefix.size()));
  // No checkpoint of the failed step or later; the earlier ones are finite.
  for (const std::string& dir : ListCheckpoints(root_ + "/run")) {
    EXPECT_LT(std::stoll(fs::path(dir).filename().string().substr(5)), failed) << dir;
    auto ck = LoadCheckpoint(dir);
    ASSERT_TRUE(ck.ok()) << ck.status();
    for (float x : ck->params) ASSERT_TRUE(std::isfinite(x)) << dir;
  }
}

TEST_F(TrainCommandTest, SkipNonfiniteStepsTrainsOnWithoutNanCheckpoints) {
  // The same diverging run with train.skip_nonfinite_steps: the bad steps are skipped (no
  // update), training reaches its last step, and every checkpoint is finite.
  Result r = Train("run",
                   "--set train.schedule.learning_rate=1e30 --set train.optimizer.max_grad_norm=0 "
                   "--set train.checkpoint_every=1 --set train.skip_nonfinite_steps=true");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("skipped (train.skip_nonfinite_steps)"));
  EXPECT_THAT(r.out, HasSubstr("step 4/4"));
  const std::vector<std::string> saved = ListCheckpoints(root_ + "/run");
  ASSERT_FALSE(saved.empty());
  EXPECT_EQ(fs::path(saved.back()).filename(), "step-00000004");
  for (const std::string& dir : saved) {
    auto ck = LoadCheckpoint(dir);
    ASSERT_TRUE(ck.ok()) << ck.status();
    for (float x : ck->params) ASSERT_TRUE(std::isfinite(x)) << dir;
  }
}

TEST_F(TrainCommandTest, MaxConsecutiveSkipsStopsARunOfSkippedSteps) {
  // The diverging run above: step 1 applies an update of about 1e30, every later loss is
  // non-finite. Two skips in a row stop it at step 3, with a line and a non-zero exit.
  Result r = Train("run",
                   "--set train.schedule.learning_rate=1e30 --set train.optimizer.max_grad_norm=0 "
                   "--set train.skip_nonfinite_steps=true --set train.max_consecutive_skips=2");
  ExpectOneLineError(r, "step 3: 2 steps in a row were skipped");
  EXPECT_THAT(r.err, HasSubstr("train.max_consecutive_skips"));
  ExpectOneLineError(Train("run2", "--set train.max_consecutive_skips=0"),
                     "train.max_consecutive_skips");
}

TEST_F(TrainCommandTest, ARunWhoseEveryStepWasSkippedFails) {
  // One step of learning rate 1e30 leaves weights whose every later loss is non-finite; a
  // resumed run from there skips steps 2 to 4, all of them, and must not report success.
  ASSERT_EQ(Train("run",
                  "--steps 1 --set train.schedule.learning_rate=1e30 "
                  "--set train.optimizer.max_grad_norm=0")
                .exit_code,
            0);
  Result r = Train("run",
                   "--resume --set train.schedule.learning_rate=1e30 "
                   "--set train.optimizer.max_grad_norm=0 --set train.skip_nonfinite_steps=true");
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.err, HasSubstr("every step of this run (3) was skipped"));
}

TEST_F(TrainCommandTest, BatchesWithoutTargetsAreAnError) {
  // Targets 0 are padding: nothing is scored, in training or in eval.
  WriteShard(root_ + "/empty/e-0.tfrecord", std::vector<std::vector<int64_t>>(8, {0, 0, 0, 0}));
  Result r = Headroom("train --config " + config_ + " --data '" + root_ +
                      "/empty/e-*.tfrecord' --run_dir " + root_ + "/run");
  ExpectOneLineError(r, "step 1: the batch from " + root_ + "/empty/e-*.tfrecord has no target");
  EXPECT_TRUE(ListCheckpoints(root_ + "/run").empty());

  ASSERT_EQ(Train("good").exit_code, 0);
  ExpectOneLineError(Headroom("eval --checkpoint " + root_ + "/good --data '" + root_ +
                              "/empty/e-*.tfrecord' --batch 4"),
                     "nothing was scored");
  const std::string data = "'" + root_ + "/data/train-*.tfrecord'";
  r = Headroom("eval --checkpoint " + root_ + "/good --data " + data + " --eval_batches 0");
  ExpectOneLineError(r, "nothing was scored: 0 batch(es)");
  EXPECT_THAT(r.err, HasSubstr("--eval_batches"));
  EXPECT_THAT(r.out, Not(HasSubstr("perplexity")));
}

TEST_F(TrainCommandTest, ACappedStepsFlagSaysSo) {
  Result r = Train("run", "--steps 10");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--steps 10 is capped at the config's 4 steps"));
  EXPECT_THAT(Train("run2", "--steps 3").out, Not(HasSubstr("capped")));
}

TEST_F(TrainCommandTest, AModelTooLargeForMemoryStopsBeforeAllocating) {
  // 1e6 wide: the embedding alone is 16e6 floats, the FFN 2 x 16e6, the attention 2e12 bytes of
  // projections; far over any machine's memory. The check answers at once, with both numbers.
  Result r = Train("run",
                   "--set model.d_model=1000000 --set model.num_heads=2 "
                   "--set model.head_size=500000");
  ExpectOneLineError(r, "GiB");
  EXPECT_FALSE(fs::exists(root_ + "/run/metrics.jsonl"));
}

// train.precision=bf16 on the CPU runs the bf16 twin (trainer/training_backend.h): nothing is
// said to be ignored (tests/trainer/bf16_training_test.cc checks what it computes).
TEST_F(TrainCommandTest, Bf16OnTheCpuIsAppliedNotIgnored) {
  Result r = Train("run", "--set train.precision=bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("step 1/4"));
  EXPECT_THAT(r.out, Not(HasSubstr("is ignored")));
}

TEST_F(TrainCommandTest, BenchRejectsANegativeBatch) {
  ExpectOneLineError(Headroom("bench --config " + config_ + " --batch=-1"),
                     "--batch -1 is negative");
}

TEST_F(TrainCommandTest, StepsMustBePositive) {
  ExpectOneLineError(Train("run", "--steps 0"), "--steps must be > 0");
  ExpectOneLineError(Train("run", "--steps=-3"), "--steps must be > 0");
  EXPECT_FALSE(fs::exists(root_ + "/run"));
}

TEST_F(TrainCommandTest, HelpListsEveryFlagOfTrain) {
  Result r = Headroom("train --help");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* flag : {"--config", "--data", "--run_dir", "--device", "--steps", "--resume",
                           "--eval_data", "--peak_tflops"}) {
    EXPECT_THAT(r.out, HasSubstr(std::string("\n  ") + flag + " (")) << flag;
  }
  EXPECT_THAT(r.out, HasSubstr("\n  --set FIELD=VALUE ("));
  // --steps is bench's flag too; train's help gives train's meaning, not bench's.
  EXPECT_THAT(r.out, HasSubstr("--steps (stop after"));
  EXPECT_THAT(r.out, Not(HasSubstr("timed steps")));
}

}  // namespace
}  // namespace headroom
