// `headroom eval --checkpoint DIR --data GLOB [--eval_batches N] [--batch N] [--device cpu|cuda]`:
// evaluates a checkpoint (a checkpoint directory, or a run directory for its newest one) with
// dropout off and prints one line of key=value pairs: "loss=... perplexity=... accuracy=..."
// for a causal LM, "loss=... mlm_accuracy=... nsp_accuracy=..." for BERT (trainer/trainer.h).
// --data, --device and --batch are shared with `train` and `bench`.
#include <cstdio>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "tools/command.h"
#include "trainer/trainer.h"

ABSL_DECLARE_FLAG(std::string, data);
ABSL_DECLARE_FLAG(std::string, device);
ABSL_DECLARE_FLAG(int, batch);

ABSL_FLAG(std::string, checkpoint, "",
          "checkpoint directory, or a run directory (newest checkpoint)");
ABSL_FLAG(int64_t, eval_batches, 100, "batches to evaluate (fewer if the data ends first)");

namespace headroom {

absl::StatusOr<DeviceKind> ParseDevice(const std::string& name);  // train_command.cc

int RunEval(const CommandArgs& args) {
  (void)args;
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  if (checkpoint.empty()) return Fail("eval", "--checkpoint DIR is required");
  absl::StatusOr<DeviceKind> device = ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail("eval", std::string(device.status().message()));
  absl::StatusOr<EvalResult> r =
      EvaluateCheckpoint(checkpoint, absl::GetFlag(FLAGS_data), absl::GetFlag(FLAGS_eval_batches),
                         absl::GetFlag(FLAGS_batch), *device);
  if (!r.ok()) return Fail("eval", std::string(r.status().message()));
  std::printf("%s\n", r->ToString().c_str());
  return 0;
}

}  // namespace headroom
