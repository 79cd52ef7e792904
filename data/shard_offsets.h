// ShardOffsets: where each record of a list of shards starts, for ShardedLoader, in memory that
// does not grow with the record count when the shards have indexes (data/record_index.h).
//
// Open() reads, per shard, its index's header and last block, and checks that the last record
// ends where the shard ends: O(shards) reads and memory, whatever the number of records. Offset()
// reads the index block holding a record when it is first asked for, through a direct-mapped
// cache of kCachedBlocks blocks of 64 offsets.
//
// A shard without an index, or whose index is stale (the shard's size changed) or damaged, is
// scanned at Open() as all shards were before indexes existed: RecordReader::IndexRecords, one
// read per record header, 8 bytes of memory per record. Open() says so through `warn`: one line
// for all the shards of the dataset without an index, and one line per unusable index naming it
// and what is wrong (the first kMaxNamedIndexes, then a count). An index block found damaged
// later (its CRC checked when it is read) makes Offset() scan that shard then, with a warning.
// Either way the offsets are the same, so the records, their numbering and every batch are.
//
// Memory (memory_bytes()): ~300 bytes per shard, at most kCachedBlocks x (512 + 40) bytes
// (2.2 MiB) of cached blocks, and 8 bytes per record of each scanned shard. Open index files: at
// most OpenFilesPerPool() (base/file.h); past that all are closed before the next is opened.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<ShardOffsets> offsets,
//                       ShardOffsets::Open(files, "shards/train-*", warn));
//   int64_t n = offsets->num_records(3);
//   HR_ASSIGN_OR_RETURN(uint64_t at, offsets->Offset(3, n - 1));  // where its last record starts
//
// Thread-safe: Offset() may be called from several threads (a mutex guards the cache).
#ifndef HEADROOM_DATA_SHARD_OFFSETS_H_
#define HEADROOM_DATA_SHARD_OFFSETS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/record_index.h"

namespace headroom {

class ShardOffsets {
 public:
  // Index blocks cached (direct-mapped by shard and block).
  static constexpr size_t kCachedBlocks = 4096;
  // Unusable indexes named one per line before the rest are counted.
  static constexpr size_t kMaxNamedIndexes = 3;

  using WarnFn = std::function<void(const std::string& line)>;

  // Opens `files` (the shards, in example order) of the dataset `dataset` (its glob, for
  // messages). `warn` (may be empty) receives the lines about shards read without a usable
  // index. Errors: those of RecordReader::Open and, for a scanned shard, of IndexRecords
  // (DataLoss naming the shard, record and offset when the shard itself is damaged).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ShardOffsets>> Open(
      const std::vector<std::string>& files, const std::string& dataset, WarnFn warn);

  ShardOffsets(const ShardOffsets&) = delete;
  ShardOffsets& operator=(const ShardOffsets&) = delete;

  size_t num_shards() const { return shards_.size(); }
  int64_t num_records(size_t shard) const { return shards_[shard].num_records; }

  // The byte offset where record `record` (0 <= record < num_records(shard)) of shard `shard`
  // starts. An error only when a damaged index block's shard then fails to scan, or on I/O
  // failure; it names the file.
  [[nodiscard]] absl::StatusOr<uint64_t> Offset(size_t shard, int64_t record);

  // Bytes this object holds: per-shard state, cached blocks, scanned offsets.
  int64_t memory_bytes() const;
  // Shards whose offsets come from their index (the others were scanned).
  int64_t indexed_shards() const;

 private:
  struct Shard {
    std::string path;
    int64_t num_records = 0;
    std::unique_ptr<RecordIndex> index;  // null: offsets are in `scanned`
    std::vector<uint64_t> scanned;
    absl::Status error;  // the failed late scan of a shard whose index went bad, if any
  };
  struct CachedBlock {
    int64_t shard = -1;
    int64_t block = -1;
    std::vector<uint64_t> offsets;
  };

  explicit ShardOffsets(WarnFn warn) : warn_(std::move(warn)), cache_(kCachedBlocks) {}
  // Opens shard `path`; `problem` receives why its index was not used (empty if it was).
  absl::StatusOr<Shard> OpenShard(const std::string& path, absl::Status* problem);
  // The cache slot of block `block` of shard `shard`, read from the index if not there.
  absl::StatusOr<const CachedBlock*> Block(size_t shard, int64_t block);
  void Warn(const std::string& line) const;

  WarnFn warn_;
  std::vector<Shard> shards_;
  mutable std::mutex mu_;  // guards what follows, and the shards' index files
  std::vector<CachedBlock> cache_;
  size_t open_index_files_ = 0;
};

}  // namespace headroom

#endif  // HEADROOM_DATA_SHARD_OFFSETS_H_
