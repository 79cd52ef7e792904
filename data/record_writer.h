// RecordWriter: writes a record file (TFRecord framing, data/record_format.h) atomically, with
// its index (`path + ".index"`, data/record_index_format.h) beside it.
//
// Records go to a temporary file beside the destination (`path + ".tmp-<pid>"`); Close() flushes,
// fsyncs, renames it to `path` and fsyncs the directory. So a file under its final name is always
// complete: a crash, an error or a writer destroyed without Close() leaves no file (and no
// temporary) under the final name, and readers never see a half-written shard.
//
// The index (the start offset of every record) is streamed to its own temporary as records are
// written, one block of 64 offsets at a time, and published by Close() after the shard: Close() removes
// any old `path.index`, renames the shard into place, then the index. A crash between the two
// leaves a shard without an index (readers then scan it), never an index of another file.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordWriter> w, RecordWriter::Create("out/shard-0"));
//   for (const Example& e : examples) HR_RETURN_IF_ERROR(w->Write(e.SerializeAsString()));
//   HR_RETURN_IF_ERROR(w->Close());
//
// Not thread-safe: one thread writes a given writer.
#ifndef HEADROOM_DATA_RECORD_WRITER_H_
#define HEADROOM_DATA_RECORD_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/record_index.h"

namespace headroom {

class RecordWriter {
 public:
  // Creates the temporary file for `path`. Errors name the path (e.g. NotFound when the
  // directory does not exist, PermissionDenied).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RecordWriter>> Create(
      const std::string& path);

  // Abandons the file if Close() did not succeed: the temporary is removed, `path` untouched.
  ~RecordWriter();

  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  // Appends one record with `payload` (any bytes, possibly empty). Buffered; an I/O error is
  // returned here or by Close(), after which the writer is failed and only destruction is left.
  [[nodiscard]] absl::Status Write(absl::string_view payload);

  // Flushes, fsyncs and renames the file to its final name, and publishes its index beside it.
  // Calling it twice is an error.
  [[nodiscard]] absl::Status Close();

  // Appends the framed bytes of one record with `payload` to `*dst` (what Write() writes).
  static void AppendRecord(std::string* dst, absl::string_view payload);

  const std::string& path() const { return path_; }
  int64_t records_written() const { return records_; }
  // Bytes of framed records written so far (the final file size once closed).
  uint64_t bytes_written() const { return bytes_; }

 private:
  RecordWriter(std::string path, std::string tmp_path, int fd);
  absl::Status Flush();
  absl::Status Publish();  // the renames of Close()
  void Abandon();

  std::string path_;
  std::string tmp_path_;
  int fd_;  // -1 once closed or abandoned
  std::string buffer_;
  RecordIndexWriter index_;
  absl::Status status_;  // first error; the writer refuses work after one
  int64_t records_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace headroom

#endif  // HEADROOM_DATA_RECORD_WRITER_H_
