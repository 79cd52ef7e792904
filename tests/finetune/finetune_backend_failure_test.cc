// A failing backend stops fine-tuning as it stops `headroom train`
// (tests/trainer/backend_failure_test.cc): one line naming the step and the failed call, and
// nothing computed after the failure logged or saved. The backend is wrapped in a FailingOps
// (kernels/failing_ops.h, FineTuneOptions::wrap_ops) armed from the on_step callback to fail a
// chosen call of the next step: the loss read-back, the optimizer, the read-back of the moments
// for a checkpoint, and an allocation at set-up. Every test runs on the CPU and on CUDA; the
// CUDA instances skip, saying why, without a GPU (tests/cuda_skip.h).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "finetune/finetune.h"
#include "gtest/gtest.h"
#include "tests/cuda_skip.h"
#include "tests/data/text_test_util.h"
#include "tests/finetune/finetune_test_util.h"
#include "tests/trainer/backend_failure_util.h"
#include "trainer/checkpoint.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

class FineTuneBackendFailureTest : public ::testing::TestWithParam<DeviceKind> {
 protected:
  void SetUp() override {
    if (GetParam() == DeviceKind::kCuda) HR_SKIP_WITHOUT_CUDA();
    dir_ = testing::MakeTempDir(GetParam() == DeviceKind::kCpu ? "finetune_backend_failure_cpu"
                                                               : "finetune_backend_failure_cuda");
    ASSERT_FALSE(dir_.empty()) << "cannot create a temporary directory";
    init_ = testing::WriteTinyCheckpoint(dir_);
    testing::Write(dir_ + "/train.tsv", testing::ClassifyTsv(3));  // 12 examples: 6 steps of 4
  }

  // Fine-tunes into dir_/out through a FailingOps; after step `arm_after` (0: at set-up) it
  // fails the `n`-th call of `op`. Checkpoints every 2 steps, a log line every step.
  absl::StatusOr<FineTuneResult> FineTuneFailing(int64_t arm_after, int64_t n, const char* op) {
    auto c = LoadFineTuneConfig(
        "", "classify",
        {"finetune.max_seq_length=16", "finetune.train_batch_size=4", "finetune.num_train_epochs=2",
         "finetune.log_every=1", "finetune.checkpoint_every=2", "finetune.keep_checkpoints=5"});
    EXPECT_TRUE(c.ok()) << c.status();
    FineTuneOptions o;
    o.config = *c;
    o.init_checkpoint = init_;
    o.train_file = dir_ + "/train.tsv";
    o.output_dir = dir_ + "/out";
    o.device = GetParam();
    o.console = nullptr;
    o.wrap_ops = inject_.WrapOps(arm_after, n, op);
    o.on_step = inject_.OnStep(arm_after, n, op);
    return FineTune(o);
  }

  std::vector<int> LoggedSteps() const { return testing::LoggedSteps(dir_ + "/out"); }
  std::vector<std::string> CheckpointNames() const {
    return testing::CheckpointNames(dir_ + "/out");
  }
  static void ExpectMessage(const absl::StatusOr<FineTuneResult>& r, const std::string& start,
                            const std::string& call) {
    testing::ExpectBackendFailure(r.status(), start, call);
  }

  std::string dir_, init_;
  testing::FailureInjection inject_;
};

// The first read-back of step 4 (its loss) fails: the failure is the error (not a loss of 0),
// step 4 is neither logged nor applied nor saved, and step 2's checkpoint is the last.
TEST_P(FineTuneBackendFailureTest, AFailedLossReadBackStopsTheRun) {
  auto r = FineTuneFailing(/*arm_after=*/3, 1, "CopyToHost");
  ExpectMessage(r, "step 4: reading the loss back: the backend failed: ",
                "FailingOps: CopyToHost (call 1 counted) failed, injected");
  EXPECT_EQ(inject_.steps_done, 3);
  EXPECT_EQ(LoggedSteps(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(CheckpointNames(), (std::vector<std::string>{"step-00000002"}));
}

TEST_P(FineTuneBackendFailureTest, AFailedOptimizerStepStopsTheRunBeforeTheLog) {
  auto r = FineTuneFailing(/*arm_after=*/1, 1, "AdamW");
  ExpectMessage(r, "step 2: the optimizer step: the backend failed: ",
                "FailingOps: AdamW (call 1 counted) failed, injected");
  EXPECT_EQ(inject_.steps_done, 1);
  EXPECT_EQ(LoggedSteps(), (std::vector<int>{1}));
  EXPECT_TRUE(CheckpointNames().empty());
}

// Step 4 is done when its checkpoint's read-back of the optimizer moments fails: no checkpoint
// of step 4 (and no partial one) is written; step 2's stays and loads.
TEST_P(FineTuneBackendFailureTest, NoCheckpointIsWrittenFromAFailedBackend) {
  auto r = FineTuneFailing(/*arm_after=*/4, 1, "CopyToHost");
  ExpectMessage(r, "step 4: reading the moments back for the checkpoint: the backend failed: ",
                "FailingOps: CopyToHost (call 1 counted) failed, injected");
  EXPECT_EQ(CheckpointNames(), (std::vector<std::string>{"step-00000002"}));
  for (const auto& e : fs::directory_iterator(dir_ + "/out/checkpoints")) {
    EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos) << e.path();
  }
  EXPECT_TRUE(LoadCheckpoint(dir_ + "/out/checkpoints/step-00000002").ok());
  EXPECT_FALSE(fs::exists(dir_ + "/out/eval_results.json"));
}

TEST_P(FineTuneBackendFailureTest, AFailedAllocationAtSetUpIsAnErrorNotANullModel) {
  auto r = FineTuneFailing(/*arm_after=*/0, 3, "AllocBytes");
  ASSERT_FALSE(r.ok());
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("FailingOps: AllocBytes (call 3 counted) failed, injected"), std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_EQ(inject_.steps_done, 0);
  EXPECT_FALSE(fs::exists(dir_ + "/out/checkpoints"));
}

INSTANTIATE_TEST_SUITE_P(Devices, FineTuneBackendFailureTest,
                         ::testing::Values(DeviceKind::kCpu, DeviceKind::kCuda),
                         [](const ::testing::TestParamInfo<DeviceKind>& info) {
                           return std::string(info.param == DeviceKind::kCpu ? "cpu" : "cuda");
                         });

}  // namespace
}  // namespace headroom
