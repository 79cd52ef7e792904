// The backend-independent parts of Communicator: blocking forms, argument checks, job abort.
#include "comm/communicator.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "comm/mpi_runtime.h"

namespace headroom {

size_t DataTypeSize(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return 4;
    case DataType::kFloat64:
      return 8;
    case DataType::kInt32:
      return 4;
  }
  return 0;
}

const char* DataTypeName(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return "float32";
    case DataType::kFloat64:
      return "float64";
    case DataType::kInt32:
      return "int32";
  }
  return "?";
}

const char* ReduceOpName(ReduceOp op) { return op == ReduceOp::kSum ? "sum" : "average"; }

absl::Status Communicator::AllReduce(const void* send, void* recv, size_t count, DataType type,
                                     ReduceOp op) {
  HR_ASSIGN_OR_RETURN(CommHandle handle, AllReduceAsync(send, recv, count, type, op));
  return handle->Wait();
}

absl::Status Communicator::Broadcast(void* buffer, size_t count, DataType type, int root) {
  HR_ASSIGN_OR_RETURN(CommHandle handle, BroadcastAsync(buffer, count, type, root));
  return handle->Wait();
}

absl::Status Communicator::AllGather(const void* send, void* recv, size_t count, DataType type) {
  HR_ASSIGN_OR_RETURN(CommHandle handle, AllGatherAsync(send, recv, count, type));
  return handle->Wait();
}

absl::Status Communicator::ReduceScatter(const void* send, void* recv, size_t count, DataType type,
                                         ReduceOp op) {
  HR_ASSIGN_OR_RETURN(CommHandle handle, ReduceScatterAsync(send, recv, count, type, op));
  return handle->Wait();
}

absl::Status Communicator::Barrier() {
  HR_ASSIGN_OR_RETURN(CommHandle handle, BarrierAsync());
  return handle->Wait();
}

void Communicator::Abort(const absl::Status& status) { AbortJob(status); }

void AbortJob(const absl::Status& status) {
  // One write, so that lines from several ranks do not interleave mid-message.
  std::string line = absl::StrCat("rank ", WorldRankForMessages(), ": ", status.message(), "\n");
  std::fflush(stdout);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  // MPI_Abort makes mpirun kill every rank of the job, including ones blocked in a collective
  // that will never complete; that is what keeps the other ranks from hanging.
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void AbortIfError(const absl::Status& status) {
  if (!status.ok()) AbortJob(status);
}

absl::Status ValidateReduce(const char* what, DataType type, ReduceOp op) {
  if (op == ReduceOp::kAverage && type == DataType::kInt32) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": average is defined for floating types only, not int32; use sum"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCount(const char* what, size_t count, size_t multiplier) {
  // MPI counts are int; larger buffers would need chunking, which no headroom model needs
  // (BERT-large has 336M parameters, under INT_MAX).
  if (count > static_cast<size_t>(INT_MAX) / (multiplier == 0 ? 1 : multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", count, " x ", multiplier,
                                                   " elements exceed INT_MAX; split the buffer"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRoot(const char* what, int root, int size) {
  if (root < 0 || root >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": root ", root, " is not a rank of a job of size ", size));
  }
  return absl::OkStatus();
}

}  // namespace headroom
