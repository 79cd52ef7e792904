// Deadlines for collectives: every blocking wait in comm/ polls through PollUntil, and a wait
// that outlives the communicator's timeout asks the other ranks where they are before it
// reports, so the job ends with a line naming the rank that did not arrive instead of hanging.
//
// Why. A collective finishes only when every rank has joined it. A rank that is stopped
// (SIGSTOP, a debugger), lost (a dead node) or stuck elsewhere leaves the others in MPI_Wait
// forever, and Open MPI's MPI_Wait busy-polls, so they also burn a core each.
//
// PollUntil polls a completion test back to back for PollSchedule::spin (a collective about to
// finish costs no sleep; most waits end there), then sleeps between polls, from min_sleep
// doubling to max_sleep: a long wait costs at most a few thousand wake-ups per second, and a
// finishing collective is noticed within max_sleep. Before each sleep it runs `idle`.
//
// CollectiveWatchdog numbers the collectives of a communicator as they start (the same numbers
// on every rank, since every rank issues the same collectives in the same order) and runs the
// waits. While a rank waits, its idle step answers the other ranks' census queries with the
// number of collectives it has started and the one it is waiting in. When a wait expires, the
// rank sends that query to every other rank on its own duplicate of the communicator and
// collects answers for a short grace period; DescribeArrivals turns them into "rank 1 did not
// arrive (no answer: ...); rank 2 arrived". From then on the watchdog is expired: MPI cannot
// cancel a collective, so the job must end (Communicator::Abort), and every later call of the
// communicator fails at once with the same status instead of touching MPI again.
//
// Example (what MpiCommunicator's requests do):
//   const int64_t seq = watchdog->Start();
//   MPI_Iallreduce(..., &request);
//   absl::Status s = watchdog->Wait("AllReduce", seq, [&]() -> absl::StatusOr<bool> {
//     int done = 0;
//     MPI_Test(&request, &done, MPI_STATUS_IGNORE);
//     return done != 0;
//   });
//   // s: "AllReduce (collective #5) did not finish within 2s: rank 1 did not arrive (...)"
#ifndef HEADROOM_COMM_WATCHDOG_H_
#define HEADROOM_COMM_WATCHDOG_H_

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace headroom {

// The default deadline of a collective (train.comm_timeout_s's default).
inline constexpr absl::Duration kDefaultCommTimeout = absl::Minutes(10);

// How PollUntil paces its polls (see the file comment).
// The defaults: a multi-round collective (a ring all-reduce of a large bucket) needs a poll from
// this rank to start each round, so the longest sleep bounds the delay per round; 200 us keeps
// that small against a round's transfer while a wait for a stopped rank costs a few percent of
// a core (MPI_Wait: all of it).
struct PollSchedule {
  absl::Duration spin = absl::Milliseconds(1);
  absl::Duration min_sleep = absl::Microseconds(10);
  absl::Duration max_sleep = absl::Microseconds(200);
};

// The sleep after the `sleeps`-th (0-based) poll that follows the spin phase:
// min(min_sleep * 2^sleeps, max_sleep).
absl::Duration PollSleep(const PollSchedule& schedule, int sleeps);

// Calls `poll` until it returns true (then true) or an error (then that error), or until
// `timeout` has passed since the call (then false; `poll` runs at least once, and
// absl::InfiniteDuration() never expires). `idle` runs before every sleep.
[[nodiscard]] absl::StatusOr<bool> PollUntil(absl::FunctionRef<absl::StatusOr<bool>()> poll,
                                             absl::Duration timeout, absl::FunctionRef<void()> idle,
                                             const PollSchedule& schedule = {});

// What one rank answered to a census (or that it did not).
struct PeerReport {
  bool answered = false;
  int64_t started = 0;      // collectives it had started
  int64_t waiting_for = 0;  // the collective it was waiting in
};

// The census of collective `seq` as one clause list, for the timeout message of rank `self`
// (whose own entry is skipped): "rank 1 did not arrive (no answer: it is stopped, lost, or busy
// outside collectives); rank 3 is alive but has not reached it (it waits in collective #4);
// ranks 0, 2 arrived". When every other rank arrived: "every rank arrived, yet it did not
// complete (a network or MPI failure)".
std::string DescribeArrivals(int self, int64_t seq, const std::vector<PeerReport>& peers);

class CollectiveWatchdog {
 public:
  // Collective over the ranks of `comm`: duplicates it for census messages. `timeout` is the
  // deadline of every wait (> 0; absl::InfiniteDuration() for none).
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<CollectiveWatchdog>> Create(
      MPI_Comm comm, absl::Duration timeout);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  absl::Duration timeout() const { return timeout_; }

  // Numbers a collective as it starts: 1, 2, ... in issue order.
  int64_t Start() { return ++started_; }

  // Waits for collective `seq` (named `what`, e.g. "AllReduce") through PollUntil with the
  // timeout, answering census queries while it waits. Returns OK when `poll` says done, poll's
  // error, or, when the deadline passes, DeadlineExceeded "<what> (collective #<seq>) did not
  // finish within <timeout>: <DescribeArrivals>. ..." after a census; the watchdog is then
  // expired. When already expired, returns that status at once without polling.
  [[nodiscard]] absl::Status Wait(const char* what, int64_t seq,
                                  absl::FunctionRef<absl::StatusOr<bool>()> poll);

  // OK until a wait has expired; then that wait's status (every later call must fail with it).
  const absl::Status& expired() const { return expired_; }

  // Answers the census queries that have arrived (non-blocking); `waiting_for` is the
  // collective this rank waits in.
  void AnswerQueries(int64_t waiting_for);

 private:
  CollectiveWatchdog() = default;
  // Asks every other rank where it is, for up to `grace`.
  std::vector<PeerReport> Census(int64_t seq, absl::Duration grace);

  MPI_Comm side_ = MPI_COMM_NULL;  // census messages only
  int rank_ = 0, size_ = 1;
  absl::Duration timeout_ = kDefaultCommTimeout;
  int64_t started_ = 0;
  absl::Status expired_;
  // Census buffers. They live as long as the watchdog because a census abandons its requests
  // (the job is about to end) and MPI may still write into them.
  int64_t query_ = 0;
  std::vector<int64_t> replies_;  // [size][2]: started, waiting_for
};

}  // namespace headroom

#endif  // HEADROOM_COMM_WATCHDOG_H_
