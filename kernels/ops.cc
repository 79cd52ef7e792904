// Backend selection: MakeOps, CudaStatus and CudaAvailable (see ops.h).
//
// The CPU backend is always built. The CUDA backend (kernels/cuda/) is compiled only with
// HEADROOM_CUDA, and defines the two hooks declared below; this file never includes CUDA headers.
#include "kernels/ops.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "kernels/cpu/cpu_ops.h"

namespace headroom {

#ifdef HEADROOM_HAVE_CUDA
// ---- CUDA hooks: defined in kernels/cuda/ (CudaOps). ----------------------------------------
// Creates the CUDA backend on the current device (fails with the reason when unusable).
// `matmul_precision` as OpsOptions documents ("" for the default).
absl::StatusOr<std::unique_ptr<Ops<float>>> MakeCudaOps(const std::string& matmul_precision);
// Whether a CUDA device is usable (kernels/cuda/cuda_backend.h says how it is decided).
absl::Status CudaDeviceStatus();
// cudaMemGetInfo of the current device.
absl::StatusOr<CudaMemory> CudaDeviceMemoryInfo();
#endif

absl::Status CudaStatus() {
#ifdef HEADROOM_HAVE_CUDA
  return CudaDeviceStatus();
#else
  return absl::UnavailableError("built without CUDA (HEADROOM_CUDA=OFF)");
#endif
}

absl::StatusOr<CudaMemory> CudaMemoryInfo() {
  HR_RETURN_IF_ERROR(CudaStatus());
#ifdef HEADROOM_HAVE_CUDA
  return CudaDeviceMemoryInfo();
#else
  return absl::UnavailableError("built without CUDA (HEADROOM_CUDA=OFF)");
#endif
}

bool CudaAvailable(std::string* reason) {
  const absl::Status s = CudaStatus();
  if (!s.ok() && reason != nullptr) *reason = std::string(s.message());
  return s.ok();
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
      HR_RETURN_IF_ERROR(CudaDeviceStatus());
      return MakeCudaOps(p);
#else
      return absl::UnavailableError("CUDA backend unavailable: built without CUDA");
#endif
    }
  }
  return absl::InvalidArgumentError("unknown device kind");
}

}  // namespace headroom
