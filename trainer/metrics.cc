// Console, JSON-lines and TensorBoard metrics; see metrics.h for the formats.
#include "trainer/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "data/record_writer.h"
#include "nlohmann/json.hpp"
#include "trainer/tensorboard.pb.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

double WallTime() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write failed", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// JSON has no NaN/Inf; a diverged loss is written as null rather than breaking the line.
nlohmann::json Number(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

std::string WithThousands(int64_t n) {
  std::string digits = absl::StrCat(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// A kill in the middle of a write can leave metrics.jsonl ending in a partial record. Appending
// to it would glue the next record onto that fragment, so that line (and every later one) would
// no longer parse: cut the file back to its last newline first. Returns the bytes cut.
absl::StatusOr<int64_t> CutPartialLastLine(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Errno("cannot stat", path);
  int64_t end = st.st_size;
  char buffer[4096];
  while (end > 0) {
    const int64_t start = std::max<int64_t>(0, end - static_cast<int64_t>(sizeof(buffer)));
    const size_t n = static_cast<size_t>(end - start);
    ssize_t got = ::pread(fd, buffer, n, start);
    if (got < 0 && errno == EINTR) continue;
    if (got != static_cast<ssize_t>(n)) return Errno("cannot read", path);
    const char* newline = static_cast<const char*>(::memrchr(buffer, '\n', n));
    if (newline != nullptr) {
      end = start + (newline - buffer) + 1;
      break;
    }
    end = start;
  }
  const int64_t cut = st.st_size - end;
  if (cut > 0 && ::ftruncate(fd, end) != 0) return Errno("cannot cut the partial last line", path);
  return cut;
}

}  // namespace

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

int64_t ProcessResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      int64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
    status.ignore(1 << 20, '\n');
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<MetricsLogger>> MetricsLogger::Open(const MetricsOptions& o) {
  std::unique_ptr<MetricsLogger> m(new MetricsLogger(o));
  if (o.run_dir.empty()) return m;
  const fs::path tb = fs::path(o.run_dir) / "tb";
  std::error_code ec;
  fs::create_directories(tb, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(tb.string(), ": cannot create the metrics directory: ", ec.message()));
  }
  m->json_path_ = (fs::path(o.run_dir) / "metrics.jsonl").string();
  m->json_fd_ = ::open(m->json_path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (m->json_fd_ < 0) return Errno("cannot open", m->json_path_);
  HR_ASSIGN_OR_RETURN(const int64_t cut, CutPartialLastLine(m->json_fd_, m->json_path_));
  if (cut > 0 && o.console != nullptr) {
    std::fprintf(o.console,
                 "%s: removed a partial last line (%lld bytes, from an interrupted run)\n",
                 m->json_path_.c_str(), static_cast<long long>(cut));
  }

  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const double now = WallTime();
  // One file per process start, as TensorFlow; the pid keeps two starts in one second apart.
  m->event_path_ = (tb / absl::StrCat("events.out.tfevents.", static_cast<int64_t>(now), ".", host,
                                      ".", ::getpid()))
                       .string();
  m->event_fd_ = ::open(m->event_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (m->event_fd_ < 0) return Errno("cannot open", m->event_path_);
  tensorboard::Event version;
  version.set_wall_time(now);
  version.set_file_version("brain.Event:2");
  HR_RETURN_IF_ERROR(m->WriteEvent(version.SerializeAsString()));
  return m;
}

MetricsLogger::~MetricsLogger() {
  (void)Flush();
  if (json_fd_ >= 0) ::close(json_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

absl::Status MetricsLogger::Flush() {
  if (json_fd_ >= 0 && ::fsync(json_fd_) != 0) return Errno("fsync failed", json_path_);
  if (event_fd_ >= 0 && ::fsync(event_fd_) != 0) return Errno("fsync failed", event_path_);
  return absl::OkStatus();
}

absl::Status MetricsLogger::WriteJson(const std::string& line) {
  if (json_fd_ < 0) return absl::OkStatus();
  return WriteAll(json_fd_, line + "\n", json_path_);
}

absl::Status MetricsLogger::WriteEvent(const std::string& serialized) {
  if (event_fd_ < 0) return absl::OkStatus();
  std::string framed;
  RecordWriter::AppendRecord(&framed, serialized);
  // One write(2) per record: a reader (TensorBoard polls the file) never sees half a record
  // from us except at a crash, which TensorBoard tolerates at the end of a file.
  return WriteAll(event_fd_, framed, event_path_);
}

absl::Status MetricsLogger::WriteScalars(
    int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  if (event_fd_ < 0) return absl::OkStatus();
  tensorboard::Event e;
  e.set_wall_time(WallTime());
  e.set_step(step);
  for (const auto& [tag, value] : scalars) {
    tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  return WriteEvent(e.SerializeAsString());
}

absl::Status MetricsLogger::LogTrain(const TrainRecord& r) {
  const double tokens_per_sec = r.seconds > 0 ? r.tokens / r.seconds : 0.0;
  const bool have_mfu = options_.flops_per_token > 0 && options_.peak_flops > 0;
  const double mfu = have_mfu ? options_.flops_per_token * tokens_per_sec / options_.peak_flops : 0;
  const double step_seconds = r.steps > 0 ? r.seconds / r.steps : 0.0;
  const bool have_eta = options_.total_steps > 0 && step_seconds > 0;
  const double eta = have_eta ? (options_.total_steps - r.step) * step_seconds : 0;

  if (options_.console != nullptr) {
    std::string line = absl::StrFormat("step %d", r.step);
    if (options_.total_steps > 0) absl::StrAppend(&line, "/", options_.total_steps);
    absl::StrAppendFormat(&line, " | loss %.4f | lr %.3g | grad_norm %.3f | %s tok/s", r.loss, r.lr,
                          r.grad_norm, WithThousands(std::llround(tokens_per_sec)));
    if (have_mfu) absl::StrAppendFormat(&line, " | MFU %.1f%%", 100 * mfu);
    if (r.memory_bytes > 0) {
      absl::StrAppendFormat(&line, " | mem %.2f GiB", r.memory_bytes / 1073741824.0);
    }
    if (have_eta) absl::StrAppend(&line, " | ETA ", FormatDuration(eta));
    std::fprintf(options_.console, "%s\n", line.c_str());
    std::fflush(options_.console);
  }

  nlohmann::ordered_json j;
  j["split"] = "train";
  j["step"] = r.step;
  j["loss"] = Number(r.loss);
  j["lr"] = Number(r.lr);
  j["grad_norm"] = Number(r.grad_norm);
  j["tokens_per_sec"] = Number(tokens_per_sec);
  if (have_mfu) j["mfu"] = Number(mfu);
  j["memory_bytes"] = r.memory_bytes;
  j["step_seconds"] = Number(step_seconds);
  for (const auto& [k, v] : r.extra) j[k] = Number(v);
  j["wall_time"] = WallTime();
  HR_RETURN_IF_ERROR(WriteJson(j.dump()));

  std::vector<std::pair<std::string, double>> scalars = {{"train/loss", r.loss},
                                                         {"train/lr", r.lr},
                                                         {"train/grad_norm", r.grad_norm},
                                                         {"train/tokens_per_sec", tokens_per_sec}};
  if (have_mfu) scalars.emplace_back("train/mfu", mfu);
  for (const auto& [k, v] : r.extra) scalars.emplace_back("train/" + k, v);
  return WriteScalars(r.step, scalars);
}

absl::Status MetricsLogger::LogEval(int64_t step,
                                    const std::vector<std::pair<std::string, double>>& values) {
  if (options_.console != nullptr) {
    std::string line = absl::StrFormat("eval step %d", step);
    for (const auto& [k, v] : values) absl::StrAppendFormat(&line, " | %s %.4f", k, v);
    std::fprintf(options_.console, "%s\n", line.c_str());
    std::fflush(options_.console);
  }
  nlohmann::ordered_json j;
  j["split"] = "eval";
  j["step"] = step;
  for (const auto& [k, v] : values) j[k] = Number(v);
  j["wall_time"] = WallTime();
  HR_RETURN_IF_ERROR(WriteJson(j.dump()));
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [k, v] : values) scalars.emplace_back("eval/" + k, v);
  return WriteScalars(step, scalars);
}

}  // namespace headroom
