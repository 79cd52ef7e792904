// A job in which one rank stops, for deadline_test.cc: run as
//   mpirun -np R comm_deadline_helper STOPPING_RANK TIMEOUT_SECONDS PID_DIR
// Every rank writes its pid to PID_DIR/rank-R.pid (so the test can clean up), joins an MPI
// communicator whose collectives have a deadline of TIMEOUT_SECONDS, and runs a few
// all-reduces. Then STOPPING_RANK stops itself with SIGSTOP (as `kill -STOP` of an operator or
// a hung node would), and the other ranks enter an all-reduce it will never join. Without a
// deadline they would wait forever; with it, each prints how long it waited and how much CPU
// that cost, then ends the job with the communicator's message (Communicator::Abort).
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "comm/create_communicator.h"

namespace {

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace headroom;
  if (argc != 4) {
    std::fprintf(stderr, "usage: comm_deadline_helper STOPPING_RANK TIMEOUT_SECONDS PID_DIR\n");
    return 2;
  }
  const int stopping_rank = std::atoi(argv[1]);
  CommunicatorOptions options;
  options.backend = CommBackend::kMpi;
  options.timeout = absl::Seconds(std::atof(argv[2]));
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateCommunicator(options);
  if (!comm.ok()) AbortJob(comm.status());
  const int rank = (*comm)->rank();
  const std::string pid_file = std::string(argv[3]) + "/rank-" + std::to_string(rank) + ".pid";
  if (FILE* f = std::fopen(pid_file.c_str(), "w")) {
    std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
    std::fclose(f);
  }
  std::vector<float> v(1000, 1.0f);
  for (int i = 0; i < 3; ++i) {
    AbortIfError(
        (*comm)->AllReduce(v.data(), v.data(), v.size(), DataType::kFloat32, ReduceOp::kAverage));
  }
  if (rank == stopping_rank) {
    std::fflush(stdout);
    std::raise(SIGSTOP);
    std::fprintf(stderr, "rank %d: continued after SIGSTOP\n", rank);
  }
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  absl::Status s =
      (*comm)->AllReduce(v.data(), v.data(), v.size(), DataType::kFloat32, ReduceOp::kAverage);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = ProcessCpuSeconds() - cpu_start;
  if (s.ok()) {
    std::printf("rank %d: the all-reduce finished, which must not happen\n", rank);
    return 0;
  }
  std::fprintf(stderr, "rank %d: waited %.3f s using %.3f s of CPU\n", rank, wall, cpu);
  (*comm)->Abort(s);
}
