// The two entry points kernels/ops.cc needs from the CUDA backend, without CUDA headers.
//
// ops.cc calls these under `#ifdef HEADROOM_HAVE_CUDA` to implement MakeOps(kCuda) and
// CudaAvailable. Everything else about the backend is in kernels/cuda/cuda_ops.h.
#ifndef HEADROOM_KERNELS_CUDA_CUDA_BACKEND_H_
#define HEADROOM_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace headroom {

// Whether a CUDA device is usable. The answer comes from one cudaGetDeviceCount call, made once
// per process; any error (no driver: cudaErrorInsufficientDriver, no device, ...) means "no
// GPU", and `reason` (if non-null) gets the error, e.g. "no usable CUDA device:
// cudaGetDeviceCount failed: cudaErrorInsufficientDriver: CUDA driver version is insufficient
// for CUDA runtime version".
bool CudaDeviceAvailable(std::string* reason);

// A CudaOps on device 0 with GEMMs in `matmul_precision` ("fp32", "tf32", "bf16"; "" means
// fp32), then CudaOpsOptions::FromEnvironment() on top (HEADROOM_CUDA_GEMM_PRECISION, when set,
// wins). Unavailable with the reason when there is no usable GPU.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Ops<float>>> MakeCudaOps(
    const std::string& matmul_precision);

}  // namespace headroom

#endif  // HEADROOM_KERNELS_CUDA_CUDA_BACKEND_H_
