// PollUntil, DescribeArrivals and CollectiveWatchdog (see the header). The census protocol on
// the watchdog's own communicator: a query (tag kQueryTag) carries the asking rank's collective
// number; the answer (tag kReplyTag) carries the answering rank's {started, waiting_for}.
#include "comm/watchdog.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "comm/mpi_check.h"

namespace headroom {
namespace {

constexpr int kQueryTag = 1;
constexpr int kReplyTag = 2;

using Clock = std::chrono::steady_clock;

// How long a census waits for answers: long enough for ranks that are themselves waiting (they
// answer within PollSchedule::max_sleep), short against the timeout.
absl::Duration CensusGrace(absl::Duration timeout) {
  return std::clamp(timeout / 10, absl::Milliseconds(200), absl::Seconds(5));
}

// "rank 1" or "ranks 1, 3".
std::string Ranks(const std::vector<int>& ranks) {
  return absl::StrCat(ranks.size() == 1 ? "rank " : "ranks ", absl::StrJoin(ranks, ", "));
}

}  // namespace

absl::Duration PollSleep(const PollSchedule& schedule, int sleeps) {
  absl::Duration d = schedule.min_sleep;
  for (int i = 0; i < sleeps && d < schedule.max_sleep; ++i) d *= 2;
  return std::min(d, schedule.max_sleep);
}

absl::StatusOr<bool> PollUntil(absl::FunctionRef<absl::StatusOr<bool>()> poll,
                               absl::Duration timeout, absl::FunctionRef<void()> idle,
                               const PollSchedule& schedule) {
  const Clock::time_point start = Clock::now();
  const bool forever = timeout == absl::InfiniteDuration();
  const auto limit = forever ? Clock::duration::zero() : absl::ToChronoNanoseconds(timeout);
  const auto spin = absl::ToChronoNanoseconds(schedule.spin);
  int sleeps = 0;
  for (;;) {
    absl::StatusOr<bool> done = poll();
    if (!done.ok() || *done) return done;
    const auto elapsed = Clock::now() - start;
    if (!forever && elapsed >= limit) return false;
    if (elapsed < spin) continue;
    idle();
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(PollSleep(schedule, sleeps++)));
  }
}

std::string DescribeArrivals(int self, int64_t seq, const std::vector<PeerReport>& peers) {
  std::vector<int> silent, arrived;
  std::vector<std::string> behind;
  for (int r = 0; r < static_cast<int>(peers.size()); ++r) {
    if (r == self) continue;
    const PeerReport& p = peers[static_cast<size_t>(r)];
    if (!p.answered) {
      silent.push_back(r);
    } else if (p.started >= seq) {
      arrived.push_back(r);
    } else {
      behind.push_back(absl::StrCat("rank ", r, " is alive but has not reached it (it waits in ",
                                    "collective #", p.waiting_for, ")"));
    }
  }
  if (silent.empty() && behind.empty()) {
    return "every rank arrived, yet it did not complete (a network or MPI failure)";
  }
  std::vector<std::string> clauses;
  if (!silent.empty()) {
    clauses.push_back(absl::StrCat(
        Ranks(silent), " did not arrive (no answer: ", silent.size() == 1 ? "it is" : "they are",
        " stopped, lost, or busy outside collectives)"));
  }
  for (std::string& b : behind) clauses.push_back(std::move(b));
  if (!arrived.empty()) clauses.push_back(absl::StrCat(Ranks(arrived), " arrived"));
  return absl::StrJoin(clauses, "; ");
}

absl::StatusOr<std::shared_ptr<CollectiveWatchdog>> CollectiveWatchdog::Create(
    MPI_Comm comm, absl::Duration timeout) {
  if (!(timeout > absl::ZeroDuration())) {
    return absl::InvalidArgumentError(
        absl::StrCat("communicator timeout must be > 0, got ", absl::FormatDuration(timeout)));
  }
  std::shared_ptr<CollectiveWatchdog> w(new CollectiveWatchdog());
  w->timeout_ = timeout;
  HR_MPI_CHECK(MPI_Comm_dup(comm, &w->side_));
  HR_MPI_CHECK(MPI_Comm_set_errhandler(w->side_, MPI_ERRORS_RETURN));
  HR_MPI_CHECK(MPI_Comm_rank(w->side_, &w->rank_));
  HR_MPI_CHECK(MPI_Comm_size(w->side_, &w->size_));
  w->replies_.assign(2 * static_cast<size_t>(w->size_), 0);
  return w;
}

CollectiveWatchdog::~CollectiveWatchdog() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && side_ != MPI_COMM_NULL) MPI_Comm_free(&side_);
}

absl::Status CollectiveWatchdog::Wait(const char* what, int64_t seq,
                                      absl::FunctionRef<absl::StatusOr<bool>()> poll) {
  if (!expired_.ok()) return expired_;
  absl::StatusOr<bool> done = PollUntil(poll, timeout_, [&] { AnswerQueries(seq); });
  if (!done.ok()) return done.status();
  if (*done) return absl::OkStatus();
  const std::vector<PeerReport> peers = Census(seq, CensusGrace(timeout_));
  expired_ = absl::DeadlineExceededError(
      absl::StrCat(what, " (collective #", seq, ") did not finish within ",
                   absl::FormatDuration(timeout_), ": ", DescribeArrivals(rank_, seq, peers),
                   ". A rank is stopped, lost or slower than the communicator's timeout "
                   "(train.comm_timeout_s); the job must end"));
  return expired_;
}

void CollectiveWatchdog::AnswerQueries(int64_t waiting_for) {
  for (;;) {
    int pending = 0;
    MPI_Status probe;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, side_, &pending, &probe) != MPI_SUCCESS || !pending) {
      return;
    }
    int64_t asked = 0;
    if (MPI_Recv(&asked, 1, MPI_INT64_T, probe.MPI_SOURCE, kQueryTag, side_, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS) {
      return;
    }
    // 16 bytes go out eagerly, and the asking rank has posted its receive: this does not block.
    int64_t answer[2] = {started_, waiting_for};
    if (MPI_Send(answer, 2, MPI_INT64_T, probe.MPI_SOURCE, kReplyTag, side_) != MPI_SUCCESS) return;
  }
}

std::vector<PeerReport> CollectiveWatchdog::Census(int64_t seq, absl::Duration grace) {
  std::vector<PeerReport> peers(static_cast<size_t>(size_));
  peers[static_cast<size_t>(rank_)] = {true, started_, seq};
  std::vector<MPI_Request> replies(static_cast<size_t>(size_), MPI_REQUEST_NULL);
  std::vector<MPI_Request> queries(static_cast<size_t>(size_), MPI_REQUEST_NULL);
  query_ = seq;
  int pending = 0;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    const size_t i = static_cast<size_t>(r);
    if (MPI_Irecv(&replies_[2 * i], 2, MPI_INT64_T, r, kReplyTag, side_, &replies[i]) !=
            MPI_SUCCESS ||
        MPI_Isend(&query_, 1, MPI_INT64_T, r, kQueryTag, side_, &queries[i]) != MPI_SUCCESS) {
      continue;  // that rank is reported as not answering
    }
    ++pending;
  }
  const Clock::time_point end = Clock::now() + absl::ToChronoNanoseconds(grace);
  while (pending > 0 && Clock::now() < end) {
    for (int r = 0; r < size_; ++r) {
      const size_t i = static_cast<size_t>(r);
      if (replies[i] == MPI_REQUEST_NULL) continue;
      int got = 0;
      if (MPI_Test(&replies[i], &got, MPI_STATUS_IGNORE) == MPI_SUCCESS && got) {
        peers[i] = {true, replies_[2 * i], replies_[2 * i + 1]};
        --pending;
      }
    }
    AnswerQueries(seq);  // the others run their census at the same time
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Unanswered queries are abandoned: the job is about to end. (Point-to-point requests may be
  // cancelled and freed; the buffers are members, so a late message lands in valid memory.)
  for (MPI_Request& r : replies) {
    if (r != MPI_REQUEST_NULL) {
      MPI_Cancel(&r);
      MPI_Request_free(&r);
    }
  }
  for (MPI_Request& q : queries) {
    if (q != MPI_REQUEST_NULL) MPI_Request_free(&q);
  }
  return peers;
}

}  // namespace headroom
