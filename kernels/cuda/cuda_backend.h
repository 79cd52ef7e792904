// The two entry points kernels/ops.cc needs from the CUDA backend, without CUDA headers.
//
// ops.cc calls these under `#ifdef HEADROOM_HAVE_CUDA` to implement MakeOps(kCuda) and
// CudaStatus. Everything else about the backend is in kernels/cuda/cuda_ops.h.
#ifndef HEADROOM_KERNELS_CUDA_CUDA_BACKEND_H_
#define HEADROOM_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/ops.h"

namespace headroom {

// Whether a CUDA device is usable, decided once per process (CudaStatus in kernels/ops.h is this
// answer). The runtime answers cudaErrorInsufficientDriver both where no driver is installed
// and where one is too old for it, so the driver library is looked for first:
//  - dlopen("libcuda.so.1") fails: Unavailable, "no CUDA driver (libcuda.so.1: ...)" (no GPU);
//  - the driver reports no device (cudaErrorNoDevice, or a count of 0): Unavailable;
//  - any other cudaGetDeviceCount error: Internal, "a CUDA driver is present but
//    cudaGetDeviceCount failed: <error>" (a GPU machine that is broken, not one without a GPU).
[[nodiscard]] absl::Status CudaDeviceStatus();

// cudaMemGetInfo of the current device (CudaMemoryInfo in kernels/ops.h); Internal naming the
// CUDA error when it fails.
[[nodiscard]] absl::StatusOr<CudaMemory> CudaDeviceMemoryInfo();

// A CudaOps on device 0 with GEMMs in `matmul_precision` ("fp32", "tf32", "bf16"; "" means
// fp32), then CudaOpsOptions::FromEnvironment() on top (HEADROOM_CUDA_GEMM_PRECISION, when set,
// wins). CudaDeviceStatus()'s error when there is no usable GPU.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Ops<float>>> MakeCudaOps(
    const std::string& matmul_precision);

}  // namespace headroom

#endif  // HEADROOM_KERNELS_CUDA_CUDA_BACKEND_H_
