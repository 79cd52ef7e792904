// A job in which one rank fails, for failure_test.cc: run as
//   mpirun -np R comm_failure_helper FAILING_RANK
// Every rank joins a communicator and runs a few all-reduces; then FAILING_RANK meets an error
// (as a loader meeting a corrupt shard would) and ends the job with Communicator::Abort, while
// the other ranks block in a barrier the failing rank will never enter. Without the abort they
// would wait forever; with it, mpirun ends them all and exits non-zero.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/status/status.h"
#include "comm/create_communicator.h"

int main(int argc, char** argv) {
  using namespace headroom;
  const int failing_rank = argc > 1 ? std::atoi(argv[1]) : 1;
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateCommunicator({CommBackend::kMpi});
  if (!comm.ok()) AbortJob(comm.status());
  std::vector<float> v(1000, 1.0f);
  for (int i = 0; i < 3; ++i) {
    AbortIfError(
        (*comm)->AllReduce(v.data(), v.data(), v.size(), DataType::kFloat32, ReduceOp::kAverage));
  }
  if ((*comm)->rank() == failing_rank) {
    (*comm)->Abort(absl::DataLossError(
        "data/train-00001.tfrecord: record 3: payload checksum mismatch (corrupt shard); "
        "re-run prepare-bert or remove the file"));
  }
  AbortIfError((*comm)->Barrier());
  std::printf("rank %d: passed the barrier, which must not happen\n", (*comm)->rank());
  return 0;
}
