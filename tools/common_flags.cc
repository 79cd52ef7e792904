// The shared flags' definitions and helpers; see common_flags.h. Each command's --help gives a
// shared flag's meaning for that command (tools/headroom.cc).
#include "tools/common_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, config, "", "config file (.textproto); may also be given as an argument");
ABSL_FLAG(std::string, device, "cpu", "backend: cpu or cuda");
ABSL_FLAG(std::string, data, "", "shards: glob or comma-separated globs");
ABSL_FLAG(std::string, checkpoint, "",
          "checkpoint directory, or a run directory (newest checkpoint)");
ABSL_FLAG(int, batch, 0, "sequences per step or batch (0: from the config)");
ABSL_FLAG(int, steps, 5, "steps");
ABSL_FLAG(double, peak_tflops, 790.0, "peak TFLOP/s");
ABSL_FLAG(std::string, format, "table", "output format: table (aligned columns) or csv");

namespace headroom {

absl::StatusOr<DeviceKind> ParseDevice(const std::string& name) {
  if (name == "cpu") return DeviceKind::kCpu;
  if (name == "cuda") return DeviceKind::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("--device: expected cpu or cuda, got '", name, "'"));
}

bool FlagGiven(const CommandArgs& args, const std::string& name) {
  return args.given_flags.count(name) > 0;
}

}  // namespace headroom
