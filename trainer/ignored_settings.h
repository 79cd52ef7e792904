// The settings of a config that a backend does not apply as written, said once at the start of
// a run instead of silently: the trainer prints each line (e.g. "note: train.precision=fp32 is
// overridden for the matrix products by HEADROOM_CUDA_GEMM_PRECISION=bf16") before training.
//
//  - CPU: none. train.precision=bf16 runs the bf16 twin (trainer/training_backend.h) and
//    train.attention=fused the fused kernels' CPU twin (kernels/cpu/attention.cc).
//  - CUDA, HEADROOM_CUDA_GEMM_PRECISION set to another precision than train.precision: the
//    variable wins for the matrix products (kernels/ops.h, OpsOptions).
//  - CUDA, train.attention=fused with fp32 products: the fused attention kernels multiply in
//    bf16 (kernels/cuda/attention.cu), so train.precision=fp32 does not hold for attention.
//
// Example:
//   for (const std::string& line : IgnoredSettings(config, options.device)) {
//     std::fprintf(console, "note: %s\n", line.c_str());
//   }
#ifndef HEADROOM_TRAINER_IGNORED_SETTINGS_H_
#define HEADROOM_TRAINER_IGNORED_SETTINGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "config/config.pb.h"
#include "kernels/ops.h"

namespace headroom {

// One line per setting of `config` (defaults filled in) that `device` does not apply as
// written; empty when everything applies. `gemm_precision_env` is HEADROOM_CUDA_GEMM_PRECISION's
// value ("" when unset).
std::vector<std::string> IgnoredSettings(const ExperimentConfig& config, DeviceKind device,
                                         absl::string_view gemm_precision_env);

// The same, with HEADROOM_CUDA_GEMM_PRECISION read from this process's environment.
std::vector<std::string> IgnoredSettings(const ExperimentConfig& config, DeviceKind device);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_IGNORED_SETTINGS_H_
