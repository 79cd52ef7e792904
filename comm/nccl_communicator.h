// NcclCommunicator: collectives between GPUs with NCCL, on device buffers (CUDA builds only).
//
// Start-up (collective over all ranks): MPI is the bootstrap. Each rank selects its GPU
// (options.device, or local_rank % device count), rank 0 creates the ncclUniqueId, MPI
// broadcasts it, and every rank joins with ncclCommInitRank. NCCL refuses two ranks on one
// GPU (invalid usage), so ranks sharing a GPU must use MpiCommunicator with host staging.
//
// Streams. Collectives run on the communicator's own non-blocking CUDA stream, so they overlap
// the compute stream. Each async call records an event on the caller's stream
// (set_caller_stream; default the legacy default stream) and makes the NCCL stream wait for
// it, so the collective sees everything the caller enqueued before the call; Wait() makes the
// caller's stream wait for the collective's completion event, so later kernels see the result.
//
// Errors. Wait() polls the completion event and ncclCommGetAsyncError until the collective
// finishes, fails, or options.timeout passes; on failure or timeout it aborts the NCCL
// communicator (ncclCommAbort, so no kernel spins forever) and returns the error, which the
// caller passes to Abort(): "rank R: <message>" and MPI_Abort end the job on every rank.
//
// Example:
//   NcclOptions options;  // device from local rank, 10 min timeout
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> comm, NcclCommunicator::Create(options));
//   comm->set_caller_stream(compute_stream);
//   HR_ASSIGN_OR_RETURN(CommHandle h, comm->AllReduceAsync(d_grad, d_grad, n, DataType::kFloat32,
//                                                           ReduceOp::kAverage));
//   ... enqueue more backward kernels on compute_stream ...
//   HR_RETURN_IF_ERROR(h->Wait());
#ifndef HEADROOM_COMM_NCCL_COMMUNICATOR_H_
#define HEADROOM_COMM_NCCL_COMMUNICATOR_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>

#include "absl/time/time.h"
#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace headroom {

struct NcclCommState;

struct NcclOptions {
  // CUDA device of this rank; -1 picks local_rank % cudaGetDeviceCount.
  int device = -1;
  // How long Wait() lets one collective run before declaring the job stuck and aborting NCCL.
  absl::Duration timeout = absl::Minutes(10);
};

class NcclCommunicator : public Communicator {
 public:
  // Collective over all ranks. Unavailable when no CUDA device is usable.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      const NcclOptions& options = {});

  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  int local_rank() const override { return mpi_->local_rank(); }
  int local_size() const override { return mpi_->local_size(); }
  const char* backend_name() const override { return "nccl"; }
  bool device_buffers() const override { return true; }

  absl::StatusOr<CommHandle> AllReduceAsync(const void* send, void* recv, size_t count,
                                            DataType type, ReduceOp op) override;
  absl::StatusOr<CommHandle> BroadcastAsync(void* buffer, size_t count, DataType type,
                                            int root) override;
  absl::StatusOr<CommHandle> AllGatherAsync(const void* send, void* recv, size_t count,
                                            DataType type) override;
  absl::StatusOr<CommHandle> ReduceScatterAsync(const void* send, void* recv, size_t count,
                                                DataType type, ReduceOp op) override;
  absl::StatusOr<CommHandle> BarrierAsync() override;

  // Aborts the NCCL communicator, then the job (Communicator::Abort).
  [[noreturn]] void Abort(const absl::Status& status) override;

  // The stream whose earlier work collectives wait for, and which waits for them in Wait().
  void set_caller_stream(cudaStream_t stream) { caller_stream_ = stream; }
  // The stream NCCL runs on.
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  // The MPI communicator used for start-up (host-side control messages may use it too).
  MpiCommunicator& mpi() { return *mpi_; }

 private:
  NcclCommunicator() = default;
  // FailedPrecondition once the NCCL communicator has been aborted.
  absl::Status CheckUsable() const;
  // Records "caller work done" and makes stream_ wait for it.
  absl::Status OrderAfterCaller();
  // Records completion on stream_ and wraps it in a request.
  absl::StatusOr<CommHandle> FinishLaunch(const char* what);

  std::unique_ptr<MpiCommunicator> mpi_;
  ncclComm_t comm_ = nullptr;
  std::shared_ptr<NcclCommState> state_;  // comm_ and whether it was aborted
  cudaStream_t stream_ = nullptr;
  cudaStream_t caller_stream_ = nullptr;
  int device_ = 0;
  int* barrier_buffer_ = nullptr;  // one device int for the barrier's all-reduce
  absl::Duration timeout_;
};

}  // namespace headroom

#endif  // HEADROOM_COMM_NCCL_COMMUNICATOR_H_
