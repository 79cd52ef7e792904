// SingleProcessCommunicator: the Communicator of a job with one rank (no MPI, no launcher).
//
// Every collective is a copy (or nothing) and is finished when its async form returns, so the
// trainer runs the same code with and without ranks. Buffers are host memory.
#ifndef HEADROOM_COMM_SINGLE_PROCESS_COMMUNICATOR_H_
#define HEADROOM_COMM_SINGLE_PROCESS_COMMUNICATOR_H_

#include "comm/communicator.h"

namespace headroom {

class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  const char* backend_name() const override { return "single"; }
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
};

// A request that is already finished with `status` (for collectives that complete at once).
CommHandle MakeCompletedRequest(absl::Status status = absl::OkStatus());

}  // namespace headroom

#endif  // HEADROOM_COMM_SINGLE_PROCESS_COMMUNICATOR_H_
