// HR_COMM_CUDA_CHECK and HR_NCCL_CHECK: the check macros for CUDA runtime and NCCL calls in
// comm/ (as nccl-tests' CUDACHECK/NCCLCHECK in src/common.h, but returning a Status naming the
// call, the library's error string, this rank and file:line instead of exiting). CUDA builds
// only. The CUDA one carries a COMM_ prefix so that it never collides with the kernels' own.
//
// Example:
//   HR_NCCL_CHECK(ncclAllReduce(send, recv, n, ncclFloat, ncclAvg, comm_, stream_));
//   // "ncclAllReduce(...) failed: unhandled system error (NCCL 2; rank 0,
//   //  comm/nccl_communicator.cc:140)"
#ifndef HEADROOM_COMM_NCCL_CHECK_H_
#define HEADROOM_COMM_NCCL_CHECK_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "absl/status/status.h"

namespace headroom {

absl::Status CudaErrorStatus(cudaError_t code, const char* call, const char* file, int line);
absl::Status NcclErrorStatus(ncclResult_t code, const char* call, const char* file, int line);

}  // namespace headroom

#define HR_COMM_CUDA_CHECK(call)                                                    \
  do {                                                                              \
    cudaError_t hr_cuda_code_ = (call);                                             \
    if (hr_cuda_code_ != cudaSuccess) {                                             \
      return ::headroom::CudaErrorStatus(hr_cuda_code_, #call, __FILE__, __LINE__); \
    }                                                                               \
  } while (0)

#define HR_NCCL_CHECK(call)                                                         \
  do {                                                                              \
    ncclResult_t hr_nccl_code_ = (call);                                            \
    if (hr_nccl_code_ != ncclSuccess) {                                             \
      return ::headroom::NcclErrorStatus(hr_nccl_code_, #call, __FILE__, __LINE__); \
    }                                                                               \
  } while (0)

#endif  // HEADROOM_COMM_NCCL_CHECK_H_
