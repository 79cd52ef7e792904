// RecordWriter; see record_writer.h. POSIX calls directly, as base/file.cc does, so that the
// file can be fsynced before the rename that publishes it.
#include "data/record_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "data/crc32c.h"
#include "data/record_format.h"

namespace headroom {
namespace {

// Records are gathered into a buffer of about this size before each write(2).
constexpr size_t kFlushBytes = 1 << 20;

}  // namespace

void RecordWriter::AppendRecord(std::string* dst, absl::string_view payload) {
  size_t start = dst->size();
  AppendLittleEndian(dst, payload.size(), kRecordLengthBytes);
  AppendLittleEndian(dst, crc32c::Mask(crc32c::Value(dst->data() + start, kRecordLengthBytes)),
                     kRecordCrcBytes);
  dst->append(payload.data(), payload.size());
  AppendLittleEndian(dst, crc32c::Mask(crc32c::Value(payload.data(), payload.size())),
                     kRecordCrcBytes);
}

absl::StatusOr<std::unique_ptr<RecordWriter>> RecordWriter::Create(const std::string& path) {
  std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create record file", tmp);
  return std::unique_ptr<RecordWriter>(new RecordWriter(path, std::move(tmp), fd));
}

RecordWriter::RecordWriter(std::string path, std::string tmp_path, int fd)
    : path_(std::move(path)),
      tmp_path_(std::move(tmp_path)),
      fd_(fd),
      index_(RecordIndexPath(path_)) {}

RecordWriter::~RecordWriter() { Abandon(); }

void RecordWriter::Abandon() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_path_.c_str());
  fd_ = -1;
  index_.Abandon();
}

absl::Status RecordWriter::Write(absl::string_view payload) {
  if (!status_.ok()) return status_;
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": Write() after Close()"));
  if (absl::Status s = index_.Add(bytes_); !s.ok()) {
    status_ = s;
    Abandon();
    return status_;
  }
  size_t before = buffer_.size();
  AppendRecord(&buffer_, payload);
  bytes_ += buffer_.size() - before;
  ++records_;
  if (buffer_.size() >= kFlushBytes) return Flush();
  return absl::OkStatus();
}

absl::Status RecordWriter::Flush() {
  size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      status_ = ErrnoError("write failed", tmp_path_);
      Abandon();
      return status_;
    }
    done += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status RecordWriter::Close() {
  if (!status_.ok()) return status_;
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": Close() called twice"));
  HR_RETURN_IF_ERROR(Flush());
  if (::fsync(fd_) != 0) {
    status_ = ErrnoError("fsync failed", tmp_path_);
    Abandon();
    return status_;
  }
  if (absl::Status s = index_.Finish(bytes_); !s.ok()) {
    status_ = s;
    Abandon();
    return status_;
  }
  // close(2) can report a deferred write error (NFS); treat it like a failed write.
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    status_ = ErrnoError("close failed", tmp_path_);
  } else {
    status_ = Publish();
  }
  if (!status_.ok()) {
    ::unlink(tmp_path_.c_str());
    index_.Abandon();
    return status_;
  }
  // Make the renames themselves durable; the files are complete and in place either way.
  return SyncDirectory(std::filesystem::path(path_).parent_path().string());
}

absl::Status RecordWriter::Publish() {
  // An old index must not outlive the old shard: were the new shard renamed into place first,
  // a crash before the new index's rename would leave the old index beside it.
  if (::unlink(index_.path().c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("cannot remove the old record index", index_.path());
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoError("rename failed", path_);
  }
  return index_.Publish();
}

}  // namespace headroom
