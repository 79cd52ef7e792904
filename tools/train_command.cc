// `headroom train --config FILE --data GLOB --run_dir DIR [--device cpu|cuda] [--steps N]
// [--resume] [--eval_data GLOB] [--peak_tflops T] [--set FIELD=VALUE]...`: trains a model
// (trainer/trainer.h) with checkpoints, metrics.jsonl and TensorBoard files in the run
// directory. --config, --data, --device, --steps and --peak_tflops are shared with other
// commands (tools/common_flags.h); --steps and --peak_tflops count here only when given. Without
// --peak_tflops the console's MFU is over a bf16 GEMM measured at the start on CUDA (per GPU,
// times the ranks) and not shown on the CPU.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "config/load.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/trainer.h"

ABSL_FLAG(std::string, eval_data, "",
          "evaluation shards (default: data.eval_files; none: no eval)");
ABSL_FLAG(std::string, run_dir, "", "run directory: checkpoints/, metrics.jsonl, tb/");
ABSL_FLAG(bool, resume, false, "continue from the newest complete checkpoint in --run_dir");

namespace headroom {

int RunTrain(const CommandArgs& args) {
  std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty() && args.positional.size() == 1) config_path = args.positional[0];
  if (config_path.empty()) return Fail("train", "--config FILE is required");
  absl::StatusOr<ExperimentConfig> config = LoadConfig(config_path, args.overrides);
  if (!config.ok()) return Fail("train", std::string(config.status().message()));
  absl::StatusOr<DeviceKind> device = ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail("train", std::string(device.status().message()));

  TrainOptions o;
  o.config = *config;
  o.run_dir = absl::GetFlag(FLAGS_run_dir);
  o.train_files = absl::GetFlag(FLAGS_data);
  o.eval_files = absl::GetFlag(FLAGS_eval_data);
  o.device = *device;
  o.resume = absl::GetFlag(FLAGS_resume);
  if (FlagGiven(args, "steps")) {
    if (absl::GetFlag(FLAGS_steps) <= 0) return Fail("train", "--steps must be > 0");
    o.max_steps = absl::GetFlag(FLAGS_steps);
  }
  if (FlagGiven(args, "peak_tflops")) o.peak_flops = absl::GetFlag(FLAGS_peak_tflops) * 1e12;
  absl::StatusOr<TrainResult> r = Train(o);
  if (!r.ok()) return Fail("train", std::string(r.status().message()));
  if (r->last_step == r->first_step) {  // resumed at or past the last step: nothing to do
    std::printf("nothing to train: %s is at step %lld already (train.steps or --steps)\n",
                o.run_dir.c_str(), static_cast<long long>(r->first_step));
    return 0;
  }
  std::printf("trained steps %lld..%lld; checkpoint %s\n", static_cast<long long>(r->first_step),
              static_cast<long long>(r->last_step), r->last_checkpoint.c_str());
  return 0;
}

}  // namespace headroom
