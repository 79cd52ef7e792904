// MpiCommunicator: one MPI_Request per collective, completed by Wait() or polled by Test().
// The average's division happens in the request's completion step, exactly once, on the rank
// that owns the output buffer.
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
  MpiRequest(MPI_Request request, const char* what, std::function<void()> on_done)
      : request_(request), what_(what), on_done_(std::move(on_done)) {}

  ~MpiRequest() override {
    // Abandoning an active MPI request would let MPI write into freed buffers later.
    if (!done_) (void)Wait();
  }

  absl::Status Wait() override {
    if (!done_) Finish(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    return status_;
  }

  absl::StatusOr<bool> Test() override {
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
      status_ = MpiErrorStatus(code, what_, __FILE__, __LINE__);
    } else if (on_done_) {
      on_done_();
    }
  }

  MPI_Request request_;
  const char* what_;
  std::function<void()> on_done_;
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

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create() {
  HR_RETURN_IF_ERROR(EnsureMpiInitialized());
  HR_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  return Create(MPI_COMM_WORLD);
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(MPI_Comm parent) {
  HR_RETURN_IF_ERROR(EnsureMpiInitialized());
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator());
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
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (local_comm_ != MPI_COMM_NULL) MPI_Comm_free(&local_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

absl::StatusOr<CommHandle> MpiCommunicator::AllReduceAsync(const void* send, void* recv,
                                                           size_t count, DataType type,
                                                           ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("AllReduce", type, op));
  HR_RETURN_IF_ERROR(ValidateCount("AllReduce", count));
  const size_t bytes = count * DataTypeSize(type);
  if (send != recv && Overlap(send, bytes, recv, bytes)) {
    return absl::InvalidArgumentError("AllReduce: send and recv overlap without being equal");
  }
  MPI_Request request;
  HR_MPI_CHECK(MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count),
                              ToMpiDatatype(type), MPI_SUM, comm_, &request));
  return CommHandle(std::make_unique<MpiRequest>(
      request, "MPI_Iallreduce",
      op == ReduceOp::kAverage ? Divider(recv, count, type, size_) : nullptr));
}

absl::StatusOr<CommHandle> MpiCommunicator::BroadcastAsync(void* buffer, size_t count,
                                                           DataType type, int root) {
  HR_RETURN_IF_ERROR(ValidateRoot("Broadcast", root, size_));
  HR_RETURN_IF_ERROR(ValidateCount("Broadcast", count));
  MPI_Request request;
  HR_MPI_CHECK(
      MPI_Ibcast(buffer, static_cast<int>(count), ToMpiDatatype(type), root, comm_, &request));
  return CommHandle(std::make_unique<MpiRequest>(request, "MPI_Ibcast", nullptr));
}

absl::StatusOr<CommHandle> MpiCommunicator::AllGatherAsync(const void* send, void* recv,
                                                           size_t count, DataType type) {
  HR_RETURN_IF_ERROR(ValidateCount("AllGather", count, size_));
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
  return CommHandle(std::make_unique<MpiRequest>(request, "MPI_Iallgather", nullptr));
}

absl::StatusOr<CommHandle> MpiCommunicator::ReduceScatterAsync(const void* send, void* recv,
                                                               size_t count, DataType type,
                                                               ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("ReduceScatter", type, op));
  HR_RETURN_IF_ERROR(ValidateCount("ReduceScatter", count, size_));
  const size_t bytes = count * DataTypeSize(type);
  if (Overlap(send, bytes * size_, recv, bytes)) {
    return absl::InvalidArgumentError("ReduceScatter: send and recv overlap");
  }
  MPI_Request request;
  HR_MPI_CHECK(MPI_Ireduce_scatter_block(send, recv, static_cast<int>(count), ToMpiDatatype(type),
                                         MPI_SUM, comm_, &request));
  return CommHandle(std::make_unique<MpiRequest>(
      request, "MPI_Ireduce_scatter_block",
      op == ReduceOp::kAverage ? Divider(recv, count, type, size_) : nullptr));
}

absl::StatusOr<CommHandle> MpiCommunicator::BarrierAsync() {
  MPI_Request request;
  HR_MPI_CHECK(MPI_Ibarrier(comm_, &request));
  return CommHandle(std::make_unique<MpiRequest>(request, "MPI_Ibarrier", nullptr));
}

}  // namespace headroom
