// RecordIndexWriter and RecordIndex; see record_index.h and, for the bytes, record_index_format.h.
// Every field read from an index is checked before it sizes a read or an allocation, as the
// record reader does with lengths: a damaged index is an error naming it, never a crash.
#include "data/record_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "data/crc32c.h"
#include "data/record_format.h"
#include "data/record_index_format.h"
#include "data/record_reader.h"

namespace headroom {
namespace {

uint32_t MaskedCrc(const char* data, size_t n) { return crc32c::Mask(crc32c::Value(data, n)); }

std::string EncodeHeader(int64_t num_records, uint64_t shard_size) {
  std::string h(kRecordIndexMagic, kRecordIndexMagicBytes);
  AppendLittleEndian(&h, kRecordIndexVersion, 4);
  AppendLittleEndian(&h, kRecordIndexBlockEntries, 4);
  AppendLittleEndian(&h, static_cast<uint64_t>(num_records), 8);
  AppendLittleEndian(&h, shard_size, 8);
  AppendLittleEndian(&h, MaskedCrc(h.data(), h.size()), kRecordIndexCrcBytes);
  assert(h.size() == kRecordIndexHeaderBytes);
  return h;
}

// Bytes from the start of one block to the next: B entries and the block's CRC.
uint64_t BlockStride(int64_t entries_per_block) {
  return static_cast<uint64_t>(entries_per_block) * kRecordIndexEntryBytes + kRecordIndexCrcBytes;
}

}  // namespace

std::string RecordIndexPath(const std::string& shard_path) {
  return shard_path + kRecordIndexSuffix;
}

std::vector<std::string> WithoutRecordIndexes(const std::vector<std::string>& files) {
  const std::set<std::string> all(files.begin(), files.end());
  const std::string suffix = kRecordIndexSuffix;
  std::vector<std::string> out;
  for (const std::string& file : files) {
    const bool is_index =
        absl::EndsWith(file, suffix) && all.count(file.substr(0, file.size() - suffix.size())) > 0;
    if (!is_index) out.push_back(file);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// RecordIndexWriter

RecordIndexWriter::RecordIndexWriter(std::string index_path)
    : path_(std::move(index_path)), tmp_path_(absl::StrCat(path_, ".tmp-", ::getpid())) {}

RecordIndexWriter::~RecordIndexWriter() { Abandon(); }

void RecordIndexWriter::Abandon() {
  if (tmp_exists_ && !published_) ::unlink(tmp_path_.c_str());
  tmp_exists_ = false;
  if (status_.ok() && !published_) {
    status_ = absl::FailedPreconditionError(absl::StrCat(path_, ": index writer abandoned"));
  }
}

absl::Status RecordIndexWriter::WriteAt(uint64_t offset, const std::string& bytes) {
  // The temporary is opened for each write rather than kept open: a prepare command may hold
  // hundreds of shards open at once, and a second descriptor per shard could exhaust the
  // process's limit. One open per block of 64 records costs little beside writing them.
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (tmp_exists_ ? 0 : O_TRUNC);
  int fd = ::open(tmp_path_.c_str(), flags, 0644);
  absl::Status s;
  if (fd < 0) {
    s = ErrnoError("cannot create record index", tmp_path_);
  } else {
    tmp_exists_ = true;
    s = PwriteFully(fd, offset, bytes, tmp_path_);
    // Finish() writes the header last: make the whole file durable before it is published.
    if (s.ok() && offset == 0 && ::fsync(fd) != 0) s = ErrnoError("fsync failed", tmp_path_);
    if (::close(fd) != 0 && s.ok()) s = ErrnoError("close failed", tmp_path_);
  }
  if (!s.ok()) {
    status_ = s;
    Abandon();
  }
  return s;
}

absl::Status RecordIndexWriter::Add(uint64_t offset) {
  if (!status_.ok()) return status_;
  assert(!finished_);
  assert(records_ == 0 ? offset == 0 : offset > last_offset_);
  AppendLittleEndian(&block_, offset, kRecordIndexEntryBytes);
  last_offset_ = offset;
  ++records_;
  if (block_.size() == kRecordIndexBlockEntries * kRecordIndexEntryBytes) return FlushBlock();
  return absl::OkStatus();
}

absl::Status RecordIndexWriter::FlushBlock() {
  if (block_.empty()) return absl::OkStatus();
  AppendLittleEndian(&block_, MaskedCrc(block_.data(), block_.size()), kRecordIndexCrcBytes);
  // Blocks follow the header's place, which Finish() fills.
  if (tmp_bytes_ == 0) tmp_bytes_ = kRecordIndexHeaderBytes;
  HR_RETURN_IF_ERROR(WriteAt(tmp_bytes_, block_));
  tmp_bytes_ += block_.size();
  block_.clear();
  return absl::OkStatus();
}

absl::Status RecordIndexWriter::Finish(uint64_t file_size) {
  if (!status_.ok()) return status_;
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(path_, ": Finish() twice"));
  HR_RETURN_IF_ERROR(FlushBlock());
  HR_RETURN_IF_ERROR(WriteAt(0, EncodeHeader(records_, file_size)));
  finished_ = true;
  return absl::OkStatus();
}

absl::Status RecordIndexWriter::Publish() {
  if (!status_.ok()) return status_;
  if (!finished_ || published_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": Publish() needs one successful Finish() first"));
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    status_ = ErrnoError("rename failed", path_);
    Abandon();
    return status_;
  }
  published_ = true;
  tmp_exists_ = false;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// RecordIndex

RecordIndex::RecordIndex(std::string path, int64_t num_records, int64_t entries_per_block,
                         uint64_t shard_size)
    : path_(std::move(path)),
      num_records_(num_records),
      entries_per_block_(entries_per_block),
      shard_size_(shard_size) {}

RecordIndex::~RecordIndex() { CloseFile(); }

void RecordIndex::CloseFile() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int64_t RecordIndex::num_blocks() const {
  return (num_records_ + entries_per_block_ - 1) / entries_per_block_;
}

absl::StatusOr<std::unique_ptr<RecordIndex>> RecordIndex::Open(const std::string& shard_path,
                                                               uint64_t shard_size) {
  const std::string path = RecordIndexPath(shard_path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open record index", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoError("cannot stat", path);
    ::close(fd);
    return s;
  }
  char h[kRecordIndexHeaderBytes];
  absl::StatusOr<size_t> got = PreadUpTo(fd, 0, sizeof(h), h, path);
  ::close(fd);
  if (!got.ok()) return got.status();
  auto damaged = [&](auto... why) {
    return absl::DataLossError(absl::StrCat(path, ": damaged record index: ", why...));
  };
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (*got < sizeof(h)) {
    return damaged(file_size, " bytes, shorter than the ", sizeof(h), "-byte header");
  }
  if (std::memcmp(h, kRecordIndexMagic, kRecordIndexMagicBytes) != 0) {
    return damaged("bad magic (not a record index)");
  }
  const uint32_t stored = static_cast<uint32_t>(
      DecodeLittleEndian(h + kRecordIndexHeaderCrcOffset, kRecordIndexCrcBytes));
  const uint32_t actual = MaskedCrc(h, kRecordIndexHeaderCrcOffset);
  if (stored != actual) {
    return damaged(
        absl::StrFormat("header CRC mismatch (stored 0x%08x, computed 0x%08x)", stored, actual));
  }
  const uint64_t version = DecodeLittleEndian(h + 8, 4);
  const uint64_t per_block = DecodeLittleEndian(h + 12, 4);
  const uint64_t records = DecodeLittleEndian(h + 16, 8);
  const uint64_t indexed_size = DecodeLittleEndian(h + 24, 8);
  if (version != kRecordIndexVersion) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": record index version ", version,
                                                      ", this build reads version ",
                                                      kRecordIndexVersion));
  }
  if (indexed_size != shard_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": stale record index: written for a shard of ", indexed_size,
                     " bytes, the shard now has ", shard_size, " bytes"));
  }
  if (per_block == 0) return damaged("0 entries per block");
  // Every record takes at least its framing, so this bounds `records` before any arithmetic.
  if (records > shard_size / kRecordOverheadBytes || (records == 0) != (shard_size == 0)) {
    return damaged("header says ", records, " records, impossible for a shard of ", shard_size,
                   " bytes");
  }
  const uint64_t blocks = (records + per_block - 1) / per_block;
  const uint64_t expected =
      kRecordIndexHeaderBytes + records * kRecordIndexEntryBytes + blocks * kRecordIndexCrcBytes;
  if (file_size != expected) {
    return damaged(file_size, " bytes, but ", records, " records in blocks of ", per_block,
                   " take ", expected, " (a copy cut short?)");
  }
  return std::unique_ptr<RecordIndex>(new RecordIndex(path, static_cast<int64_t>(records),
                                                      static_cast<int64_t>(per_block), shard_size));
}

absl::Status RecordIndex::ReadBlock(int64_t block, std::vector<uint64_t>* offsets) {
  assert(block >= 0 && block < num_blocks());
  const int64_t first = block * entries_per_block_;
  const size_t entries = static_cast<size_t>(std::min(entries_per_block_, num_records_ - first));
  auto damaged = [&](auto... why) {
    return absl::DataLossError(absl::StrCat(path_, ": damaged record index: block ", block,
                                            " (records ", first, "..", first + entries - 1,
                                            "): ", why...));
  };
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoError("cannot open record index", path_);
  }
  std::string buffer(entries * kRecordIndexEntryBytes + kRecordIndexCrcBytes, '\0');
  const uint64_t at =
      kRecordIndexHeaderBytes + static_cast<uint64_t>(block) * BlockStride(entries_per_block_);
  HR_ASSIGN_OR_RETURN(size_t got, PreadUpTo(fd_, at, buffer.size(), buffer.data(), path_));
  if (got < buffer.size()) return damaged("the file ends inside it (it shrank after opening)");
  const size_t n = entries * kRecordIndexEntryBytes;
  const uint32_t stored =
      static_cast<uint32_t>(DecodeLittleEndian(buffer.data() + n, kRecordIndexCrcBytes));
  const uint32_t actual = MaskedCrc(buffer.data(), n);
  if (stored != actual) {
    return damaged(
        absl::StrFormat("CRC mismatch (stored 0x%08x, computed 0x%08x)", stored, actual));
  }
  offsets->resize(entries);
  for (size_t i = 0; i < entries; ++i) {
    const uint64_t offset =
        DecodeLittleEndian(buffer.data() + i * kRecordIndexEntryBytes, kRecordIndexEntryBytes);
    const int64_t record = first + static_cast<int64_t>(i);
    if (record == 0 && offset != 0) return damaged("record 0 starts at ", offset, ", not 0");
    if (i > 0 && offset <= (*offsets)[i - 1]) {
      return damaged("record ", record, " starts at ", offset, ", not after record ", record - 1,
                     " at ", (*offsets)[i - 1]);
    }
    if (offset > shard_size_ || shard_size_ - offset < kRecordOverheadBytes) {
      return damaged("record ", record, " starts at ", offset, ", too near the end of the ",
                     shard_size_, "-byte shard to hold a record");
    }
    (*offsets)[i] = offset;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<int64_t> WriteRecordIndex(const std::string& shard_path) {
  HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader, RecordReader::Open(shard_path));
  HR_ASSIGN_OR_RETURN(std::vector<uint64_t> offsets, reader->IndexRecords());
  RecordIndexWriter writer(RecordIndexPath(shard_path));
  for (uint64_t offset : offsets) HR_RETURN_IF_ERROR(writer.Add(offset));
  HR_RETURN_IF_ERROR(writer.Finish(reader->size()));
  HR_RETURN_IF_ERROR(writer.Publish());
  HR_RETURN_IF_ERROR(SyncDirectory(std::filesystem::path(shard_path).parent_path().string()));
  return static_cast<int64_t>(offsets.size());
}

}  // namespace headroom
