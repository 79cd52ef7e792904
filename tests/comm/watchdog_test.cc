// The watchdog's logic without MPI (comm/watchdog.h): the poll schedule against hand-computed
// sleeps; PollUntil finishing, failing and expiring on time; a long wait that does not spin a
// core (its CPU time measured against its wall time); and the census clauses of the timeout
// message. The census itself over MPI, with a stopped rank, is comm_deadline_test.
#include "comm/watchdog.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"

namespace headroom {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

TEST(PollSleepTest, DoublesFromTheMinimumUpToTheMaximum) {
  PollSchedule s;
  s.min_sleep = absl::Microseconds(20);
  s.max_sleep = absl::Microseconds(500);
  EXPECT_EQ(PollSleep(s, 0), absl::Microseconds(20));
  EXPECT_EQ(PollSleep(s, 1), absl::Microseconds(40));
  EXPECT_EQ(PollSleep(s, 4), absl::Microseconds(320));
  EXPECT_EQ(PollSleep(s, 5), absl::Microseconds(500));  // 640 capped
  EXPECT_EQ(PollSleep(s, 1000), absl::Microseconds(500));
}

TEST(PollUntilTest, ReturnsWhenThePollSaysDoneAfterExactlyThatManyPolls) {
  int polls = 0, idles = 0;
  absl::StatusOr<bool> r = PollUntil([&]() -> absl::StatusOr<bool> { return ++polls == 5; },
                                     absl::Seconds(10), [&] { ++idles; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
  EXPECT_EQ(polls, 5);
}

TEST(PollUntilTest, ReturnsThePollsError) {
  int polls = 0;
  absl::StatusOr<bool> r = PollUntil(
      [&]() -> absl::StatusOr<bool> {
        if (++polls == 3) return absl::InternalError("MPI_Test failed");
        return false;
      },
      absl::Seconds(10), [] {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "MPI_Test failed");
  EXPECT_EQ(polls, 3);
}

TEST(PollUntilTest, AZeroTimeoutPollsOnce) {
  int polls = 0;
  absl::StatusOr<bool> r = PollUntil(
      [&]() -> absl::StatusOr<bool> {
        ++polls;
        return false;
      },
      absl::Nanoseconds(1), [] {});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(polls, 1);
}

// A peer that never arrives: the wait ends at the deadline (not before, not much after), runs
// the idle step while it sleeps, and uses a small fraction of a core meanwhile (MPI_Wait would
// use all of it).
TEST(PollUntilTest, ExpiresOnTimeWithoutSpinning) {
  int polls = 0, idles = 0;
  const Clock::time_point start = Clock::now();
  const double cpu_start = ThreadCpuSeconds();
  absl::StatusOr<bool> r = PollUntil(
      [&]() -> absl::StatusOr<bool> {
        ++polls;
        return false;
      },
      absl::Milliseconds(500), [&] { ++idles; });
  const double wall = Since(start), cpu = ThreadCpuSeconds() - cpu_start;
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_GE(wall, 0.5);
  EXPECT_LT(wall, 0.5 + 0.25);  // the last sleep is 0.2 ms; the rest is scheduling slack
  EXPECT_LT(cpu, 0.1 * wall) << polls << " polls, " << idles << " idle steps";
  // After the 1 ms spin, one poll per sleep of at least 0.2 ms: at most ~2500 in 0.5 s (fewer
  // when the system is loaded), far from the millions of a busy loop.
  EXPECT_GT(idles, 100);
  EXPECT_LT(idles, 2600);
  std::printf("waited %.3f s: %d polls, %d sleeps, %.4f s CPU (%.1f%% of a core)\n", wall, polls,
              idles, cpu, 100 * cpu / wall);
}

// A collective that finishes while the waiter sleeps is noticed within about max_sleep. The
// best of 5 trials is held to it: a loaded machine can delay any one wake-up by tens of
// milliseconds, while a waiter that sleeps too long is late in every trial.
TEST(PollUntilTest, NoticesCompletionWithinTheLongestSleep) {
  double best = 1e9;
  for (int trial = 0; trial < 5; ++trial) {
    const Clock::time_point start = Clock::now();
    double noticed_late = 0;
    absl::StatusOr<bool> r = PollUntil(
        [&]() -> absl::StatusOr<bool> {
          const double t = Since(start);
          if (t < 0.05) return false;
          noticed_late = t - 0.05;
          return true;
        },
        absl::Seconds(10), [] {});
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(*r);
    best = std::min(best, noticed_late);
  }
  EXPECT_LT(best, 0.0002 + 0.02);  // max_sleep plus scheduling slack
}

TEST(DescribeArrivalsTest, NamesTheSilentRanksAndThoseThatArrived) {
  // Rank 0 waits in collective #7; rank 1 never answered; ranks 2 and 3 started #7 or later.
  std::vector<PeerReport> peers(4);
  peers[0] = {true, 7, 7};
  peers[2] = {true, 7, 7};
  peers[3] = {true, 8, 7};
  EXPECT_EQ(DescribeArrivals(0, 7, peers),
            "rank 1 did not arrive (no answer: it is stopped, lost, or busy outside "
            "collectives); ranks 2, 3 arrived");
}

TEST(DescribeArrivalsTest, NamesARankThatIsAliveButBehind) {
  std::vector<PeerReport> peers(3);
  peers[0] = {true, 5, 5};
  peers[1] = {true, 4, 4};  // waits in #4: someone else is missing there
  EXPECT_EQ(DescribeArrivals(0, 5, peers),
            "rank 2 did not arrive (no answer: it is stopped, lost, or busy outside "
            "collectives); rank 1 is alive but has not reached it (it waits in collective #4)");
  peers[2] = {false, 0, 0};
  peers[1] = {false, 0, 0};
  EXPECT_EQ(DescribeArrivals(0, 5, peers),
            "ranks 1, 2 did not arrive (no answer: they are stopped, lost, or busy outside "
            "collectives)");
}

TEST(DescribeArrivalsTest, EveryRankArrivedMeansTheTransportFailed) {
  std::vector<PeerReport> peers(2);
  peers[0] = {true, 3, 3};
  peers[1] = {true, 3, 3};
  EXPECT_EQ(DescribeArrivals(1, 3, peers),
            "every rank arrived, yet it did not complete (a network or MPI failure)");
}

}  // namespace
}  // namespace headroom
