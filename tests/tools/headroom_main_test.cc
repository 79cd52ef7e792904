// The `headroom` binary's own behaviour around its commands: a host allocation that fails
// (std::bad_alloc, here under an address-space limit of 2 GB) ends the command with one line
// naming it and exit status 1, not std::terminate's abort (status 134, no message).
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;

TEST(HeadroomMainTest, AFailedHostAllocationIsOneLineNotAnAbort) {
  const std::string dir = testing::MakeTempDir("headroom_main");
  const std::string err = dir + "/stderr.txt";
  // rank-demo --n=100000 asks for n x n doubles (80 GB) for its target matrix.
  const std::string cmd = "ulimit -v 2000000; exec " + std::string(HEADROOM_BINARY) +
                          " rank-demo --n=100000 --head_sizes=1 >/dev/null 2>" + err;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);
  absl::StatusOr<std::string> text = ReadFile(err);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("headroom rank-demo: out of host memory: an allocation failed"));
  EXPECT_EQ(text->find('\n'), text->size() - 1) << *text;
}

}  // namespace
}  // namespace headroom
