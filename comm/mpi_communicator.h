// MpiCommunicator: collectives between MPI ranks on host buffers, with non-blocking MPI
// (MPI_Iallreduce, MPI_Ibcast, MPI_Iallgather, MPI_Ireduce_scatter_block, MPI_Ibarrier).
//
// It works on its own duplicate of MPI_COMM_WORLD (so its collectives never match anyone
// else's) with MPI_ERRORS_RETURN, so failures come back as Status (HR_MPI_CHECK) instead of
// killing the process from inside MPI. kAverage is MPI_SUM followed by a division by size() on
// this rank when the request completes (MPI has no average operation).
//
// Threads and progress. MPI is initialised with MPI_THREAD_FUNNELED (comm/mpi_runtime.h): the
// communicator and its requests must be used from the thread that created it. Open MPI (and
// MPICH without an asynchronous progress thread) advances a non-blocking collective only while
// some MPI call runs on that rank, so a collective started before backward and merely waited for
// afterwards would do most of its work inside Wait(), hiding nothing. headroom therefore
// progresses requests by polling from the caller: CommRequest::Test() calls MPI_Test, which
// runs the progress engine for every outstanding request of the process. GradientBuckets calls
// it on each MarkReady (once per layer of backward) and offers Progress() for finer-grained
// polling inside long layers. A dedicated progress thread would need MPI_THREAD_MULTIPLE, whose
// locking slows every MPI call in Open MPI, and it would compete with the compute threads for
// cores; polling from backward costs a few microseconds per call.
//
// Deadlines. Every wait goes through a CollectiveWatchdog (comm/watchdog.h): MPI_Test polled
// with sleeps in between (no core spinning while a peer is late) until the collective finishes
// or `timeout` passes. Then Wait() returns DeadlineExceeded naming the collective and the ranks
// that did not arrive (from a census of the others), and the communicator is expired: MPI
// cannot cancel the collective, so every later call fails with the same status without
// touching MPI, and the caller must end the job (Communicator::Abort; Train() does). Destroying
// an expired communicator ends the job too, so no rank can go on to hang in MPI_Finalize.
// Start-up (Create) waits for every rank in an MPI_Ibarrier under the same deadline first.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> comm, MpiCommunicator::Create());
//   HR_RETURN_IF_ERROR(comm->Broadcast(params, n, DataType::kFloat32, /*root=*/0));
#ifndef HEADROOM_COMM_MPI_COMMUNICATOR_H_
#define HEADROOM_COMM_MPI_COMMUNICATOR_H_

#include <mpi.h>

#include <functional>
#include <memory>

#include "absl/time/time.h"
#include "comm/communicator.h"
#include "comm/watchdog.h"

namespace headroom {

class MpiCommunicator : public Communicator {
 public:
  // Initialises MPI if needed (EnsureMpiInitialized) and joins every rank of MPI_COMM_WORLD.
  // Collective: every rank must call it. `timeout` (> 0) is the deadline of every wait.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(
      absl::Duration timeout = kDefaultCommTimeout);
  // The ranks of `parent` (e.g. a subset split from MPI_COMM_WORLD, for tests that train on
  // fewer ranks than the job has), duplicated. Collective over `parent`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(
      MPI_Comm parent, absl::Duration timeout = kDefaultCommTimeout);

  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  const char* backend_name() const override { return "mpi"; }
  bool device_buffers() const override { return false; }

  absl::StatusOr<CommHandle> AllReduceAsync(const void* send, void* recv, size_t count,
                                            DataType type, ReduceOp op) override;
  absl::StatusOr<CommHandle> BroadcastAsync(void* buffer, size_t count, DataType type,
                                            int root) override;
  absl::StatusOr<CommHandle> AllGatherAsync(const void* send, void* recv, size_t count,
                                            DataType type) override;
  absl::StatusOr<CommHandle> ReduceScatterAsync(const void* send, void* recv, size_t count,
                                                DataType type, ReduceOp op) override;
  absl::StatusOr<CommHandle> BarrierAsync() override;

  // The communicator's own MPI communicator (a duplicate of MPI_COMM_WORLD).
  MPI_Comm mpi_comm() const { return comm_; }
  // Its watchdog; NcclCommunicator's waits share it (one numbering of the job's collectives).
  const std::shared_ptr<CollectiveWatchdog>& watchdog() const { return watchdog_; }

 private:
  MpiCommunicator() = default;
  // Numbers the collective `what` (e.g. "AllReduce") and wraps its started `request`.
  CommHandle Track(MPI_Request request, const char* what, const char* mpi_call,
                   std::function<void()> on_done);

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::shared_ptr<CollectiveWatchdog> watchdog_;
  MPI_Comm local_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

// MPI's datatype for `type`.
MPI_Datatype ToMpiDatatype(DataType type);

}  // namespace headroom

#endif  // HEADROOM_COMM_MPI_COMMUNICATOR_H_
