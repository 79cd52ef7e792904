// Whole-file reads and atomic whole-file writes, and the Status of a failed POSIX call.
//
// WriteFileAtomically writes to `path + ".tmp-<pid>"`, fsyncs it, renames it over `path` and
// fsyncs the directory, so a reader sees either the old file or the complete new one, never a
// half-written file (the checkpoint and shard writers rely on this).
#ifndef HEADROOM_BASE_FILE_H_
#define HEADROOM_BASE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

// Reads the whole file. NotFound if it does not exist; the message names the path.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically (temporary name, fsync, rename, fsync of the directory).
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// fsyncs the directory `dir`, making a rename inside it durable.
[[nodiscard]] absl::Status SyncDirectory(const std::string& dir);

// The Status of a POSIX call on `path` that just failed, from errno: "<path>: <what>:
// <strerror>", NotFound for ENOENT, PermissionDenied for EACCES/EPERM, Internal otherwise. Call
// it before anything else can change errno.
[[nodiscard]] absl::Status ErrnoError(absl::string_view what, const std::string& path);

}  // namespace headroom

#endif  // HEADROOM_BASE_FILE_H_
