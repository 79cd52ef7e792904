// AvailableHostMemory (see host_memory.h): /proc/meminfo, then the cgroup limits of the process's
// cgroup and its ancestors, v2 and v1.
#include "base/host_memory.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file.h"

namespace headroom {
namespace {

// cgroup v1 writes "no limit" as a page-rounded 2^63 - 1; anything this large is no limit.
constexpr int64_t kNoLimit = int64_t{1} << 60;

// The number in a one-value cgroup file; -1 (no limit) when missing, unreadable, "max" or huge.
int64_t ReadLimitFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return -1;
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v) || v < 0 || v >= kNoLimit) return -1;
  return v;
}

// "/a/b" -> {"/a/b", "/a", ""}: the cgroup and its ancestors, the root last ("" + "/file").
std::vector<std::string> SelfAndAncestors(absl::string_view path) {
  std::string p(absl::StripSuffix(path, "/"));
  std::vector<std::string> out;
  while (true) {
    out.push_back(p);
    if (p.empty()) break;
    p.resize(p.rfind('/') == std::string::npos ? 0 : p.rfind('/'));
  }
  return out;
}

// Lowers `best` to the headroom of the limit in dir/limit_name (usage in dir/usage_name).
void ApplyLimit(const std::string& dir, const char* limit_name, const char* usage_name,
                HostMemory* best) {
  const int64_t limit = ReadLimitFile(dir + "/" + limit_name);
  if (limit < 0) return;
  const int64_t usage = std::max<int64_t>(0, ReadLimitFile(dir + "/" + usage_name));
  const int64_t headroom = std::max<int64_t>(0, limit - usage);
  if (headroom < best->available_bytes) {
    best->available_bytes = headroom;
    best->source = absl::StrCat("the cgroup limit ", dir, "/", limit_name, " (", FormatGiB(limit),
                                ", ", FormatGiB(usage), " in use)");
  }
}

}  // namespace

std::string FormatGiB(int64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

absl::StatusOr<HostMemory> AvailableHostMemory(const std::string& root) {
  const std::string meminfo_path = root + "/proc/meminfo";
  absl::StatusOr<std::string> meminfo = ReadFile(meminfo_path);
  if (!meminfo.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot read ", meminfo_path, ": ", meminfo.status().message()));
  }
  HostMemory best;
  best.available_bytes = -1;
  for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
    if (!absl::ConsumePrefix(&line, "MemAvailable:")) continue;
    line = absl::StripAsciiWhitespace(line);
    int64_t kib = 0;
    if (absl::ConsumeSuffix(&line, "kB") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) {
      best.available_bytes = kib * 1024;
    }
  }
  if (best.available_bytes < 0) {
    return absl::UnavailableError(absl::StrCat(meminfo_path, " has no MemAvailable line"));
  }
  best.source = "MemAvailable in /proc/meminfo";

  // /proc/self/cgroup: "0::/path" (v2) and "N:controllers:/path" (v1, memory among them).
  absl::StatusOr<std::string> cgroups = ReadFile(root + "/proc/self/cgroup");
  if (!cgroups.ok()) return best;  // no cgroup information: MemAvailable alone
  for (absl::string_view line : absl::StrSplit(*cgroups, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    const bool v2 = f[0] == "0" && f[1].empty();
    const std::vector<absl::string_view> controllers = absl::StrSplit(f[1], ',');
    const bool v1_memory =
        !v2 && std::find(controllers.begin(), controllers.end(), "memory") != controllers.end();
    for (const std::string& dir : SelfAndAncestors(f[2])) {
      if (v2) {
        for (const char* mount : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
          ApplyLimit(root + mount + dir, "memory.max", "memory.current", &best);
        }
      } else if (v1_memory) {
        ApplyLimit(root + "/sys/fs/cgroup/memory" + dir, "memory.limit_in_bytes",
                   "memory.usage_in_bytes", &best);
      }
    }
  }
  return best;
}

}  // namespace headroom
