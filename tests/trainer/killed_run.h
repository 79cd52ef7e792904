// A training run that dies by SIGKILL right after a given step, as a crash or a pre-empted job
// would: for the tests that resume such a run and compare it with an uninterrupted one.
#ifndef HEADROOM_TESTS_TRAINER_KILLED_RUN_H_
#define HEADROOM_TESTS_TRAINER_KILLED_RUN_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

#include "trainer/trainer.h"

namespace headroom::testing {

// Trains `options` in a forked child that SIGKILLs itself as step `kill_after` ends (before it
// can save anything more), and expects the child to die that way. fork needs a parent without
// threads: call it from a test that runs first in its binary.
inline void TrainKilledAfterStep(TrainOptions options, int64_t kill_after) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    options.on_step = [kill_after](int64_t step, double) {
      if (step == kill_after) ::kill(::getpid(), SIGKILL);
    };
    (void)Train(options);
    ::_exit(3);  // not reached
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_TRAINER_KILLED_RUN_H_
