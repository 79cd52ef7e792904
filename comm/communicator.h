// The Communicator interface: collectives between the ranks of a data-parallel job.
//
// One Communicator per process joins all ranks of the job (MPI_COMM_WORLD). Three
// implementations share this interface:
//   - SingleProcessCommunicator (comm/single_process_communicator.h): size 1, copies.
//   - MpiCommunicator (comm/mpi_communicator.h): host buffers, non-blocking MPI collectives.
//   - NcclCommunicator (comm/nccl_communicator.h, CUDA builds only): device buffers, NCCL on its
//     own CUDA stream, ordered after the caller's stream with events.
// CreateCommunicator (comm/create_communicator.h) picks one from a backend name.
//
// Every collective has an async form returning a CommHandle; the blocking form is the async
// form followed by Wait(). Collectives must be issued in the same order with the same counts,
// types and roots on every rank (as in MPI and NCCL); the handles may be waited on in any order.
// Buffers must stay valid and untouched until Wait() (or a Test() that returns true) returns.
//
// Errors are absl::Status: InvalidArgument for a bad call (checked before anything is sent, so
// all ranks fail alike), Internal/Unavailable for a library failure, naming the call and
// file:line, DeadlineExceeded for a collective some rank did not join in time (naming it). A rank
// that cannot continue calls AbortJob(): the job is ended on every rank with that rank's message,
// so no rank hangs waiting for it (DESIGN.md, Errors).
//
// Example (host buffers, MPI):
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateCommunicator({}));
//   std::vector<float> grad(n, 1.0f);
//   HR_ASSIGN_OR_RETURN(CommHandle h, comm->AllReduceAsync(grad.data(), grad.data(), n,
//                                                           DataType::kFloat32,
//                                                           ReduceOp::kAverage));
//   ... more backward work ...
//   HR_RETURN_IF_ERROR(h->Wait());   // grad[i] == 1.0f on every rank
#ifndef HEADROOM_COMM_COMMUNICATOR_H_
#define HEADROOM_COMM_COMMUNICATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace headroom {

// Element types a collective can carry.
enum class DataType { kFloat32, kFloat64, kInt32 };

// Bytes per element of `type`.
size_t DataTypeSize(DataType type);
// "float32", "float64", "int32".
const char* DataTypeName(DataType type);

// Reductions. kAverage is the sum divided by size() and is defined for floating types only
// (InvalidArgument for int32, where an integer mean would silently truncate).
enum class ReduceOp { kSum, kAverage };
const char* ReduceOpName(ReduceOp op);

// A collective in flight. Owned by the caller; destroying an unfinished request waits for it
// (a collective cannot be cancelled without aborting the job), at most until the deadline.
class CommRequest {
 public:
  virtual ~CommRequest() = default;

  // Blocks until the collective has finished on this rank and its output buffer is valid (for
  // NCCL: until the device has finished it, and the caller's stream is ordered after it).
  // Returns the collective's status; later calls return the same status at once. MPI and NCCL
  // wait at most the communicator's timeout (CommunicatorOptions::timeout; comm/watchdog.h),
  // without spinning a core: past it, DeadlineExceeded names the collective and the ranks that
  // did not arrive, the communicator fails every later call, and the caller must end the job
  // (Abort).
  [[nodiscard]] virtual absl::Status Wait() = 0;

  // Non-blocking: true when finished (Wait then returns at once), false while in flight, an
  // error if it failed. Each call also drives the library's progress engine (MPI progresses
  // non-blocking collectives only inside MPI calls), so poll it while computing.
  [[nodiscard]] virtual absl::StatusOr<bool> Test() = 0;
};
using CommHandle = std::unique_ptr<CommRequest>;

class Communicator {
 public:
  virtual ~Communicator() = default;

  // This process's rank in the job, 0 <= rank() < size().
  virtual int rank() const = 0;
  // Number of ranks in the job.
  virtual int size() const = 0;
  // Rank among the processes on this node (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)); used to
  // pick a GPU and a CPU set.
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;
  // "single", "mpi" or "nccl".
  virtual const char* backend_name() const = 0;
  // True when buffers must be device memory (NCCL); false for host memory.
  virtual bool device_buffers() const = 0;

  // recv[i] = op over ranks of send[i], i < count, on every rank. send == recv is in place.
  [[nodiscard]] virtual absl::StatusOr<CommHandle> AllReduceAsync(const void* send, void* recv,
                                                                  size_t count, DataType type,
                                                                  ReduceOp op) = 0;
  // buffer[0, count) of rank `root` is copied to every rank's buffer.
  [[nodiscard]] virtual absl::StatusOr<CommHandle> BroadcastAsync(void* buffer, size_t count,
                                                                  DataType type, int root) = 0;
  // recv[r * count + i] = send of rank r [i]; recv holds size() * count elements. In place when
  // send == recv + rank() * count (in elements); otherwise the buffers must not overlap.
  [[nodiscard]] virtual absl::StatusOr<CommHandle> AllGatherAsync(const void* send, void* recv,
                                                                  size_t count, DataType type) = 0;
  // recv[i] = op over ranks r of send_r[rank() * count + i]; send holds size() * count elements,
  // recv count. The buffers must not overlap.
  [[nodiscard]] virtual absl::StatusOr<CommHandle> ReduceScatterAsync(const void* send, void* recv,
                                                                      size_t count, DataType type,
                                                                      ReduceOp op) = 0;
  // Finishes once every rank has entered the barrier.
  [[nodiscard]] virtual absl::StatusOr<CommHandle> BarrierAsync() = 0;

  // Blocking forms: the async form, then Wait().
  [[nodiscard]] absl::Status AllReduce(const void* send, void* recv, size_t count, DataType type,
                                       ReduceOp op);
  [[nodiscard]] absl::Status Broadcast(void* buffer, size_t count, DataType type, int root);
  [[nodiscard]] absl::Status AllGather(const void* send, void* recv, size_t count, DataType type);
  [[nodiscard]] absl::Status ReduceScatter(const void* send, void* recv, size_t count,
                                           DataType type, ReduceOp op);
  [[nodiscard]] absl::Status Barrier();

  // Ends the whole job because of `status` on this rank: prints "rank R: <message>" on stderr
  // and aborts every rank (MPI_Abort; NCCL communicators are aborted first). Never returns.
  [[noreturn]] virtual void Abort(const absl::Status& status);
};

// Ends the job from anywhere (no Communicator needed, e.g. before one exists): prints
// "rank R: <message>" on stderr (R from MPI when initialised, else from the launcher's
// environment, else 0), then MPI_Abort(MPI_COMM_WORLD, 1) when MPI is initialised, else
// exit(1). Never returns.
[[noreturn]] void AbortJob(const absl::Status& status);

// Returns `status` when OK, otherwise AbortJob(status): for calls whose failure no rank can
// recover from. Example: `AbortIfError(comm->Barrier());`.
void AbortIfError(const absl::Status& status);

// Checks the arguments every backend shares (types, ops, root, counts representable as int for
// MPI); InvalidArgument naming `what` otherwise. For implementations.
[[nodiscard]] absl::Status ValidateReduce(const char* what, DataType type, ReduceOp op);
[[nodiscard]] absl::Status ValidateCount(const char* what, size_t count, size_t multiplier = 1);
[[nodiscard]] absl::Status ValidateRoot(const char* what, int root, int size);

}  // namespace headroom

#endif  // HEADROOM_COMM_COMMUNICATOR_H_
