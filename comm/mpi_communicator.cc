// MpiCommunicator: one MPI_Request per collective, completed by Wait() (through the
// communicator's CollectiveWatchdog, under its deadline) or polled by Test(). The average's
// division happens in the request's completion step, exactly once, on the rank that owns the
// output buffer.
#include "comm/mpi_communicator.h"

#include <cstdint>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "comm/mpi_check.h"
#include "comm/mpi_runtime.h"

namespace headroom {
namespace {

class MpiRequest : public CommRequest {
 public:
  MpiRequest(MPI_Request request, const char* what, const char* mpi_call,
             std::function<void()> on_done, std::shared_ptr<CollectiveWatchdog> watchdog,
             int64_t seq)
      : request_(request),
        what_(what),
        mpi_call_(mpi_call),
        on_done_(std::move(on_done)),
        watchdog_(std::move(watchdog)),
        seq_(seq) {}

  ~MpiRequest() override {
    // Abandoning an active MPI request would let MPI write into freed buffers later.
    if (!done_) (void)Wait();
  }

  absl::Status Wait() override {
    if (done_) return status_;
    absl::Status s = watchdog_->Wait(what_, seq_, [this] { return Test(); });
    if (!done_) {
      // The deadline passed (in this wait or an earlier one). MPI cannot cancel a collective:
      // the request stays with MPI, and the job must end.
      done_ = true;
      status_ = std::move(s);
    }
    return status_;
  }

  absl::StatusOr<bool> Test() override {
    if (!done_ && !watchdog_->expired().ok()) {
      done_ = true;  // after an expiry nothing touches MPI again (see the header)
      status_ = watchdog_->expired();
    }
    if (!done_) {
      int flag = 0;
      int code = MPI_Test(&request_, &flag, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS || flag) Finish(code);
    }
    if (!status_.ok()) return status_;
    return done_;
  }

 private:
  void Finish(int code) {
    done_ = true;
    if (code != MPI_SUCCESS) {
      status_ = MpiErrorStatus(code, mpi_call_, __FILE__, __LINE__);
    } else if (on_done_) {
      on_done_();
    }
  }

  MPI_Request request_;
  const char* what_;      // "AllReduce"
  const char* mpi_call_;  // "MPI_Iallreduce"
  std::function<void()> on_done_;
  std::shared_ptr<CollectiveWatchdog> watchdog_;
  int64_t seq_;
  bool done_ = false;
  absl::Status status_;
};

// recv[0, count) /= size, for the average.
std::function<void()> Divider(void* recv, size_t count, DataType type, int size) {
  if (count == 0 || size == 1) return nullptr;
  return [recv, count, type, size] {
    if (type == DataType::kFloat32) {
      float* p = static_cast<float*>(recv);
      const float s = static_cast<float>(size);
      for (size_t i = 0; i < count; ++i) p[i] /= s;
    } else {
      double* p = static_cast<double*>(recv);
      const double s = static_cast<double>(size);
      for (size_t i = 0; i < count; ++i) p[i] /= s;
    }
  };
}

bool Overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && x < y + b_bytes && y < x + a_bytes;
}

}  // namespace

MPI_Datatype ToMpiDatatype(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return MPI_FLOAT;
    case DataType::kFloat64:
      return MPI_DOUBLE;
    case DataType::kInt32:
      return MPI_INT;
  }
  return MPI_DATATYPE_NULL;
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(absl::Duration timeout) {
  HR_RETURN_IF_ERROR(EnsureMpiInitialized());
  HR_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  return Create(MPI_COMM_WORLD, timeout);
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(MPI_Comm parent,
                                                                          absl::Duration timeout) {
  HR_RETURN_IF_ERROR(EnsureMpiInitialized());
  if (!(timeout > absl::ZeroDuration())) {
    return absl::InvalidArgumentError(
        absl::StrCat("communicator timeout must be > 0, got ", absl::FormatDuration(timeout)));
  }
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator());
  // The calls below block until every rank makes them; first make sure every rank is there.
  MPI_Request ready;
  HR_MPI_CHECK(MPI_Ibarrier(parent, &ready));
  HR_ASSIGN_OR_RETURN(const bool joined,
                      PollUntil(
                          [&]() -> absl::StatusOr<bool> {
                            int done = 0;
                            HR_MPI_CHECK(MPI_Test(&ready, &done, MPI_STATUS_IGNORE));
                            return done != 0;
                          },
                          timeout, [] {}));
  if (!joined) {
    return absl::DeadlineExceededError(
        absl::StrCat("communicator start-up: not every rank of the job joined within ",
                     absl::FormatDuration(timeout),
                     " (a rank failed to start, stopped, or is slower than train.comm_timeout_s)"));
  }
  HR_ASSIGN_OR_RETURN(c->watchdog_, CollectiveWatchdog::Create(parent, timeout));
  HR_MPI_CHECK(MPI_Comm_dup(parent, &c->comm_));
  HR_MPI_CHECK(MPI_Comm_set_errhandler(c->comm_, MPI_ERRORS_RETURN));
  HR_MPI_CHECK(MPI_Comm_rank(c->comm_, &c->rank_));
  HR_MPI_CHECK(MPI_Comm_size(c->comm_, &c->size_));
  HR_MPI_CHECK(MPI_Comm_split_type(c->comm_, MPI_COMM_TYPE_SHARED, c->rank_, MPI_INFO_NULL,
                                   &c->local_comm_));
  HR_MPI_CHECK(MPI_Comm_rank(c->local_comm_, &c->local_rank_));
  HR_MPI_CHECK(MPI_Comm_size(c->local_comm_, &c->local_size_));
  return c;
}

MpiCommunicator::~MpiCommunicator() {
  // A collective that timed out is still pending in MPI and cannot be cancelled; MPI_Finalize
  // would wait for it forever. Whoever got the timeout should have ended the job already.
  if (watchdog_ != nullptr && !watchdog_->expired().ok()) AbortJob(watchdog_->expired());
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (local_comm_ != MPI_COMM_NULL) MPI_Comm_free(&local_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

CommHandle MpiCommunicator::Track(MPI_Request request, const char* what, const char* mpi_call,
                                  std::function<void()> on_done) {
  const int64_t seq = watchdog_->Start();
  return CommHandle(
      std::make_unique<MpiRequest>(request, what, mpi_call, std::move(on_done), watchdog_, seq));
}

absl::StatusOr<CommHandle> MpiCommunicator::AllReduceAsync(const void* send, void* recv,
                                                           size_t count, DataType type,
                                                           ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("AllReduce", type, op));
  HR_RETURN_IF_ERROR(ValidateCount("AllReduce", count));
  HR_RETURN_IF_ERROR(watchdog_->expired());
  const size_t bytes = count * DataTypeSize(type);
  if (send != recv && Overlap(send, bytes, recv, bytes)) {
    return absl::InvalidArgumentError("AllReduce: send and recv overlap without being equal");
  }
  MPI_Request request;
  HR_MPI_CHECK(MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count),
                              ToMpiDatatype(type), MPI_SUM, comm_, &request));
  return Track(request, "AllReduce", "MPI_Iallreduce",
               op == ReduceOp::kAverage ? Divider(recv, count, type, size_) : nullptr);
}

absl::StatusOr<CommHandle> MpiCommunicator::BroadcastAsync(void* buffer, size_t count,
                                                           DataType type, int root) {
  HR_RETURN_IF_ERROR(ValidateRoot("Broadcast", root, size_));
  HR_RETURN_IF_ERROR(ValidateCount("Broadcast", count));
  HR_RETURN_IF_ERROR(watchdog_->expired());
  MPI_Request request;
  HR_MPI_CHECK(
      MPI_Ibcast(buffer, static_cast<int>(count), ToMpiDatatype(type), root, comm_, &request));
  return Track(request, "Broadcast", "MPI_Ibcast", nullptr);
}

absl::StatusOr<CommHandle> MpiCommunicator::AllGatherAsync(const void* send, void* recv,
                                                           size_t count, DataType type) {
  HR_RETURN_IF_ERROR(ValidateCount("AllGather", count, size_));
  HR_RETURN_IF_ERROR(watchdog_->expired());
  const size_t bytes = count * DataTypeSize(type);
  const void* own_slot = static_cast<const char*>(recv) + rank_ * bytes;
  const bool in_place = send == own_slot;
  if (!in_place && Overlap(send, bytes, recv, bytes * size_)) {
    return absl::InvalidArgumentError(
        "AllGather: send overlaps recv without being recv + rank * count (in place)");
  }
  MPI_Request request;
  HR_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, static_cast<int>(count),
                              ToMpiDatatype(type), recv, static_cast<int>(count),
                              ToMpiDatatype(type), comm_, &request));
  return Track(request, "AllGather", "MPI_Iallgather", nullptr);
}

absl::StatusOr<CommHandle> MpiCommunicator::ReduceScatterAsync(const void* send, void* recv,
                                                               size_t count, DataType type,
                                                               ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("ReduceScatter", type, op));
  HR_RETURN_IF_ERROR(ValidateCount("ReduceScatter", count, size_));
  HR_RETURN_IF_ERROR(watchdog_->expired());
  const size_t bytes = count * DataTypeSize(type);
  if (Overlap(send, bytes * size_, recv, bytes)) {
    return absl::InvalidArgumentError("ReduceScatter: send and recv overlap");
  }
  MPI_Request request;
  HR_MPI_CHECK(MPI_Ireduce_scatter_block(send, recv, static_cast<int>(count), ToMpiDatatype(type),
                                         MPI_SUM, comm_, &request));
  return Track(request, "ReduceScatter", "MPI_Ireduce_scatter_block",
               op == ReduceOp::kAverage ? Divider(recv, count, type, size_) : nullptr);
}

absl::StatusOr<CommHandle> MpiCommunicator::BarrierAsync() {
  HR_RETURN_IF_ERROR(watchdog_->expired());
  MPI_Request request;
  HR_MPI_CHECK(MPI_Ibarrier(comm_, &request));
  return Track(request, "Barrier", "MPI_Ibarrier", nullptr);
}

}  // namespace headroom
