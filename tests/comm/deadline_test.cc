// A stopped rank ends the job within the collective deadline, with a line naming it: runs
// `mpirun -np R comm_deadline_helper 1 2 DIR` (deadline_helper.cc: rank 1 SIGSTOPs itself
// before an all-reduce) for R = 2 and 3, and checks that the job exits non-zero long before the
// 60 s guard, that a waiting rank waited the 2 s deadline (plus the census grace and slack, not
// more) without spinning a core, that the message names collective, deadline and the rank that
// did not arrive (and, with 3 ranks, the one that did), and that no process is left behind:
// any rank still alive after mpirun returns is reported and killed.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/run_command.h"

namespace {

using ::headroom::testing::CommandResult;
using ::headroom::testing::RunCommand;

namespace fs = std::filesystem;

// True while `pid` is a live comm_deadline_helper (not a recycled pid, not a zombie).
bool HelperAlive(int pid) {
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string text((std::istreambuf_iterator<char>(cmdline)), {});
  if (text.find("comm_deadline_helper") == std::string::npos) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

// The pids the ranks wrote into `dir` that still run after a few seconds; those are killed
// (SIGCONT first does not matter for SIGKILL, but wakes a stopped rank for a cleaner exit).
std::vector<int> KillLeftovers(const std::string& dir) {
  std::vector<int> pids, left;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path());
    int pid = 0;
    if (in >> pid && pid > 0) pids.push_back(pid);
  }
  for (int wait = 0; wait < 50; ++wait) {
    left.clear();
    for (int pid : pids) {
      if (HelperAlive(pid)) left.push_back(pid);
    }
    if (left.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (int pid : left) {
    ::kill(pid, SIGCONT);
    ::kill(pid, SIGKILL);
  }
  return left;
}

// The "waited W s using C s of CPU" values of the ranks that printed them.
std::vector<std::pair<double, double>> WaitLines(const std::string& output) {
  std::vector<std::pair<double, double>> waits;
  for (size_t at = output.find(" waited "); at != std::string::npos;
       at = output.find(" waited ", at + 1)) {
    double wall = 0, cpu = 0;
    if (std::sscanf(output.c_str() + at, " waited %lf s using %lf s of CPU", &wall, &cpu) == 2) {
      waits.emplace_back(wall, cpu);
    }
  }
  return waits;
}

void RunStoppedRankJob(int ranks) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  char pattern[] = "/tmp/comm_deadline_test_XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr) << std::strerror(errno);
  const std::string dir = pattern;
  // `timeout` is a guard so that a regression fails this test instead of hanging ctest.
  CommandResult r = RunCommand(std::string("timeout -s KILL 60 ") + HEADROOM_MPIEXEC +
                               " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) +
                               " " + HEADROOM_DEADLINE_HELPER + " 1 2 " + dir);
  const std::vector<int> left = KillLeftovers(dir);
  fs::remove_all(dir);
  EXPECT_TRUE(left.empty()) << left.size() << " rank(s) still ran after the job ended\n"
                            << r.output;

  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 137) << "killed by the 60 s guard: a rank hung\n" << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
  EXPECT_EQ(r.output.find("must not happen"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("AllReduce (collective #4) did not finish within 2s: rank 1 did not "
                          "arrive (no answer: it is stopped, lost, or busy outside collectives)"),
            std::string::npos)
      << r.output;
  if (ranks == 3) {
    // Whichever of ranks 0 and 2 reported first, it names the other as arrived.
    EXPECT_TRUE(r.output.find("; rank 2 arrived") != std::string::npos ||
                r.output.find("; rank 0 arrived") != std::string::npos)
        << r.output;
  }
  const std::vector<std::pair<double, double>> waits = WaitLines(r.output);
  ASSERT_FALSE(waits.empty()) << r.output;
  for (const auto& [wall, cpu] : waits) {
    EXPECT_GE(wall, 2.0) << r.output;
    EXPECT_LT(wall, 2.0 + 0.2 + 2.0) << r.output;  // deadline + census grace + slack
    EXPECT_LT(cpu, 0.25 * wall) << "a waiting rank spun\n" << r.output;
  }
}

TEST(DeadlineTest, AStoppedRankOfTwoEndsTheJobNamingIt) { RunStoppedRankJob(2); }

TEST(DeadlineTest, AStoppedRankOfThreeEndsTheJobNamingItAndTheOneThatArrived) {
  RunStoppedRankJob(3);
}

}  // namespace
