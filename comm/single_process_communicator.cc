// SingleProcessCommunicator: with one rank, sum and average of one contribution are the
// contribution itself, so every collective is a memmove (buffers may be the same).
#include "comm/single_process_communicator.h"

#include <cstring>

#include "base/status_macros.h"

namespace headroom {
namespace {

class CompletedRequest : public CommRequest {
 public:
  explicit CompletedRequest(absl::Status status) : status_(std::move(status)) {}
  absl::Status Wait() override { return status_; }
  absl::StatusOr<bool> Test() override {
    if (!status_.ok()) return status_;
    return true;
  }

 private:
  absl::Status status_;
};

void Copy(const void* send, void* recv, size_t count, DataType type) {
  if (count > 0 && send != recv) std::memmove(recv, send, count * DataTypeSize(type));
}

}  // namespace

CommHandle MakeCompletedRequest(absl::Status status) {
  return std::make_unique<CompletedRequest>(std::move(status));
}

absl::StatusOr<CommHandle> SingleProcessCommunicator::AllReduceAsync(const void* send, void* recv,
                                                                     size_t count, DataType type,
                                                                     ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("AllReduce", type, op));
  Copy(send, recv, count, type);
  return MakeCompletedRequest();
}

absl::StatusOr<CommHandle> SingleProcessCommunicator::BroadcastAsync(void*, size_t, DataType,
                                                                     int root) {
  HR_RETURN_IF_ERROR(ValidateRoot("Broadcast", root, 1));
  return MakeCompletedRequest();
}

absl::StatusOr<CommHandle> SingleProcessCommunicator::AllGatherAsync(const void* send, void* recv,
                                                                     size_t count, DataType type) {
  Copy(send, recv, count, type);
  return MakeCompletedRequest();
}

absl::StatusOr<CommHandle> SingleProcessCommunicator::ReduceScatterAsync(const void* send,
                                                                         void* recv, size_t count,
                                                                         DataType type,
                                                                         ReduceOp op) {
  HR_RETURN_IF_ERROR(ValidateReduce("ReduceScatter", type, op));
  Copy(send, recv, count, type);
  return MakeCompletedRequest();
}

absl::StatusOr<CommHandle> SingleProcessCommunicator::BarrierAsync() {
  return MakeCompletedRequest();
}

}  // namespace headroom
