// main() for GoogleTest binaries that ctest runs under mpirun (tests/comm/CMakeLists.txt).
//
// Every rank runs every test in the same order (the tests issue collectives, which must match
// across ranks). Only rank 0 prints gtest's usual output; the other ranks print just their
// failed assertions, prefixed "rank R:". At the end the ranks reduce a failed flag, so a
// failure on any rank fails the process on every rank and therefore mpirun and the ctest test.
#include <mpi.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "comm/mpi_runtime.h"
#include "gtest/gtest.h"

namespace {

// Prints failed assertions of a non-zero rank, which has no default printer.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::string line =
        absl::StrCat("rank ", rank_, ": ", result.file_name() ? result.file_name() : "?", ":",
                     result.line_number(), ": ", result.summary(), "\n");
    std::fputs(line.c_str(), stderr);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "rank %d: FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::Status status = headroom::EnsureMpiInitialized();
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    return 1;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  const int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_ranks = 0;
  MPI_Allreduce(&failed, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    if (failed_ranks > 0) {
      std::fprintf(stderr, "%d of %d ranks had failures (their 'rank R:' lines are above)\n",
                   failed_ranks, size);
    } else {
      std::printf("all %d ranks passed\n", size);
    }
  }
  return failed_ranks > 0 ? 1 : 0;
}
