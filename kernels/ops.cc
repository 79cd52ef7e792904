// Backend selection: MakeOps and CudaAvailable (see ops.h).
#include "kernels/ops.h"

#include "absl/status/status.h"

namespace headroom {

bool CudaAvailable(std::string* reason) {
  if (reason) *reason = "the CUDA backend is not implemented yet";
  return false;
}

absl::StatusOr<std::unique_ptr<Ops<float>>> MakeOps(DeviceKind device) {
  (void)device;
  return absl::UnimplementedError("no backend is implemented yet");
}

}  // namespace headroom
