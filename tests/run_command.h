// Runs a whole process for the tests that check one from outside (an `mpirun` job, the
// `headroom` binary): its exit status, wall time and output, stdout and stderr together.
//
//   const auto r = headroom::testing::RunCommand("timeout -s KILL 60 mpirun -np 2 ...");
//   EXPECT_NE(r.exit_code, 0) << r.output;
#ifndef HEADROOM_TESTS_RUN_COMMAND_H_
#define HEADROOM_TESTS_RUN_COMMAND_H_

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace headroom::testing {

struct CommandResult {
  int exit_code = -1;  // the exit status; 128 + N for a process killed by signal N
  double seconds = 0;  // wall time from start to exit
  std::string output;  // stdout, then-or-interleaved stderr (`2>&1`)
};

// Runs `command` with /bin/sh (so it may hold pipes, redirections and `timeout` guards) and
// waits for it. exit_code stays -1 where the shell could not be started.
inline CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_RUN_COMMAND_H_
