// How much host memory this process can still allocate: the kernel's estimate of available RAM
// (MemAvailable in /proc/meminfo) or, when the process runs under a cgroup memory limit, that
// limit minus what the cgroup already uses, whichever is lower. Both cgroup versions are read:
// v2 (`memory.max`, `memory.current`, "max" meaning no limit) and v1 (`memory.limit_in_bytes`,
// `memory.usage_in_bytes`, values of 2^60 and above meaning no limit), at the process's cgroup
// (from /proc/self/cgroup) and every ancestor up to the hierarchy's root.
//
// Used before large allocations (trainer/memory_budget.h), so that a model too large for the
// machine stops with a message instead of swapping for minutes or being killed silently.
//
// Example:
//   HR_ASSIGN_OR_RETURN(HostMemory m, AvailableHostMemory());
//   // m.available_bytes = 21.0 GiB, m.source = "MemAvailable in /proc/meminfo"
#ifndef HEADROOM_BASE_HOST_MEMORY_H_
#define HEADROOM_BASE_HOST_MEMORY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

struct HostMemory {
  int64_t available_bytes = 0;
  // Where the number comes from, for messages: "MemAvailable in /proc/meminfo" or
  // "the cgroup limit <file> (<limit> GiB, <usage> GiB in use)".
  std::string source;
};

// The lower of MemAvailable and every cgroup limit's headroom (limit minus usage, at least 0).
// `root` prefixes every path read ("" for the real /proc and /sys; tests pass a directory that
// mimics them). Errors: /proc/meminfo unreadable or without MemAvailable (Linux >= 3.14 has it).
[[nodiscard]] absl::StatusOr<HostMemory> AvailableHostMemory(const std::string& root = "");

// "12.35 GiB" (two decimals), for messages about memory.
std::string FormatGiB(int64_t bytes);

}  // namespace headroom

#endif  // HEADROOM_BASE_HOST_MEMORY_H_
