// Backend selection: MakeOps and CudaAvailable (see ops.h).
//
// The CPU backend is always built. The CUDA backend (kernels/cuda/) is compiled only with
// HEADROOM_CUDA, and defines the two hooks declared below; this file never includes CUDA headers.
#include "kernels/ops.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_ops.h"

namespace headroom {

#ifdef HEADROOM_HAVE_CUDA
// ---- CUDA hooks: defined in kernels/cuda/ (CudaOps). ----------------------------------------
// Creates the CUDA backend on the current device (fails with the reason when unusable).
// `matmul_precision` as OpsOptions documents ("" for the default).
absl::StatusOr<std::unique_ptr<Ops<float>>> MakeCudaOps(const std::string& matmul_precision);
// Whether a CUDA device is usable; when not, `reason` (if non-null) says why.
bool CudaDeviceAvailable(std::string* reason);
#endif

bool CudaAvailable(std::string* reason) {
#ifdef HEADROOM_HAVE_CUDA
  return CudaDeviceAvailable(reason);
#else
  if (reason) *reason = "built without CUDA (HEADROOM_CUDA=OFF)";
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Ops<float>>> MakeOps(DeviceKind device, const OpsOptions& options) {
  const std::string& p = options.matmul_precision;
  if (!p.empty() && p != "fp32" && p != "tf32" && p != "bf16") {
    return absl::InvalidArgumentError("matmul precision \"" + p +
                                      "\": expected fp32, tf32 or bf16");
  }
  switch (device) {
    case DeviceKind::kCpu:
      return std::unique_ptr<Ops<float>>(std::make_unique<CpuOps<float>>());
    case DeviceKind::kCuda: {
#ifdef HEADROOM_HAVE_CUDA
      std::string reason;
      if (!CudaDeviceAvailable(&reason)) return absl::UnavailableError(reason);
      return MakeCudaOps(p);
#else
      return absl::UnavailableError("CUDA backend unavailable: built without CUDA");
#endif
    }
  }
  return absl::InvalidArgumentError("unknown device kind");
}

}  // namespace headroom
