// loader_bench: what a rank pays to start reading a large sharded dataset, with the shards'
// indexes (<shard>.index) and without them (the loader then scans every record header).
//
// Writes --shards shards holding --records small synthetic examples in all (a tf.Example of
// --ids int64 ids each, about 50-byte records) with RecordWriter, which writes the indexes. Then,
// in a fresh child process per case so that memory figures do not mix, opens a ShardedLoader
// as rank 0 of --ranks and reports: the time to Open(), the time to the first batch (Open and
// the first Next()) in wall and CPU time, the rank's resident memory growth over both (VmRSS
// delta), then the CPU time per example over --batches more batches (the indexed loader reads an
// index block per uncached example) and the loader's own count of the bytes it then holds to
// locate records. The cases: indexes
// present, then the same shards with the indexes moved aside. The first batch's example ids
// must be the same in both (printed as a check), since indexes change nothing but speed.
//
// Usage: build/bench/loader_bench [--records=2000000] [--shards=1000] [--ranks=8]
//          [--global_batch=256] [--batches=50] [--dir=DIR (default: a fresh /tmp dir)] [--keep]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "data/example_io.h"
#include "data/record_writer.h"
#include "data/sharded_loader.h"

ABSL_FLAG(int64_t, records, 2000000, "examples in all shards together");
ABSL_FLAG(int32_t, shards, 1000, "shard files");
ABSL_FLAG(int32_t, ids, 8, "int64 ids per example (record size)");
ABSL_FLAG(int32_t, ranks, 8, "ranks the global batch is split over (rank 0 is measured)");
ABSL_FLAG(int64_t, global_batch, 256, "examples per global batch");
ABSL_FLAG(int32_t, batches, 50, "batches read after the first, for examples/s");
ABSL_FLAG(std::string, dir, "", "where to write the shards; default: a fresh directory in /tmp");
ABSL_FLAG(bool, keep, false, "keep the shards afterwards");

namespace headroom {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// CPU time (user + system, all threads) of this process so far.
double CpuSeconds() {
  struct rusage u;
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// This process's resident set size in bytes (VmRSS of /proc/self/status).
int64_t ResidentBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return -1;
}

// Prints `s` and returns false, for `return Failed(status);`.
bool Failed(const absl::Status& s) {
  std::fprintf(stderr, "loader_bench: %s\n", s.ToString().c_str());
  return false;
}

bool WriteShards(const std::string& dir, int64_t records, int shards, int ids) {
  int64_t u = 0;
  for (int s = 0; s < shards; ++s) {
    auto w = RecordWriter::Create(absl::StrFormat("%s/train-%05d", dir, s));
    if (!w.ok()) return Failed(w.status());
    const int64_t end = records * (s + 1) / shards;
    tf::Example e;
    std::vector<int64_t> values(ids);
    for (; u < end; ++u) {
      for (int i = 0; i < ids; ++i) values[i] = (u * 7 + i) % 30000;
      SetInt64Feature(&e, "input_ids", values);
      if (absl::Status st = (*w)->Write(e.SerializeAsString()); !st.ok()) return Failed(st);
    }
    if (absl::Status st = (*w)->Close(); !st.ok()) return Failed(st);
  }
  return true;
}

struct Measurement {
  double open_s = 0, first_batch_s = 0, first_batch_cpu_s = 0, cpu_us_per_example = 0;
  int64_t rss_delta = 0, offset_bytes = 0, indexed_shards = 0, first_ids_hash = 0;
};

// Opens the loader and reads; runs in a child process. False (after printing why) on error.
bool Measure(const std::string& dir, Measurement* m) {
  LoaderOptions o;
  o.files = dir + "/train-*";
  o.features = {{"input_ids", LoaderFeature::kInt32, absl::GetFlag(FLAGS_ids)}};
  o.global_batch_size = absl::GetFlag(FLAGS_global_batch);
  o.num_ranks = absl::GetFlag(FLAGS_ranks);
  o.seed = 1;
  o.warn = [](const std::string&) {};  // the case is known; keep the table readable
  const int64_t rss0 = ResidentBytes();
  const double cpu0 = CpuSeconds();
  const Clock::time_point start = Clock::now();
  absl::StatusOr<std::unique_ptr<ShardedLoader>> loader = ShardedLoader::Open(o);
  m->open_s = Seconds(start);
  absl::StatusOr<LoaderBatch> batch =
      loader.ok() ? (*loader)->Next() : absl::StatusOr<LoaderBatch>(loader.status());
  m->first_batch_s = Seconds(start);
  m->first_batch_cpu_s = CpuSeconds() - cpu0;
  if (!batch.ok()) return Failed(batch.status());
  m->rss_delta = ResidentBytes() - rss0;
  for (int64_t id : batch->example_ids) m->first_ids_hash = m->first_ids_hash * 1000003 + id;
  // CPU time rather than wall time: the figure should not depend on what else the machine runs.
  const double cpu1 = CpuSeconds();
  const int batches = absl::GetFlag(FLAGS_batches);
  for (int t = 0; t < batches; ++t) {
    if (absl::Status st = (*loader)->Next().status(); !st.ok()) return Failed(st);
  }
  m->cpu_us_per_example =
      (CpuSeconds() - cpu1) * 1e6 / (static_cast<double>(batches) * batch->size);
  m->offset_bytes = (*loader)->offset_memory_bytes();
  m->indexed_shards = (*loader)->indexed_shards();
  return true;
}

// Measure() in a fresh child process, so that each case starts from the same memory.
bool MeasureInChild(const std::string& dir, Measurement* m) {
  int fds[2];
  if (::pipe(fds) != 0) return false;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    Measurement mine;
    bool ok = Measure(dir, &mine);
    if (ok) (void)!::write(fds[1], &mine, sizeof(mine));
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  bool ok = ::read(fds[0], m, sizeof(*m)) == static_cast<ssize_t>(sizeof(*m));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void PrintRow(const char* name, const Measurement& m, int shards) {
  std::printf("| %s | %" PRId64 "/%d | %.3f | %.3f | %.3f | %.1f | %.2f | %.1f |\n", name,
              m.indexed_shards, shards, m.open_s, m.first_batch_s, m.first_batch_cpu_s,
              m.rss_delta / 1048576.0, m.offset_bytes / 1048576.0, m.cpu_us_per_example);
}

int Run() {
  const int64_t records = absl::GetFlag(FLAGS_records);
  const int shards = absl::GetFlag(FLAGS_shards);
  if (records < absl::GetFlag(FLAGS_global_batch) || shards < 1) {
    std::fprintf(stderr, "loader_bench: need --shards >= 1 and --records >= --global_batch\n");
    return 1;
  }
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    std::string templ = "/tmp/loader_bench-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) return 1;
    dir = templ;
  }
  fs::create_directories(dir);
  Clock::time_point start = Clock::now();
  if (!WriteShards(dir, records, shards, absl::GetFlag(FLAGS_ids))) return 1;
  const double write_s = Seconds(start);
  int64_t shard_bytes = 0, index_bytes = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (e.path().extension() == ".index" ? index_bytes : shard_bytes) += e.file_size();
  }
  std::printf("%" PRId64
              " records in %d shards (%.1f MB, indexes %.1f MB) written in %.1f s "
              "to %s\n",
              records, shards, shard_bytes / 1e6, index_bytes / 1e6, write_s, dir.c_str());
  std::printf("rank 0 of %d, global batch %" PRId64 ", page cache warm (files just written)\n\n",
              absl::GetFlag(FLAGS_ranks), absl::GetFlag(FLAGS_global_batch));
  std::printf(
      "| shards | indexed | open (s) | first batch (s) | first batch CPU (s) | "
      "RSS delta (MiB) | offsets held (MiB) | CPU us/example after |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");

  Measurement indexed, scanned;
  if (!MeasureInChild(dir, &indexed)) return 1;
  PrintRow("with indexes", indexed, shards);
  const std::string aside = dir + "/indexes-aside";
  fs::create_directories(aside);
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".index") fs::rename(e.path(), aside / e.path().filename());
  }
  bool ok = MeasureInChild(dir, &scanned);
  for (const auto& e : fs::directory_iterator(aside))
    fs::rename(e.path(), dir / e.path().filename());
  fs::remove(aside);
  if (!ok) return 1;
  PrintRow("without (scan)", scanned, shards);
  const bool same = indexed.first_ids_hash == scanned.first_ids_hash;
  std::printf("\nfirst batch identical with and without indexes: %s\n", same ? "yes" : "NO");
  if (!absl::GetFlag(FLAGS_keep)) fs::remove_all(dir);
  return same ? 0 : 1;
}

}  // namespace
}  // namespace headroom

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return headroom::Run();
}
