// The flags several `headroom` commands read, defined once (tools/common_flags.cc) and declared
// here, with the helpers that interpret them.
//
// absl flags are global to the binary, so a flag such as --config is one flag whatever the
// command; each command gives it its own meaning in its --help (tools/headroom.cc's
// kSharedFlags) and its own default where the shared one does not fit (e.g. `train` reads
// --steps only when it was given: FlagGiven).
//
// Example:
//   HR_ASSIGN_OR_RETURN(DeviceKind device, ParseDevice(absl::GetFlag(FLAGS_device)));
//   if (FlagGiven(args, "steps")) o.max_steps = absl::GetFlag(FLAGS_steps);
#ifndef HEADROOM_TOOLS_COMMON_FLAGS_H_
#define HEADROOM_TOOLS_COMMON_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "tools/command.h"

// Commands: bench, train, inspect-attention.
ABSL_DECLARE_FLAG(std::string, config);
// bench, train, eval, inspect-attention.
ABSL_DECLARE_FLAG(std::string, device);
// train (training shards), eval (evaluation shards), inspect-attention (probe shards).
ABSL_DECLARE_FLAG(std::string, data);
// eval, export, inspect-attention.
ABSL_DECLARE_FLAG(std::string, checkpoint);
// bench (sequences per step), eval (sequences per batch).
ABSL_DECLARE_FLAG(int, batch);
// bench (timed steps), train (optimizer steps in total, when given).
ABSL_DECLARE_FLAG(int, steps);
// scaling (GPU peak), train (peak of all devices, when given).
ABSL_DECLARE_FLAG(double, peak_tflops);
// params, scaling.
ABSL_DECLARE_FLAG(std::string, format);

namespace headroom {

// "cpu" or "cuda"; InvalidArgument naming --device otherwise.
[[nodiscard]] absl::StatusOr<DeviceKind> ParseDevice(const std::string& name);

// Whether --`name` was on the command line (args.given), as opposed to holding its default.
bool FlagGiven(const CommandArgs& args, const std::string& name);

}  // namespace headroom

#endif  // HEADROOM_TOOLS_COMMON_FLAGS_H_
