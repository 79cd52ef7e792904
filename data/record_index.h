// Writing and reading record indexes (`<shard>.index`, format in data/record_index_format.h).
//
// RecordIndexWriter streams the offsets of a shard being written to a temporary file, one block
// at a time, so writing N records costs one block of memory, not 8N bytes; RecordWriter
// uses it for every shard, and publishes the index only after the shard itself (a crash leaves
// a shard without an index, which readers handle, never an index describing another file).
//
// RecordIndex reads one: Open() reads and checks the header only (magic, version, CRC, that the
// index was written for a shard of the size the shard has now, and that the file has the size
// the header implies); ReadBlock() reads one block of offsets when it is needed and checks it.
// So opening costs O(1) whatever the record count, and memory is what the caller caches.
//
// Example (a reader finding record r of `shard`, `size` bytes long):
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordIndex> index, RecordIndex::Open(shard, size));
//   std::vector<uint64_t> block;
//   HR_RETURN_IF_ERROR(index->ReadBlock(r / index->entries_per_block(), &block));
//   uint64_t offset = block[r % index->entries_per_block()];
//
// Errors name the index file and say what is wrong, e.g.
//   "shards/train-00003.tfrecord.index: block 17: CRC mismatch (stored 0x..., computed 0x...)"
//   "shards/train-00003.tfrecord.index: stale: written for a shard of 1048576 bytes, the shard
//    now has 1050000 bytes".
// Not thread-safe: one thread uses a given RecordIndex or RecordIndexWriter at a time.
#ifndef HEADROOM_DATA_RECORD_INDEX_H_
#define HEADROOM_DATA_RECORD_INDEX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace headroom {

// "<shard>.index", the index that belongs to `shard_path`.
std::string RecordIndexPath(const std::string& shard_path);

class RecordIndexWriter {
 public:
  // The index will be published at `index_path`; until then it is written to
  // `index_path + ".tmp-<pid>"`, created when the first block is written.
  explicit RecordIndexWriter(std::string index_path);
  // Removes the temporary unless Publish() succeeded.
  ~RecordIndexWriter();
  RecordIndexWriter(const RecordIndexWriter&) = delete;
  RecordIndexWriter& operator=(const RecordIndexWriter&) = delete;

  // Appends the start offset of the next record. Offsets must increase strictly, the first being
  // 0 (asserted). An I/O error names the temporary; the writer is then failed.
  [[nodiscard]] absl::Status Add(uint64_t offset);

  // Writes the last block and the header for a record file of `file_size` bytes and fsyncs: the
  // index is complete, still under its temporary name.
  [[nodiscard]] absl::Status Finish(uint64_t file_size);

  // Renames the finished temporary to the index path (the caller fsyncs the directory).
  [[nodiscard]] absl::Status Publish();

  // Removes the temporary, if any; the writer is then unusable.
  void Abandon();

  const std::string& path() const { return path_; }
  int64_t records() const { return records_; }

 private:
  absl::Status WriteAt(uint64_t offset, const std::string& bytes);  // to the temporary
  absl::Status FlushBlock();

  std::string path_;
  std::string tmp_path_;
  bool tmp_exists_ = false;
  std::string block_;       // encoded entries of the block being filled
  uint64_t tmp_bytes_ = 0;  // bytes of the temporary written (header space included)
  int64_t records_ = 0;
  uint64_t last_offset_ = 0;
  bool finished_ = false;
  bool published_ = false;
  absl::Status status_;  // first error
};

class RecordIndex {
 public:
  // Opens the index of the shard `shard_path`, which now has `shard_size` bytes, reading only
  // the header. NotFound: there is no index file. FailedPrecondition: the index is stale
  // (written for a shard of another size). DataLoss: the index is damaged (bad magic, unknown
  // version, header CRC mismatch, a file size other than the header implies, a record count
  // impossible for the shard size). Every message names the index file.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RecordIndex>> Open(
      const std::string& shard_path, uint64_t shard_size);

  ~RecordIndex();
  RecordIndex(const RecordIndex&) = delete;
  RecordIndex& operator=(const RecordIndex&) = delete;

  // Reads block `block` (0 <= block < num_blocks()) into `*offsets` (replacing its contents):
  // the start offsets of records block * entries_per_block() onwards. DataLoss naming the index
  // file and the block when its CRC does not match, when its offsets do not increase, lie
  // outside the shard, or (block 0) do not start at 0. The file is opened at the first call and
  // kept open until CloseFile().
  [[nodiscard]] absl::Status ReadBlock(int64_t block, std::vector<uint64_t>* offsets);

  // Closes the index file (a later ReadBlock reopens it); lets a caller bound open descriptors.
  void CloseFile();
  bool file_open() const { return fd_ >= 0; }

  const std::string& path() const { return path_; }
  int64_t num_records() const { return num_records_; }
  int64_t entries_per_block() const { return entries_per_block_; }
  int64_t num_blocks() const;
  uint64_t shard_size() const { return shard_size_; }

 private:
  RecordIndex(std::string path, int64_t num_records, int64_t entries_per_block,
              uint64_t shard_size);

  std::string path_;
  int64_t num_records_;
  int64_t entries_per_block_;
  uint64_t shard_size_;
  int fd_ = -1;
};

// `files` without those that are the index of another file of the list ("X.index" beside "X"):
// a glob or a shell wildcard matching shards matches their indexes too. Order is kept.
std::vector<std::string> WithoutRecordIndexes(const std::vector<std::string>& files);

// Writes `shard_path`'s index from a scan of its record headers (RecordReader::IndexRecords,
// which checks the framing), atomically: for shards written elsewhere (Google BERT's scripts,
// tensor2tensor) or whose index was lost. Returns the number of records. DataLoss naming the
// shard, record and offset when the shard is damaged; nothing is written then.
[[nodiscard]] absl::StatusOr<int64_t> WriteRecordIndex(const std::string& shard_path);

}  // namespace headroom

#endif  // HEADROOM_DATA_RECORD_INDEX_H_
