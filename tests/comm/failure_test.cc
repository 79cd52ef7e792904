// A failure on one rank ends the whole job quickly with that rank's message: runs
// `mpirun -np 3 comm_failure_helper 1` (failure_helper.cc) and checks the exit status, the
// elapsed time (< 30 s, the acceptance limit; in practice about a second) and that the output
// carries "rank 1: <message>".
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "tests/run_command.h"

namespace {

using ::headroom::testing::CommandResult;
using ::headroom::testing::RunCommand;

TEST(FailureTest, OneFailingRankEndsTheWholeJobWithItsMessage) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  // `timeout` is a guard so that a regression fails this test instead of hanging ctest.
  CommandResult r =
      RunCommand(std::string("timeout -s KILL 60 ") + HEADROOM_MPIEXEC +
                 " --allow-run-as-root --oversubscribe -np 3 " + HEADROOM_FAILURE_HELPER + " 1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 137) << "killed by the 60 s guard: a rank hung\n" << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
  EXPECT_NE(r.output.find("rank 1: data/train-00001.tfrecord: record 3: payload checksum"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("passed the barrier"), std::string::npos) << r.output;
}

TEST(FailureTest, AFailingRankZeroIsReportedToo) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  CommandResult r =
      RunCommand(std::string("timeout -s KILL 60 ") + HEADROOM_MPIEXEC +
                 " --allow-run-as-root --oversubscribe -np 2 " + HEADROOM_FAILURE_HELPER + " 0");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
  EXPECT_NE(r.output.find("rank 0: data/train-00001.tfrecord"), std::string::npos) << r.output;
}

}  // namespace
