// IgnoredSettings (see ignored_settings.h).
#include "trainer/ignored_settings.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace headroom {

std::vector<std::string> IgnoredSettings(const ExperimentConfig& config, DeviceKind device,
                                         absl::string_view gemm_precision_env) {
  const TrainConfig& t = config.train();
  std::vector<std::string> lines;
  if (device == DeviceKind::kCpu) return lines;  // the CPU applies every setting
  // CUDA: the matrix products' precision is the variable's when set, else train.precision.
  std::string products = t.precision();
  if (!gemm_precision_env.empty() && gemm_precision_env != t.precision()) {
    lines.push_back(absl::StrCat("train.precision=", t.precision(),
                                 " is overridden for the matrix products by "
                                 "HEADROOM_CUDA_GEMM_PRECISION=",
                                 gemm_precision_env));
    products = std::string(gemm_precision_env);
  }
  if (t.attention() == "fused" && products != "bf16") {
    lines.push_back(absl::StrCat("train.attention=fused multiplies in bf16 on CUDA, so the ",
                                 products,
                                 " precision of the other matrix products does not "
                                 "hold for attention (train.attention=materialized keeps it)"));
  }
  return lines;
}

std::vector<std::string> IgnoredSettings(const ExperimentConfig& config, DeviceKind device) {
  const char* env = std::getenv("HEADROOM_CUDA_GEMM_PRECISION");
  return IgnoredSettings(config, device, env != nullptr ? env : "");
}

}  // namespace headroom
