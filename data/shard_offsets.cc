// ShardOffsets; see shard_offsets.h. An index is trusted only after its header matches the shard
// (RecordIndex::Open) and its last record ends exactly where the shard does; each block is
// trusted only after its CRC matches (RecordIndex::ReadBlock). Anything else falls back to the
// scan, which gives the same offsets.
#include "data/shard_offsets.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "data/record_format.h"
#include "data/record_reader.h"

namespace headroom {
namespace {

constexpr char kScanned[] = "; read the shard's record headers instead";

// OK if the last record `index` names reads from `reader` and ends where the shard ends.
absl::Status CheckLastRecord(RecordIndex& index, const RecordReader& reader) {
  if (index.num_records() == 0) return absl::OkStatus();
  std::vector<uint64_t> block;
  HR_RETURN_IF_ERROR(index.ReadBlock(index.num_blocks() - 1, &block));
  const int64_t last = index.num_records() - 1;
  std::string record;
  if (absl::Status s = reader.ReadAt(block.back(), last, &record); !s.ok()) {
    return absl::DataLossError(
        absl::StrCat(index.path(), ": its last record does not read: ", s.message()));
  }
  const uint64_t end = block.back() + record.size() + kRecordOverheadBytes;
  if (end != reader.size()) {
    return absl::DataLossError(absl::StrCat(index.path(), ": its last record (", last,
                                            " at byte offset ", block.back(), ") ends at byte ",
                                            end, ", the shard at ", reader.size()));
  }
  return absl::OkStatus();
}

// The offsets of `path`'s records from its record headers; DataLoss unless there are `expected`.
absl::StatusOr<std::vector<uint64_t>> ScanShard(const std::string& path, int64_t expected) {
  HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader, RecordReader::Open(path));
  HR_ASSIGN_OR_RETURN(std::vector<uint64_t> scanned, reader->IndexRecords());
  if (static_cast<int64_t>(scanned.size()) != expected) {
    return absl::DataLossError(absl::StrCat(path, ": now holds ", scanned.size(), " records, ",
                                            expected,
                                            " when it was opened (changed while being read?)"));
  }
  return scanned;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardOffsets>> ShardOffsets::Open(
    const std::vector<std::string>& files, const std::string& dataset, WarnFn warn) {
  std::unique_ptr<ShardOffsets> table(new ShardOffsets(std::move(warn)));
  std::vector<std::string> missing, unusable;
  table->shards_.reserve(files.size());
  for (const std::string& file : files) {
    absl::Status problem;
    HR_ASSIGN_OR_RETURN(Shard shard, table->OpenShard(file, &problem));
    if (problem.code() == absl::StatusCode::kNotFound) {
      missing.push_back(file);
    } else if (!problem.ok()) {
      unusable.push_back(std::string(problem.message()));
    }
    table->shards_.push_back(std::move(shard));
  }
  if (!missing.empty()) {
    table->Warn(absl::StrCat(
        "loader: ", missing.size(), " of ", files.size(), " shards of '", dataset,
        "' have no index (", RecordIndexPath(missing[0]), missing.size() > 1 ? ", ..." : "",
        "): read every record header instead, keeping 8 bytes per record in memory; `headroom "
        "inspect --write_index SHARD...` writes indexes"));
  }
  for (size_t i = 0; i < std::min(unusable.size(), kMaxNamedIndexes); ++i) {
    table->Warn(absl::StrCat("loader: ", unusable[i], kScanned));
  }
  if (unusable.size() > kMaxNamedIndexes) {
    table->Warn(absl::StrCat("loader: and ", unusable.size() - kMaxNamedIndexes,
                             " more stale or damaged indexes in '", dataset, "'", kScanned));
  }
  return table;
}

absl::StatusOr<ShardOffsets::Shard> ShardOffsets::OpenShard(const std::string& path,
                                                            absl::Status* problem) {
  HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader, RecordReader::Open(path));
  Shard shard;
  shard.path = path;
  absl::StatusOr<std::unique_ptr<RecordIndex>> index = RecordIndex::Open(path, reader->size());
  *problem = index.ok() ? CheckLastRecord(**index, *reader) : index.status();
  if (problem->ok()) {
    (*index)->CloseFile();
    shard.num_records = (*index)->num_records();
    shard.index = std::move(*index);
    return shard;
  }
  HR_ASSIGN_OR_RETURN(shard.scanned, reader->IndexRecords());
  shard.num_records = static_cast<int64_t>(shard.scanned.size());
  return shard;
}

absl::StatusOr<uint64_t> ShardOffsets::Offset(size_t shard, int64_t record) {
  assert(shard < shards_.size() && record >= 0 && record < shards_[shard].num_records);
  std::lock_guard<std::mutex> lock(mu_);
  Shard& s = shards_[shard];
  if (!s.error.ok()) return s.error;
  if (s.index == nullptr) return s.scanned[record];
  const int64_t per_block = s.index->entries_per_block();
  absl::StatusOr<const CachedBlock*> block = Block(shard, record / per_block);
  if (block.ok()) return (*block)->offsets[record % per_block];

  // The index went bad after Open() (a damaged block, the file removed): scan this shard.
  Warn(absl::StrCat("loader: ", block.status().message(), kScanned));
  if (s.index->file_open()) --open_index_files_;
  s.index.reset();
  absl::StatusOr<std::vector<uint64_t>> scanned = ScanShard(s.path, s.num_records);
  if (!scanned.ok()) {
    s.error = scanned.status();  // returned from now on: `scanned` is gone with the index
    return s.error;
  }
  s.scanned = *std::move(scanned);
  return s.scanned[record];
}

absl::StatusOr<const ShardOffsets::CachedBlock*> ShardOffsets::Block(size_t shard, int64_t block) {
  // Consecutive blocks of a shard take consecutive slots; the multiplier spreads the shards.
  const size_t slot =
      (shard * size_t{0x9e3779b97f4a7c15ull} + static_cast<size_t>(block)) % kCachedBlocks;
  CachedBlock& c = cache_[slot];
  if (c.shard == static_cast<int64_t>(shard) && c.block == block) return &c;
  RecordIndex& index = *shards_[shard].index;
  if (!index.file_open() && open_index_files_ >= OpenFilesPerPool()) {
    for (Shard& s : shards_) {
      if (s.index != nullptr) s.index->CloseFile();
    }
    open_index_files_ = 0;
  }
  const bool was_open = index.file_open();
  c.shard = -1;  // empty until the read succeeds
  absl::Status read = index.ReadBlock(block, &c.offsets);
  if (!was_open && index.file_open()) ++open_index_files_;
  HR_RETURN_IF_ERROR(read);
  c.shard = static_cast<int64_t>(shard);
  c.block = block;
  return &c;
}

int64_t ShardOffsets::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t bytes =
      sizeof(*this) + shards_.capacity() * sizeof(Shard) + cache_.capacity() * sizeof(CachedBlock);
  for (const Shard& s : shards_) {
    bytes += s.path.capacity() + s.scanned.capacity() * sizeof(uint64_t);
    if (s.index != nullptr) bytes += sizeof(RecordIndex) + s.index->path().capacity();
  }
  for (const CachedBlock& c : cache_) bytes += c.offsets.capacity() * sizeof(uint64_t);
  return static_cast<int64_t>(bytes);
}

int64_t ShardOffsets::indexed_shards() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::count_if(shards_.begin(), shards_.end(),
                       [](const Shard& s) { return s.index != nullptr; });
}

void ShardOffsets::Warn(const std::string& line) const {
  if (warn_) warn_(line);
}

}  // namespace headroom
