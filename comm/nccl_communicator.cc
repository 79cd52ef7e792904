// NcclCommunicator (see the header). Completion is observed through a CUDA event rather than
// cudaStreamSynchronize so that Wait() can poll ncclCommGetAsyncError and a deadline between
// queries: a peer that died mid-collective leaves NCCL kernels spinning, and only an explicit
// ncclCommAbort frees the GPU and lets this rank report instead of hanging. The same holds for
// start-up and finalisation, which run non-blocking and are settled under the deadline.
#include "comm/nccl_communicator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "comm/mpi_runtime.h"
#include "comm/nccl_check.h"
#include "comm/nccl_types.h"

namespace headroom {

absl::Status CudaErrorStatus(cudaError_t code, const char* call, const char* file, int line) {
  return absl::InternalError(absl::StrCat(call, " failed: ", cudaGetErrorString(code), " (CUDA ",
                                          static_cast<int>(code), "; rank ", WorldRankForMessages(),
                                          ", ", file, ":", line, ")"));
}

absl::Status NcclErrorStatus(ncclResult_t code, const char* call, const char* file, int line) {
  return absl::InternalError(absl::StrCat(call, " failed: ", ncclGetErrorString(code), " (NCCL ",
                                          static_cast<int>(code), "; rank ", WorldRankForMessages(),
                                          ", ", file, ":", line, ")"));
}

// The NCCL communicator handle, shared by the communicator and its requests so that whichever
// of them detects a failure aborts it exactly once and nobody uses it afterwards.
struct NcclCommState {
  ncclComm_t comm = nullptr;
  bool aborted = false;
  void AbortOnce() {
    if (comm != nullptr && !aborted) ncclCommAbort(comm);
    aborted = true;
  }
};

namespace {

class NcclRequest : public CommRequest {
 public:
  NcclRequest(std::shared_ptr<NcclCommState> state, std::shared_ptr<CollectiveWatchdog> watchdog,
              int64_t seq, cudaEvent_t done, cudaStream_t caller, const char* what)
      : state_(std::move(state)),
        watchdog_(std::move(watchdog)),
        seq_(seq),
        done_event_(done),
        caller_(caller),
        what_(what) {}

  ~NcclRequest() override {
    if (!finished_) (void)Wait();
    cudaEventDestroy(done_event_);
  }

  absl::Status Wait() override {
    if (finished_) return status_;
    absl::Status s = watchdog_->Wait(what_, seq_, [this] { return Poll(); });
    if (!finished_) {
      // The deadline passed: free the GPU from the kernels waiting for the missing rank.
      state_->AbortOnce();
      Finish(std::move(s));
    }
    return status_;
  }

  absl::StatusOr<bool> Test() override {
    if (!finished_) (void)Poll();
    if (!status_.ok()) return status_;
    return finished_;
  }

 private:
  // One look at the event and NCCL's error state; finishes the request when either says so.
  absl::StatusOr<bool> Poll() {
    if (!watchdog_->expired().ok()) {
      state_->AbortOnce();
      Finish(watchdog_->expired());
      return status_;
    }
    cudaError_t query = cudaEventQuery(done_event_);
    if (query == cudaSuccess) {
      cudaError_t order = cudaStreamWaitEvent(caller_, done_event_, 0);
      Finish(order == cudaSuccess
                 ? absl::OkStatus()
                 : CudaErrorStatus(order, "cudaStreamWaitEvent(caller, done)", __FILE__, __LINE__));
      return true;
    }
    if (query != cudaErrorNotReady) {
      Finish(CudaErrorStatus(query, what_, __FILE__, __LINE__));
      return status_;
    }
    if (state_->aborted) {
      Finish(absl::AbortedError(absl::StrCat(what_, ": the NCCL communicator was aborted")));
      return status_;
    }
    ncclResult_t async = ncclSuccess;
    ncclResult_t got = ncclCommGetAsyncError(state_->comm, &async);
    if (got != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
      ncclResult_t code = got != ncclSuccess ? got : async;
      const char* detail = ncclGetLastError(state_->comm);
      state_->AbortOnce();
      Finish(absl::InternalError(absl::StrCat(what_, " failed: ", ncclGetErrorString(code),
                                              detail != nullptr ? absl::StrCat(": ", detail) : "",
                                              " (NCCL async error; rank ", WorldRankForMessages(),
                                              ")")));
      return status_;
    }
    return false;
  }

  void Finish(absl::Status status) {
    finished_ = true;
    status_ = std::move(status);
  }

  std::shared_ptr<NcclCommState> state_;
  std::shared_ptr<CollectiveWatchdog> watchdog_;
  int64_t seq_;
  cudaEvent_t done_event_;
  cudaStream_t caller_;
  const char* what_;
  bool finished_ = false;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    const NcclOptions& options) {
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator());
  HR_ASSIGN_OR_RETURN(c->mpi_, MpiCommunicator::Create(options.timeout));
  c->timeout_ = options.timeout;
  int count = 0;
  cudaError_t probe = cudaGetDeviceCount(&count);
  if (probe != cudaSuccess || count == 0) {
    return absl::UnavailableError(
        absl::StrCat("NCCL backend needs a CUDA device, found none (",
                     probe != cudaSuccess ? cudaGetErrorString(probe) : "device count 0",
                     "); use the mpi backend"));
  }
  c->device_ = options.device >= 0 ? options.device : c->mpi_->local_rank() % count;
  HR_COMM_CUDA_CHECK(cudaSetDevice(c->device_));
  HR_COMM_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream_, cudaStreamNonBlocking));
  HR_COMM_CUDA_CHECK(cudaMalloc(&c->barrier_buffer_, sizeof(int)));

  ncclUniqueId id{};
  static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0);
  // Every rank reaches the broadcast even if rank 0 failed to make an id, so that rank 0's
  // error (returned below) is what ends the job rather than a hang in the broadcast.
  ncclResult_t id_result = c->mpi_->rank() == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
  HR_RETURN_IF_ERROR(c->mpi_->Broadcast(&id, sizeof(id) / sizeof(int32_t), DataType::kInt32, 0));
  HR_NCCL_CHECK(id_result);
  // Non-blocking: a rank that never joins must not hang the others inside NCCL's start-up.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t init =
      ncclCommInitRankConfig(&c->comm_, c->mpi_->size(), id, c->mpi_->rank(), &config);
  c->state_ = std::make_shared<NcclCommState>();
  c->state_->comm = c->comm_;
  HR_RETURN_IF_ERROR(c->Settle(init, "ncclCommInitRankConfig", __FILE__, __LINE__));
  return c;
}

NcclCommunicator::~NcclCommunicator() {
  if (state_ != nullptr && !state_->aborted) {
    cudaStreamSynchronize(stream_);
    // Finalize flushes the communicator (non-blocking: settled under the deadline, aborted
    // past it); Destroy then frees it without blocking.
    if (Settle(ncclCommFinalize(comm_), "ncclCommFinalize", __FILE__, __LINE__).ok()) {
      ncclCommDestroy(comm_);
    }
  }
  if (barrier_buffer_ != nullptr) cudaFree(barrier_buffer_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void NcclCommunicator::Abort(const absl::Status& status) {
  if (state_ != nullptr) state_->AbortOnce();
  AbortJob(status);
}

absl::Status NcclCommunicator::CheckUsable() const {
  HR_RETURN_IF_ERROR(mpi_->watchdog()->expired());
  if (state_->aborted) {
    return absl::FailedPreconditionError("the NCCL communicator was aborted after an error");
  }
  return absl::OkStatus();
}

absl::Status NcclCommunicator::OrderAfterCaller() {
  cudaEvent_t ready;
  HR_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  cudaError_t record = cudaEventRecord(ready, caller_stream_);
  cudaError_t wait = record == cudaSuccess ? cudaStreamWaitEvent(stream_, ready, 0) : record;
  cudaEventDestroy(ready);  // released once the recorded work completes
  HR_COMM_CUDA_CHECK(record);
  HR_COMM_CUDA_CHECK(wait);
  return absl::OkStatus();
}

absl::Status NcclCommunicator::Settle(ncclResult_t launched, const char* call, const char* file,
                                      int line) {
  if (launched == ncclSuccess) return absl::OkStatus();
  if (launched != ncclInProgress) {
    state_->AbortOnce();
    return NcclErrorStatus(launched, call, file, line);
  }
  absl::StatusOr<bool> settled = PollUntil(
      [&]() -> absl::StatusOr<bool> {
        ncclResult_t state = ncclInProgress;
        const ncclResult_t got = ncclCommGetAsyncError(comm_, &state);
        if (got != ncclSuccess) return NcclErrorStatus(got, "ncclCommGetAsyncError", file, line);
        if (state == ncclInProgress) return false;
        if (state != ncclSuccess) return NcclErrorStatus(state, call, file, line);
        return true;
      },
      timeout_, [] {});
  if (settled.ok() && *settled) return absl::OkStatus();
  state_->AbortOnce();
  if (!settled.ok()) return settled.status();
  return absl::DeadlineExceededError(absl::StrCat(
      call, " did not complete within ", absl::FormatDuration(timeout_),
      " (a rank is stopped, lost or slower than train.comm_timeout_s); NCCL aborted (rank ",
      WorldRankForMessages(), ", ", file, ":", line, ")"));
}

absl::StatusOr<CommHandle> NcclCommunicator::FinishLaunch(ncclResult_t launched, const char* what,
                                                          const char* call, int line) {
  const int64_t seq = mpi_->watchdog()->Start();
  HR_RETURN_IF_ERROR(Settle(launched, call, __FILE__, line));
  cudaEvent_t done;
  HR_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  cudaError_t record = cudaEventRecord(done, stream_);
  if (record != cudaSuccess) {
    cudaEventDestroy(done);
    HR_COMM_CUDA_CHECK(record);
  }
  return CommHandle(
      std::make_unique<NcclRequest>(state_, mpi_->watchdog(), seq, done, caller_stream_, what));
}

absl::StatusOr<CommHandle> NcclCommunicator::AllReduceAsync(const void* send, void* recv,
                                                            size_t count, DataType type,
                                                            ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("AllReduce", type, op));
  HR_RETURN_IF_ERROR(CheckUsable());
  HR_RETURN_IF_ERROR(OrderAfterCaller());
  return FinishLaunch(ncclAllReduce(send, recv, count, NcclDataType(type), NcclReduceOp(op, size()),
                                    comm_, stream_),
                      "AllReduce", "ncclAllReduce", __LINE__);
}

absl::StatusOr<CommHandle> NcclCommunicator::BroadcastAsync(void* buffer, size_t count,
                                                            DataType type, int root) {
  HR_RETURN_IF_ERROR(ValidateRoot("Broadcast", root, size()));
  HR_RETURN_IF_ERROR(CheckUsable());
  HR_RETURN_IF_ERROR(OrderAfterCaller());
  return FinishLaunch(
      ncclBroadcast(buffer, buffer, count, NcclDataType(type), root, comm_, stream_), "Broadcast",
      "ncclBroadcast", __LINE__);
}

absl::StatusOr<CommHandle> NcclCommunicator::AllGatherAsync(const void* send, void* recv,
                                                            size_t count, DataType type) {
  HR_RETURN_IF_ERROR(CheckUsable());
  HR_RETURN_IF_ERROR(OrderAfterCaller());
  return FinishLaunch(ncclAllGather(send, recv, count, NcclDataType(type), comm_, stream_),
                      "AllGather", "ncclAllGather", __LINE__);
}

absl::StatusOr<CommHandle> NcclCommunicator::ReduceScatterAsync(const void* send, void* recv,
                                                                size_t count, DataType type,
                                                                ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("ReduceScatter", type, op));
  HR_RETURN_IF_ERROR(CheckUsable());
  HR_RETURN_IF_ERROR(OrderAfterCaller());
  return FinishLaunch(ncclReduceScatter(send, recv, count, NcclDataType(type),
                                        NcclReduceOp(op, size()), comm_, stream_),
                      "ReduceScatter", "ncclReduceScatter", __LINE__);
}

absl::StatusOr<CommHandle> NcclCommunicator::BarrierAsync() {
  // NCCL has no barrier; an all-reduce of one int cannot finish on any rank before every rank
  // has contributed, which is a barrier's guarantee.
  HR_RETURN_IF_ERROR(CheckUsable());
  HR_RETURN_IF_ERROR(OrderAfterCaller());
  return FinishLaunch(
      ncclAllReduce(barrier_buffer_, barrier_buffer_, 1, ncclInt32, ncclSum, comm_, stream_),
      "Barrier", "ncclAllReduce(barrier)", __LINE__);
}

}  // namespace headroom
