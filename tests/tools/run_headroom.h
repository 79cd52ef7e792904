// Running the `headroom` binary from a test: its exit code, stdout and stderr (captured through
// files in a directory the test owns). HEADROOM_BINARY is the binary's path (the test's CMake
// target defines it).
#ifndef HEADROOM_TESTS_TOOLS_RUN_HEADROOM_H_
#define HEADROOM_TESTS_TOOLS_RUN_HEADROOM_H_

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "base/file.h"

namespace headroom::testing {

struct HeadroomOutput {
  int exit_code = -1;  // -1 when the process did not exit normally
  std::string out, err;
};

// Runs `HEADROOM_BINARY ARGS` (a shell command line) with stdout and stderr in DIR/stdout.txt and
// DIR/stderr.txt.
inline HeadroomOutput RunHeadroom(const std::string& dir, const std::string& args) {
  const std::string out = dir + "/stdout.txt", err = dir + "/stderr.txt";
  const std::string cmd = std::string(HEADROOM_BINARY) + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  auto o = ReadFile(out);
  auto e = ReadFile(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, o.ok() ? *o : "", e.ok() ? *e : ""};
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_TOOLS_RUN_HEADROOM_H_
