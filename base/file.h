// Whole-file reads and atomic whole-file writes, and the Status of a failed POSIX call.
//
// WriteFileAtomically writes to `path + ".tmp-<pid>"`, fsyncs it, renames it over `path` and
// fsyncs the directory, so a reader sees either the old file or the complete new one, never a
// half-written file (the checkpoint and shard writers rely on this).
#ifndef HEADROOM_BASE_FILE_H_
#define HEADROOM_BASE_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

// Reads the whole file. NotFound if it does not exist; the message names the path.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically (temporary name, fsync, rename, fsync of the directory).
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Reads up to `n` bytes at `offset` of the open file `fd` into `dst`, retrying short reads and
// EINTR; returns the bytes read, fewer than `n` only at the end of the file. Errors name `path`.
[[nodiscard]] absl::StatusOr<size_t> PreadUpTo(int fd, uint64_t offset, size_t n, char* dst,
                                               const std::string& path);

// Writes all of `bytes` at `offset` of the open file `fd`, retrying short writes and EINTR.
// Errors name `path`.
[[nodiscard]] absl::Status PwriteFully(int fd, uint64_t offset, absl::string_view bytes,
                                       const std::string& path);

// How many files one pool of lazily opened files (a loader's shards, or their indexes) may keep
// open: an eighth of the process's open-file limit (soft RLIMIT_NOFILE), at least 32. So the two
// pools of a training and an evaluation loader hold at most half the limit: 128 files each under
// the common default of 1024, every shard of a 1,000-shard dataset under a limit of 16k or more.
size_t OpenFilesPerPool();

// fsyncs the directory `dir`, making a rename inside it durable.
[[nodiscard]] absl::Status SyncDirectory(const std::string& dir);

// The Status of a POSIX call on `path` that just failed, from errno: "<path>: <what>:
// <strerror>", NotFound for ENOENT, PermissionDenied for EACCES/EPERM, Internal otherwise. Call
// it before anything else can change errno.
[[nodiscard]] absl::Status ErrnoError(absl::string_view what, const std::string& path);

}  // namespace headroom

#endif  // HEADROOM_BASE_FILE_H_
