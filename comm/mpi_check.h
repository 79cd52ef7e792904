// HR_MPI_CHECK: the one check macro for MPI calls (as nccl-tests' NCCLCHECK, but returning a
// Status instead of exiting).
//
// MPI calls in headroom run with MPI_ERRORS_RETURN on their communicator, so a failure comes
// back as an error code; the macro turns it into absl::InternalError naming the call, the
// MPI error string, this rank and file:line, and returns it from the enclosing function (which
// must return absl::Status or absl::StatusOr<T>).
//
// Example:
//   HR_MPI_CHECK(MPI_Ibarrier(comm_, &request));
//   // on failure: "MPI_Ibarrier(comm_, &request) failed: MPI_ERR_COMM: invalid communicator
//   //              (rank 1, comm/mpi_communicator.cc:120)"
#ifndef HEADROOM_COMM_MPI_CHECK_H_
#define HEADROOM_COMM_MPI_CHECK_H_

#include <mpi.h>

#include "absl/status/status.h"

namespace headroom {

// The Status for MPI error code `code` returned by `call` at file:line.
absl::Status MpiErrorStatus(int code, const char* call, const char* file, int line);

}  // namespace headroom

#define HR_MPI_CHECK(call)                                                        \
  do {                                                                            \
    int hr_mpi_code_ = (call);                                                    \
    if (hr_mpi_code_ != MPI_SUCCESS) {                                            \
      return ::headroom::MpiErrorStatus(hr_mpi_code_, #call, __FILE__, __LINE__); \
    }                                                                             \
  } while (0)

#endif  // HEADROOM_COMM_MPI_CHECK_H_
