// Helpers of the backend-failure tests of `headroom train` (tests/trainer/backend_failure_test.cc)
// and `headroom finetune` (tests/finetune/finetune_backend_failure_test.cc): a FailingOps
// (kernels/failing_ops.h) wrapped around the run's backend and armed from the step callback,
// the steps a run logged, the checkpoints it kept, and the shape of the one-line error.
//
// Example:
//   testing::FailureInjection inject;
//   options.wrap_ops = inject.WrapOps(/*arm_after=*/3, 1, "CopyToHost");
//   options.on_step = inject.OnStep(3, 1, "CopyToHost");
//   auto r = Train(options);   // fails the first read-back of step 4
//   testing::ExpectBackendFailure(r.status(), "step 4: reading the loss back: ", "CopyToHost");
#ifndef HEADROOM_TESTS_TRAINER_BACKEND_FAILURE_UTIL_H_
#define HEADROOM_TESTS_TRAINER_BACKEND_FAILURE_UTIL_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/failing_ops.h"
#include "trainer/checkpoint.h"

namespace headroom::testing {

// Fails the `n`-th call of `op` (every op when null) once step `arm_after` is done (0: from
// the set-up on). WrapOps and OnStep go into the run's options; the object must outlive the run.
struct FailureInjection {
  FailingOps<float>* failing = nullptr;  // the run's, once WrapOps has been called
  int64_t steps_done = 0;                // the last step the run reported done

  std::function<std::unique_ptr<Ops<float>>(Ops<float>*)> WrapOps(int64_t arm_after, int64_t n,
                                                                  const char* op) {
    return [this, arm_after, n, op](Ops<float>* backend) {
      auto wrapped = std::make_unique<FailingOps<float>>(backend);
      failing = wrapped.get();
      if (arm_after == 0) failing->FailAt(n, op);
      return std::unique_ptr<Ops<float>>(std::move(wrapped));
    };
  }
  std::function<void(int64_t, double)> OnStep(int64_t arm_after, int64_t n, const char* op) {
    return [this, arm_after, n, op](int64_t step, double) {
      steps_done = step;
      if (step == arm_after) failing->FailAt(n, op);
    };
  }
};

// The "step" of every line of `run_dir`/metrics.jsonl, in order.
inline std::vector<int> LoggedSteps(const std::string& run_dir) {
  std::vector<int> steps;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find("\"step\":");
    if (at != std::string::npos) steps.push_back(std::stoi(line.substr(at + 7)));
  }
  return steps;
}

// The names (step-NNNNNNNN) of the checkpoints of `run_dir`, oldest first.
inline std::vector<std::string> CheckpointNames(const std::string& run_dir) {
  std::vector<std::string> names;
  for (const std::string& dir : ListCheckpoints(run_dir)) {
    names.push_back(std::filesystem::path(dir).filename().string());
  }
  return names;
}

// `s` is one line that starts with `start`, names the failed `call` and says training stopped.
inline void ExpectBackendFailure(const absl::Status& s, const std::string& start,
                                 const std::string& call) {
  ASSERT_FALSE(s.ok());
  const std::string msg(s.message());
  EXPECT_EQ(msg.rfind(start, 0), 0u) << msg;
  EXPECT_NE(msg.find(call), std::string::npos) << msg;
  EXPECT_NE(msg.find("training stopped"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_TRAINER_BACKEND_FAILURE_UTIL_H_
