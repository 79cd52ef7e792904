// RecordReader; see record_reader.h. Every length is checked against its CRC and then against the
// bytes left in the file before anything is allocated or skipped: that order is what makes a
// damaged file an error message rather than a crash, a hang or a multi-gigabyte allocation.
#include "data/record_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "data/crc32c.h"
#include "data/record_format.h"

namespace headroom {
namespace {

// Sequential reads fetch this much at a time.
constexpr size_t kReadAheadBytes = 256 << 10;

}  // namespace

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open record file", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoError("cannot stat", path);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  return std::unique_ptr<RecordReader>(
      new RecordReader(path, fd, static_cast<uint64_t>(st.st_size), ""));
}

std::unique_ptr<RecordReader> RecordReader::FromString(std::string contents, std::string name) {
  uint64_t size = contents.size();
  return std::unique_ptr<RecordReader>(
      new RecordReader(std::move(name), -1, size, std::move(contents)));
}

RecordReader::RecordReader(std::string name, int fd, uint64_t size, std::string contents)
    : name_(std::move(name)), fd_(fd), size_(size), contents_(std::move(contents)) {}

RecordReader::~RecordReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status RecordReader::Pread(uint64_t offset, size_t n, char* dst) const {
  if (fd_ < 0) {
    std::memcpy(dst, contents_.data() + offset, n);
    return absl::OkStatus();
  }
  HR_ASSIGN_OR_RETURN(size_t got, PreadUpTo(fd_, offset, n, dst, name_));
  if (got < n) {
    // The file shrank after Open(): report it like any truncation.
    return absl::DataLossError(absl::StrCat(name_, ": file shrank while being read (now ",
                                            offset + got, " bytes, was ", size_, ")"));
  }
  return absl::OkStatus();
}

absl::Status RecordReader::BufferedRead(uint64_t offset, size_t n, char* dst) {
  if (fd_ < 0 || n >= kReadAheadBytes) return Pread(offset, n, dst);
  if (offset < buffer_start_ || offset + n > buffer_start_ + buffer_.size()) {
    // The caller checked offset + n <= size_, so the refill covers the request.
    buffer_.resize(std::min<uint64_t>(kReadAheadBytes, size_ - offset));
    buffer_start_ = offset;
    absl::Status s = Pread(offset, buffer_.size(), buffer_.data());
    if (!s.ok()) {
      buffer_.clear();
      return s;
    }
  }
  std::memcpy(dst, buffer_.data() + (offset - buffer_start_), n);
  return absl::OkStatus();
}

absl::Status RecordReader::Damaged(uint64_t offset, int64_t index, absl::string_view reason) const {
  return absl::DataLossError(
      absl::StrCat(name_, ": record ", index, " at byte offset ", offset, ": ", reason));
}

absl::Status RecordReader::ReadHeader(uint64_t offset, int64_t index, const char* header,
                                      uint64_t* length) const {
  uint32_t stored =
      static_cast<uint32_t>(DecodeLittleEndian(header + kRecordLengthBytes, kRecordCrcBytes));
  uint32_t actual = crc32c::Mask(crc32c::Value(header, kRecordLengthBytes));
  if (stored != actual) {
    return Damaged(offset, index,
                   absl::StrFormat("length CRC mismatch (stored 0x%08x, computed 0x%08x): the "
                                   "file is damaged",
                                   stored, actual));
  }
  uint64_t len = DecodeLittleEndian(header, kRecordLengthBytes);
  uint64_t left = size_ - offset - kRecordHeaderBytes;  // caller checked the header fits
  if (left < kRecordFooterBytes || len > left - kRecordFooterBytes) {
    return Damaged(
        offset, index,
        absl::StrCat("truncated record: payload of ", len, " bytes plus its ", kRecordFooterBytes,
                     "-byte CRC, but only ", left, " bytes left in the file (a copy cut short?)"));
  }
  *length = len;
  return absl::OkStatus();
}

template <typename ReadFn>
absl::Status RecordReader::ReadRecord(uint64_t offset, int64_t index, std::string* record,
                                      ReadFn&& read) const {
  if (offset > size_ || size_ - offset < kRecordHeaderBytes) {
    return Damaged(offset, index,
                   absl::StrCat("truncated record header: ", offset > size_ ? 0 : size_ - offset,
                                " of ", kRecordHeaderBytes, " bytes before the end of the file"));
  }
  char header[kRecordHeaderBytes];
  HR_RETURN_IF_ERROR(read(offset, kRecordHeaderBytes, header));
  uint64_t length;
  HR_RETURN_IF_ERROR(ReadHeader(offset, index, header, &length));
  // Safe: ReadHeader bounded `length` by the file size.
  record->resize(length + kRecordFooterBytes);
  HR_RETURN_IF_ERROR(read(offset + kRecordHeaderBytes, record->size(), record->data()));
  uint32_t stored =
      static_cast<uint32_t>(DecodeLittleEndian(record->data() + length, kRecordCrcBytes));
  uint32_t actual = crc32c::Mask(crc32c::Value(record->data(), length));
  record->resize(length);
  if (stored != actual) {
    return Damaged(offset, index,
                   absl::StrFormat("payload CRC mismatch (%d bytes; stored 0x%08x, computed "
                                   "0x%08x): the file is damaged",
                                   length, stored, actual));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> RecordReader::ReadNext(std::string* record) {
  if (!status_.ok()) return status_;
  if (offset_ == size_) return false;
  status_ = ReadRecord(offset_, index_, record, [this](uint64_t off, size_t n, char* dst) {
    return BufferedRead(off, n, dst);
  });
  if (!status_.ok()) return status_;
  offset_ += record->size() + kRecordOverheadBytes;
  ++index_;
  return true;
}

absl::Status RecordReader::ReadAt(uint64_t offset, int64_t index, std::string* record) const {
  return ReadRecord(offset, index, record,
                    [this](uint64_t off, size_t n, char* dst) { return Pread(off, n, dst); });
}

absl::StatusOr<std::vector<uint64_t>> RecordReader::IndexRecords() const {
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  while (offset < size_) {
    int64_t index = static_cast<int64_t>(offsets.size());
    if (size_ - offset < kRecordHeaderBytes) {
      return Damaged(offset, index,
                     absl::StrCat("truncated record header: ", size_ - offset, " of ",
                                  kRecordHeaderBytes, " bytes before the end of the file"));
    }
    char header[kRecordHeaderBytes];
    HR_RETURN_IF_ERROR(Pread(offset, kRecordHeaderBytes, header));
    uint64_t length;
    HR_RETURN_IF_ERROR(ReadHeader(offset, index, header, &length));
    offsets.push_back(offset);
    offset += length + kRecordOverheadBytes;
  }
  return offsets;
}

}  // namespace headroom
