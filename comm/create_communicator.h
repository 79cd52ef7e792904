// CreateCommunicator: the one place that picks a Communicator backend, from a config field or
// a flag such as `--comm=mpi`.
//
// Backends:
//   "single"  one rank, no MPI (SingleProcessCommunicator).
//   "mpi"     MPI ranks, host buffers (MpiCommunicator). Also the host-staged path for the CUDA
//             backend: copy gradients to the host, reduce, copy back (ranks may share a GPU).
//   "nccl"    NCCL between GPUs, device buffers (NcclCommunicator; CUDA builds only).
//   "auto"    "mpi" when a launcher (mpirun, srun) started the process, else "single". It never
//             picks "nccl", because device and host buffers are not interchangeable: the
//             trainer asks for "nccl" explicitly when its tensors live on the GPU.
//
// Example:
//   HR_ASSIGN_OR_RETURN(CommBackend backend, ParseCommBackend(absl::GetFlag(FLAGS_comm)));
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateCommunicator({backend}));
#ifndef HEADROOM_COMM_CREATE_COMMUNICATOR_H_
#define HEADROOM_COMM_CREATE_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "comm/communicator.h"
#include "comm/watchdog.h"

namespace headroom {

enum class CommBackend { kAuto, kSingle, kMpi, kNccl };

// "auto", "single", "mpi", "nccl" (case-sensitive); InvalidArgument listing them otherwise.
[[nodiscard]] absl::StatusOr<CommBackend> ParseCommBackend(absl::string_view name);
const char* CommBackendName(CommBackend backend);

struct CommunicatorOptions {
  CommBackend backend = CommBackend::kAuto;
  // NCCL only: CUDA device (-1: local rank modulo the device count).
  int device = -1;
  // MPI and NCCL: how long any wait for a collective (and start-up) may take before the
  // communicator declares a rank stopped or lost; Wait() then returns DeadlineExceeded naming
  // the ranks that did not arrive, and the job must end (comm/watchdog.h). > 0. The trainer
  // sets it from train.comm_timeout_s.
  absl::Duration timeout = kDefaultCommTimeout;
};

// Creates the communicator. Collective for "mpi" and "nccl": every rank must call it.
// Unavailable for "nccl" in a build without CUDA or on a machine without a GPU.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(
    const CommunicatorOptions& options = {});

}  // namespace headroom

#endif  // HEADROOM_COMM_CREATE_COMMUNICATOR_H_
