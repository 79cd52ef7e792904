// RecordReader: reads a record file (TFRecord framing, data/record_format.h) sequentially or by
// byte offset, checking both CRCs of every record it returns.
//
// Damage is never skipped silently: a bad length CRC, a bad payload CRC or a truncated record is
// returned as absl::DataLossError naming the file, the record's index (0-based) and the byte
// offset where the record starts, e.g.
//   "shards/train-00003: record 17 at byte offset 40960: payload CRC mismatch (...)".
// A length is trusted only after its CRC matches and only up to the bytes left in the file, so a
// damaged or truncated file costs no huge allocation, never hangs and never crashes. Unlike
// LevelDB's log, a half-written last record is an error rather than end of file: RecordWriter
// publishes only complete files, so a partial record means the file was damaged (e.g. a copy
// cut short), and training on a silently shortened shard would be worse than stopping.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> r, RecordReader::Open(path));
//   std::string record;
//   while (true) {
//     HR_ASSIGN_OR_RETURN(bool more, r->ReadNext(&record));
//     if (!more) break;
//     ... use record ...
//   }
//
// ReadNext is for one thread at a time. ReadAt, IndexRecords and the accessors are const and safe
// to call from several threads at once (they use pread and no shared state).
#ifndef HEADROOM_DATA_RECORD_READER_H_
#define HEADROOM_DATA_RECORD_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

class RecordReader {
 public:
  // Opens `path` for reading. NotFound / PermissionDenied naming the path on failure. The file
  // size is taken at Open(); a file that grows later is read only up to that size.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RecordReader>> Open(const std::string& path);

  // Reads records from `contents` held in memory (tests, the fuzzer); `name` is used in errors.
  static std::unique_ptr<RecordReader> FromString(std::string contents, std::string name);

  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // Reads the record at offset() into `*record` (replacing its contents) and advances. Returns
  // true on success, false at the end of the file (offset() == size()), DataLoss on damage. After
  // an error every later call returns the same error.
  [[nodiscard]] absl::StatusOr<bool> ReadNext(std::string* record);

  // Byte offset and index of the record the next ReadNext() reads.
  uint64_t offset() const { return offset_; }
  int64_t record_index() const { return index_; }

  // Reads the record starting at byte `offset` into `*record`, checking both CRCs. `index` is the
  // record's index in the file, used only in error messages. `offset` must be a record start
  // (from IndexRecords() or offset()); any other offset almost surely fails the length CRC.
  [[nodiscard]] absl::Status ReadAt(uint64_t offset, int64_t index, std::string* record) const;

  // Returns the start offset of every record, reading only the 12-byte headers (length and its
  // CRC) and skipping the payloads; payload CRCs are checked later, when records are read. The
  // file's framing is fully checked: a damaged length or a truncated last record is DataLoss.
  [[nodiscard]] absl::StatusOr<std::vector<uint64_t>> IndexRecords() const;

  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }

 private:
  RecordReader(std::string name, int fd, uint64_t size, std::string contents);

  // Copies bytes [offset, offset + n) into dst; the caller has checked they lie in the file.
  absl::Status Pread(uint64_t offset, size_t n, char* dst) const;
  // Like Pread, through a read-ahead buffer (sequential reads with few system calls).
  absl::Status BufferedRead(uint64_t offset, size_t n, char* dst);
  // Reads and checks the header of the record at `offset`; sets *length to its payload size,
  // which is known to fit in the file.
  absl::Status ReadHeader(uint64_t offset, int64_t index, const char* header,
                          uint64_t* length) const;
  absl::Status Damaged(uint64_t offset, int64_t index, absl::string_view reason) const;
  template <typename ReadFn>
  absl::Status ReadRecord(uint64_t offset, int64_t index, std::string* record, ReadFn&& read) const;

  std::string name_;
  int fd_;  // -1 for an in-memory reader
  uint64_t size_;
  std::string contents_;  // in-memory reader only
  uint64_t offset_ = 0;
  int64_t index_ = 0;
  absl::Status status_;  // sticky error of ReadNext
  std::string buffer_;   // read-ahead bytes [buffer_start_, buffer_start_ + buffer_.size())
  uint64_t buffer_start_ = 0;
};

}  // namespace headroom

#endif  // HEADROOM_DATA_RECORD_READER_H_
