// HR_SKIP_WITHOUT_CUDA(): the one rule deciding whether a CUDA test runs, skips or fails.
//
// A CUDA test starts with HR_SKIP_WITHOUT_CUDA() (in its body or its fixture's SetUp). It
//  - runs when CudaStatus() (kernels/ops.h) is OK;
//  - skips, visibly and with the reason, only where no GPU is present (CudaStatus() is
//    Unavailable: built without CUDA, no driver library, or the driver reports no device), as on
//    the development machines and CI;
//  - fails where a driver is present but CUDA fails anyway (CudaStatus() is any other error): a
//    GPU host with, say, too old a driver must not pass its CUDA tests as skipped;
//  - fails instead of skipping when HEADROOM_REQUIRE_CUDA=1 is in the environment
//    (scripts/gpu-check sets it: on the GPU machine a skipped CUDA test is a check not made).
#ifndef HEADROOM_TESTS_CUDA_SKIP_H_
#define HEADROOM_TESTS_CUDA_SKIP_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "kernels/ops.h"

namespace headroom::testing_util {

// Whether HEADROOM_REQUIRE_CUDA is set to something other than "" or "0".
inline bool CudaRequired() {
  const char* v = std::getenv("HEADROOM_REQUIRE_CUDA");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace headroom::testing_util

#define HR_SKIP_WITHOUT_CUDA()                                                                 \
  do {                                                                                         \
    const ::absl::Status hr_cuda_status = ::headroom::CudaStatus();                            \
    if (!hr_cuda_status.ok()) {                                                                \
      if (!::absl::IsUnavailable(hr_cuda_status)) {                                            \
        FAIL() << "a CUDA driver is present but CUDA does not work (a test fails here rather " \
                  "than skip): "                                                               \
               << hr_cuda_status.message();                                                    \
      }                                                                                        \
      if (::headroom::testing_util::CudaRequired()) {                                          \
        FAIL() << "HEADROOM_REQUIRE_CUDA is set but there is no GPU: "                         \
               << hr_cuda_status.message();                                                    \
      }                                                                                        \
      GTEST_SKIP() << "no GPU: " << hr_cuda_status.message()                                   \
                   << " (scripts/gpu-check runs this on the GPU machine)";                     \
    }                                                                                          \
  } while (0)

#endif  // HEADROOM_TESTS_CUDA_SKIP_H_
