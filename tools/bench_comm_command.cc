// `headroom bench-comm`: collective bandwidth between the ranks of an MPI job, in the manner of
// nccl-tests. Run it under a launcher:
//   mpirun -np 4 build/headroom bench-comm --collectives=all_reduce --max_bytes=64M
//
// Each collective is a row in a table of functions (element count for a byte size, bus
// bandwidth factor, fill, run, check). For each size: warm-up iterations, then timed ones; time
// is averaged over iterations, then over ranks. Algorithm bandwidth is bytes / time, bus
// bandwidth is algbw x factor (all-reduce 2(n-1)/n, all-gather and reduce-scatter (n-1)/n,
// broadcast 1: the per-link traffic of the optimal algorithm, comparable across rank counts).
// The #wrong column is the number of wrong elements, summed over ranks, of one extra run of
// the same collective with closed-form inputs. Host buffers only (MPI, single); NCCL is
// measured with nccl-tests itself.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/clock.h"
#include "comm/create_communicator.h"
#include "tools/command.h"

ABSL_FLAG(std::string, min_bytes, "8", "smallest message size (bytes; K, M, G suffixes)");
ABSL_FLAG(std::string, max_bytes, "64M", "largest message size (bytes; K, M, G suffixes)");
ABSL_FLAG(int, comm_iters, 20, "timed iterations per size");
ABSL_FLAG(int, comm_warmup, 5, "untimed warm-up iterations per size");
ABSL_FLAG(std::string, collectives, "all_reduce",
          "comma-separated: all_reduce, all_gather, reduce_scatter, broadcast, or all");
ABSL_FLAG(std::string, comm_backend, "auto", "communicator backend: auto, single or mpi");

namespace headroom {
namespace {

absl::StatusOr<int64_t> ParseBytes(const std::string& text) {
  int64_t scale = 1;
  std::string digits = text;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        scale = int64_t{1} << 10;
        break;
      case 'M':
      case 'm':
        scale = int64_t{1} << 20;
        break;
      case 'G':
      case 'g':
        scale = int64_t{1} << 30;
        break;
      default:
        scale = 1;
    }
    if (scale != 1) digits.pop_back();
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(digits, &value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a byte size"));
  }
  return value * scale;
}

// The rank's contribution: small integers, exact in float, with closed-form sums.
float Value(int rank, size_t i) { return static_cast<float>((rank + 1) * (i % 17 + 1)); }
float Sum(int ranks, size_t i) {
  return static_cast<float>(ranks * (ranks + 1) / 2 * (i % 17 + 1));
}

// One collective: `bytes` is the size reported (nccl-tests' convention: the all-reduce and
// broadcast buffer; all-gather's output; reduce-scatter's input).
struct Collective {
  const char* name;
  double (*bus_factor)(int ranks);
  // Elements per rank for a reported size (0 if the size does not divide).
  size_t (*count)(int64_t bytes, int ranks);
  // Starts the collective on prepared buffers.
  std::function<absl::StatusOr<CommHandle>(Communicator&, std::vector<float>&, std::vector<float>&,
                                           size_t)>
      run;
  // Fills inputs, runs once, returns the number of wrong elements on this rank.
  std::function<absl::StatusOr<int64_t>(Communicator&, std::vector<float>&, std::vector<float>&,
                                        size_t)>
      check;
};

std::vector<Collective> Table() {
  std::vector<Collective> t;
  t.push_back({"all_reduce", [](int n) { return 2.0 * (n - 1) / n; },
               [](int64_t b, int) { return static_cast<size_t>(b / 4); },
               [](Communicator& c, std::vector<float>& s, std::vector<float>& r, size_t n) {
                 return c.AllReduceAsync(s.data(), r.data(), n, DataType::kFloat32, ReduceOp::kSum);
               },
               [](Communicator& c, std::vector<float>& s, std::vector<float>& r,
                  size_t n) -> absl::StatusOr<int64_t> {
                 for (size_t i = 0; i < n; ++i) s[i] = Value(c.rank(), i);
                 absl::Status st =
                     c.AllReduce(s.data(), r.data(), n, DataType::kFloat32, ReduceOp::kSum);
                 if (!st.ok()) return st;
                 int64_t wrong = 0;
                 for (size_t i = 0; i < n; ++i) wrong += r[i] != Sum(c.size(), i);
                 return wrong;
               }});
  t.push_back({"all_gather", [](int n) { return (n - 1.0) / n; },
               [](int64_t b, int n) { return static_cast<size_t>(b / 4 / n); },
               [](Communicator& c, std::vector<float>& s, std::vector<float>& r, size_t n) {
                 return c.AllGatherAsync(s.data(), r.data(), n, DataType::kFloat32);
               },
               [](Communicator& c, std::vector<float>& s, std::vector<float>& r,
                  size_t n) -> absl::StatusOr<int64_t> {
                 for (size_t i = 0; i < n; ++i) s[i] = Value(c.rank(), i);
                 absl::Status st = c.AllGather(s.data(), r.data(), n, DataType::kFloat32);
                 if (!st.ok()) return st;
                 int64_t wrong = 0;
                 for (int q = 0; q < c.size(); ++q) {
                   for (size_t i = 0; i < n; ++i) wrong += r[q * n + i] != Value(q, i);
                 }
                 return wrong;
               }});
  t.push_back({"reduce_scatter", [](int n) { return (n - 1.0) / n; },
               [](int64_t b, int n) { return static_cast<size_t>(b / 4 / n); },
               [](Communicator& c, std::vector<float>& s, std::vector<float>& r, size_t n) {
                 return c.ReduceScatterAsync(s.data(), r.data(), n, DataType::kFloat32,
                                             ReduceOp::kSum);
               },
               [](Communicator& c, std::vector<float>& s, std::vector<float>& r,
                  size_t n) -> absl::StatusOr<int64_t> {
                 for (size_t i = 0; i < n * c.size(); ++i) s[i] = Value(c.rank(), i);
                 absl::Status st =
                     c.ReduceScatter(s.data(), r.data(), n, DataType::kFloat32, ReduceOp::kSum);
                 if (!st.ok()) return st;
                 int64_t wrong = 0;
                 for (size_t i = 0; i < n; ++i) wrong += r[i] != Sum(c.size(), c.rank() * n + i);
                 return wrong;
               }});
  t.push_back({"broadcast", [](int) { return 1.0; },
               [](int64_t b, int) { return static_cast<size_t>(b / 4); },
               [](Communicator& c, std::vector<float>& s, std::vector<float>&, size_t n) {
                 return c.BroadcastAsync(s.data(), n, DataType::kFloat32, 0);
               },
               [](Communicator& c, std::vector<float>& s, std::vector<float>&,
                  size_t n) -> absl::StatusOr<int64_t> {
                 for (size_t i = 0; i < n; ++i) s[i] = Value(c.rank(), i);
                 absl::Status st = c.Broadcast(s.data(), n, DataType::kFloat32, 0);
                 if (!st.ok()) return st;
                 int64_t wrong = 0;
                 for (size_t i = 0; i < n; ++i) wrong += s[i] != Value(0, i);
                 return wrong;
               }});
  return t;
}

// Times `c` on messages of `bytes` (warm-up, then `iters` timed runs), checks the result and
// prints rank 0's row; returns the wrong elements over all ranks (every rank aborts the job on
// a failed collective).
int64_t MeasureOneSize(Collective& c, Communicator& comm, int64_t bytes, int warmup, int iters) {
  const int R = comm.size();
  const size_t n = c.count(bytes, R);
  if (n == 0) return 0;
  std::vector<float> send(n * R, 1.0f), recv(n * R, 0.0f);
  double seconds = 0;
  for (int it = 0; it < warmup + iters; ++it) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<CommHandle> h = c.run(comm, send, recv, n);
    absl::Status st = h.ok() ? (*h)->Wait() : h.status();
    if (!st.ok()) comm.Abort(st);
    if (it >= warmup) seconds += Seconds(t0, Clock::now());
  }
  double mean = seconds / iters, mean_over_ranks = 0;
  AbortIfError(comm.AllReduce(&mean, &mean_over_ranks, 1, DataType::kFloat64, ReduceOp::kAverage));
  absl::StatusOr<int64_t> wrong = c.check(comm, send, recv, n);
  if (!wrong.ok()) comm.Abort(wrong.status());
  int32_t mine = static_cast<int32_t>(*wrong), all = 0;
  AbortIfError(comm.AllReduce(&mine, &all, 1, DataType::kInt32, ReduceOp::kSum));
  const std::string name = c.name;
  const bool parts = name == "all_gather" || name == "reduce_scatter";
  const int64_t reported = static_cast<int64_t>(n) * 4 * (parts ? R : 1);
  const double algbw = reported / mean_over_ranks / 1e9;
  if (comm.rank() == 0) {
    std::printf("  %12ld %12zu %12.1f %12.3f %12.3f %8d\n", static_cast<long>(reported), n,
                mean_over_ranks * 1e6, algbw, algbw * c.bus_factor(R), all);
  }
  return all;
}

}  // namespace

int RunBenchComm(const CommandArgs&) {
  const char* kCmd = "bench-comm";
  absl::StatusOr<int64_t> min_bytes = ParseBytes(absl::GetFlag(FLAGS_min_bytes));
  absl::StatusOr<int64_t> max_bytes = ParseBytes(absl::GetFlag(FLAGS_max_bytes));
  if (!min_bytes.ok())
    return Fail(kCmd, absl::StrCat("--min_bytes: ", min_bytes.status().message()));
  if (!max_bytes.ok())
    return Fail(kCmd, absl::StrCat("--max_bytes: ", max_bytes.status().message()));
  const int iters = absl::GetFlag(FLAGS_comm_iters), warmup = absl::GetFlag(FLAGS_comm_warmup);
  if (iters < 1 || warmup < 0) return Fail(kCmd, "--comm_iters must be >= 1, --comm_warmup >= 0");
  absl::StatusOr<CommBackend> backend = ParseCommBackend(absl::GetFlag(FLAGS_comm_backend));
  if (!backend.ok()) return Fail(kCmd, std::string(backend.status().message()));
  std::vector<Collective> chosen;
  const std::string wanted = absl::GetFlag(FLAGS_collectives);
  for (Collective& c : Table()) {
    for (absl::string_view w : absl::StrSplit(wanted, ',')) {
      if (w == c.name || w == "all") chosen.push_back(c);
    }
  }
  if (chosen.empty()) return Fail(kCmd, absl::StrCat("--collectives=", wanted, ": none known"));

  absl::StatusOr<std::unique_ptr<Communicator>> comm_or = CreateCommunicator({*backend});
  if (!comm_or.ok()) return Fail(kCmd, std::string(comm_or.status().message()));
  Communicator& comm = **comm_or;
  if (comm.device_buffers())
    return Fail(kCmd, "host-buffer backends only; use nccl-tests for NCCL");
  const int R = comm.size();
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  const bool root = comm.rank() == 0;
  if (root) {
    std::printf(
        "# headroom bench-comm: backend %s, %d ranks (%d on this node), host %s, "
        "%ld cores online\n# float32, sum; %d timed iterations after %d warm-up; time "
        "averaged over iterations then ranks\n",
        comm.backend_name(), R, comm.local_size(), host, sysconf(_SC_NPROCESSORS_ONLN), iters,
        warmup);
  }
  int64_t total_wrong = 0;
  for (Collective& c : chosen) {
    if (root) {
      std::printf("#\n# %s (busbw = algbw x %.3f)\n# %12s %12s %12s %12s %12s %8s\n", c.name,
                  c.bus_factor(R), "size(B)", "count", "time(us)", "algbw(GB/s)", "busbw(GB/s)",
                  "#wrong");
    }
    for (int64_t bytes = std::max<int64_t>(*min_bytes, 4); bytes <= *max_bytes; bytes *= 2) {
      total_wrong += MeasureOneSize(c, comm, bytes, warmup, iters);
    }
  }
  if (root) std::printf("# wrong elements in total: %ld\n", static_cast<long>(total_wrong));
  std::fflush(stdout);
  return total_wrong == 0 ? 0 : 1;
}

}  // namespace headroom
