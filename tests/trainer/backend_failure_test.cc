// A failing backend stops training with one message naming the step and the failed call, and
// nothing computed after the failure is logged, applied or saved (trainer.h, step 3): the
// backend is wrapped in a FailingOps (kernels/failing_ops.h, TrainOptions::wrap_ops) armed from
// the on_step callback to fail a chosen call of the next step, at each point where the trainer
// waits for the device: the loss read-back, a kernel of the step (found at the read-back), the
// optimizer, the copy of the weights for a checkpoint, and an allocation at set-up. Every test
// runs on the CPU and on CUDA; the CUDA instances skip, saying why, without a GPU
// (tests/cuda_skip.h).
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/load.h"
#include "gtest/gtest.h"
#include "tests/cuda_skip.h"
#include "tests/trainer/backend_failure_util.h"
#include "tests/trainer/lm_shards.h"
#include "tests/trainer/tiny_lm_config.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

const std::string kConfig = testing::TinyLmConfig(R"pb(
  train {
    steps: 6
    global_batch_size: 4
    optimizer { type: ADAMW bias_correction: true }
    schedule { type: CONSTANT learning_rate: 0.01 warmup_steps: 0 }
    log_every: 1
    eval_every: 0
    checkpoint_every: 2
    keep_checkpoints: 5
  }
)pb");

class BackendFailureTest : public ::testing::TestWithParam<DeviceKind> {
 protected:
  void SetUp() override {
    if (GetParam() == DeviceKind::kCuda) HR_SKIP_WITHOUT_CUDA();
    root_ = ::testing::TempDir() + "backend_failure_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(static_cast<int>(GetParam())) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    testing::WriteCountingLmShards(root_ + "/data", "train", 2, 40, 1);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Trains the tiny LM into root_/run through a FailingOps; after step `arm_after` (0: at
  // set-up) it fails the `n`-th call of `op`.
  absl::StatusOr<TrainResult> TrainFailing(int64_t arm_after, int64_t n, const char* op) {
    auto c = ParseConfig(kConfig, "tiny_lm.textproto");
    EXPECT_TRUE(c.ok()) << c.status();
    TrainOptions o;
    o.config = *c;
    o.run_dir = root_ + "/run";
    o.train_files = root_ + "/data/train-*.tfrecord";
    o.device = GetParam();
    o.console = nullptr;
    o.wrap_ops = inject_.WrapOps(arm_after, n, op);
    o.on_step = inject_.OnStep(arm_after, n, op);
    return Train(o);
  }

  std::vector<int> LoggedSteps() const { return testing::LoggedSteps(root_ + "/run"); }
  std::vector<std::string> CheckpointNames() const {
    return testing::CheckpointNames(root_ + "/run");
  }
  static void ExpectMessage(const absl::StatusOr<TrainResult>& r, const std::string& start,
                            const std::string& call) {
    testing::ExpectBackendFailure(r.status(), start, call);
  }

  std::string root_;
  testing::FailureInjection inject_;
};

// The read-back of step 4's loss fails (the first read-back after step 3, which saves
// nothing): the failure is the error (not a loss of 0), step 4 is neither logged nor applied
// nor saved, and step 2's checkpoint is the last.
TEST_P(BackendFailureTest, AFailedLossReadBackStopsTheRun) {
  auto r = TrainFailing(/*arm_after=*/3, 1, "CopyToHost");
  ExpectMessage(r, "step 4: reading the loss back: the backend failed: ",
                "FailingOps: CopyToHost (call 1 counted) failed, injected");
  EXPECT_EQ(inject_.steps_done, 3);
  EXPECT_EQ(LoggedSteps(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(CheckpointNames(), (std::vector<std::string>{"step-00000002"}));
}

// A kernel of step 3's backward fails: found where the host next waits, the loss read-back,
// and named.
TEST_P(BackendFailureTest, AFailedKernelIsFoundAtTheNextSynchronisation) {
  auto r = TrainFailing(/*arm_after=*/2, 2, "Gemm");
  ExpectMessage(r, "step 3: reading the loss back: the backend failed: ",
                "FailingOps: Gemm (call 2 counted) failed, injected");
  EXPECT_EQ(LoggedSteps(), (std::vector<int>{1, 2}));
  EXPECT_EQ(CheckpointNames(), (std::vector<std::string>{"step-00000002"}));
}

TEST_P(BackendFailureTest, AFailedOptimizerStepStopsTheRunBeforeTheLog) {
  auto r = TrainFailing(/*arm_after=*/1, 1, "AdamW");
  ExpectMessage(r, "step 2: the optimizer step: the backend failed: ",
                "FailingOps: AdamW (call 1 counted) failed, injected");
  EXPECT_EQ(inject_.steps_done, 1);
  EXPECT_EQ(LoggedSteps(), (std::vector<int>{1}));
  EXPECT_TRUE(CheckpointNames().empty());
}

// Step 4 is done when its checkpoint's read-back of the optimizer moments fails: no checkpoint
// of step 4 (and no partial one) is written; step 2's stays.
TEST_P(BackendFailureTest, NoCheckpointIsWrittenFromAFailedBackend) {
  auto r = TrainFailing(/*arm_after=*/4, 1, "CopyToHost");
  ExpectMessage(r, "step 4: reading the moments back for the checkpoint: the backend failed: ",
                "FailingOps: CopyToHost (call 1 counted) failed, injected");
  EXPECT_EQ(CheckpointNames(), (std::vector<std::string>{"step-00000002"}));
  for (const auto& e : fs::directory_iterator(root_ + "/run/checkpoints")) {
    EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos) << e.path();
  }
  EXPECT_TRUE(LoadCheckpoint(CheckpointDir(root_ + "/run", 2)).ok());
}

TEST_P(BackendFailureTest, AFailedAllocationAtSetUpIsAnErrorNotANullModel) {
  auto r = TrainFailing(/*arm_after=*/0, 3, "AllocBytes");
  ASSERT_FALSE(r.ok());
  const std::string msg(r.status().message());
  EXPECT_EQ(msg.rfind("cannot create the model (", 0), 0u) << msg;
  EXPECT_NE(msg.find("FailingOps: AllocBytes (call 3 counted) failed, injected"), std::string::npos)
      << msg;
  EXPECT_EQ(inject_.steps_done, 0);
  EXPECT_FALSE(fs::exists(root_ + "/run/checkpoints"));
}

INSTANTIATE_TEST_SUITE_P(Devices, BackendFailureTest,
                         ::testing::Values(DeviceKind::kCpu, DeviceKind::kCuda),
                         [](const ::testing::TestParamInfo<DeviceKind>& info) {
                           return std::string(info.param == DeviceKind::kCpu ? "cpu" : "cuda");
                         });

}  // namespace
}  // namespace headroom
