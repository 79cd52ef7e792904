// ShardedLoader: fixed-shape training batches from a glob of record shards, split over ranks,
// shuffled per epoch, prefetched by a background thread, resumable exactly.
//
// The data order is global and independent of the number of ranks R:
//   - The examples of all shards (files sorted by name, records in file order) are numbered
//     0..N-1 ("example ids").
//   - Epoch e visits them in a pseudo-random permutation P_e of [0, N) fixed by (seed, e) alone
//     (identity when shuffle is off). It is a keyed Feistel network over [0, N) (cycle-walking),
//     so P_e(i) costs O(1) time and no memory, the same on every rank and every platform.
//   - Global batch t of epoch e is P_e(t*G) .. P_e(t*G + G-1), G = global_batch_size; an epoch
//     has floor(N / G) batches (the last N mod G positions are skipped that epoch; the next
//     epoch's permutation puts other examples there).
//   - Rank r takes the r-th contiguous slice of G/R examples of each global batch.
// So 1 rank and 4 ranks train on identical global batches, the R ranks together read each
// example of an epoch at most once (exactly once when G divides N), and the position
// (epoch, step) is the whole state: a checkpoint taken with R ranks resumes with any other R.
//
// Opening reads each shard's record count from its index (`<shard>.index`, written beside every
// shard by RecordWriter; data/record_index_format.h), and the index blocks that locate records
// are read when a batch needs them (data/shard_offsets.h): O(shards) start-up time and memory per
// rank, plus a 2.2 MiB cache, whatever the number of examples. A shard without a usable index
// (made elsewhere, or its index stale or damaged) is scanned as before, reading every record
// header and keeping 8 bytes per record (100M examples ~ 0.8 GB per rank), with a line saying
// so; the offsets, hence the example numbering and every batch, are the same either way.
// Opening also checks the first record of each shard against the feature specs, so a shard made
// for another model fails at once. Every example is checked when
// its batch is built: a missing feature, one of the wrong kind or length, an id outside
// [0, vocab_size), or a damaged record is an error naming file, record index, byte offset and
// feature, returned by Next().
//
// Example (BERT, rank r of R):
//   LoaderOptions o;
//   o.files = "shards/train-*";
//   o.features = {{"input_ids", LoaderFeature::kInt32, 128}, {"input_mask", ..., 128}, ...,
//                 {"masked_lm_weights", LoaderFeature::kFloat, 20}};
//   o.vocab_size = 30522;
//   o.id_features = {"input_ids", "masked_lm_ids"};
//   o.global_batch_size = 256;  o.rank = r;  o.num_ranks = R;  o.seed = 12345;
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<ShardedLoader> loader, ShardedLoader::Open(o));
//   if (resuming) HR_RETURN_IF_ERROR(loader->Restore(saved_state));
//   while (training) {
//     HR_ASSIGN_OR_RETURN(LoaderBatch b, loader->Next());
//     absl::Span<const int32_t> ids = b.Int32("input_ids");  // [256 / R, 128], row-major
//     ...
//     if (checkpointing) save loader->State();  // the position after the last Next()
//   }
//
// Thread-safety: one thread calls a loader's methods; the prefetch thread is internal.
#ifndef HEADROOM_DATA_SHARDED_LOADER_H_
#define HEADROOM_DATA_SHARDED_LOADER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data/example_io.h"
#include "data/loader_state.pb.h"
#include "data/record_reader.h"
#include "data/shard_offsets.h"

namespace headroom {

// One feature of every example, delivered as a flat [batch, length] array.
struct LoaderFeature {
  enum Type {
    kInt32,  // from an int64_list; values must fit in int32
    kFloat,  // from a float_list
  };
  std::string name;
  Type type = kInt32;
  int length = 0;  // values per example
  // If true, an example may hold fewer than `length` values; the rest of its row is 0 (LM
  // `targets` of variable length). More than `length` values is always an error.
  bool pad = false;
};

struct LoaderOptions {
  // Shard files: a glob, or a comma-separated list of globs (as Google BERT's --input_file).
  // The matches are sorted by name and de-duplicated; no match is NotFound.
  std::string files;
  std::vector<LoaderFeature> features;
  // If > 0, every value of each feature named in `id_features` (kInt32 ones) must be in
  // [0, vocab_size).
  int64_t vocab_size = 0;
  std::vector<std::string> id_features;
  // Examples per global batch (all ranks together); must be a multiple of num_ranks.
  int64_t global_batch_size = 0;
  int rank = 0;
  int num_ranks = 1;
  bool shuffle = true;
  uint64_t seed = 0;
  // Next() returns OutOfRange after this many epochs; 0 means never.
  int64_t num_epochs = 0;
  // Batches the background thread prepares ahead; 0 builds each batch inside Next().
  int prefetch = 2;
  // Receives each line about shards read without a usable index (ShardOffsets::Open). Unset:
  // rank 0 prints them on stderr, each distinct line once per process.
  std::function<void(const std::string& line)> warn;
};

// One rank's share of a global batch.
struct LoaderBatch {
  int64_t epoch = 0;
  int64_t step = 0;  // index of the global batch within its epoch
  int64_t size = 0;  // examples in this batch: global_batch_size / num_ranks
  // Example id (see the file comment) of each row.
  std::vector<int64_t> example_ids;
  // Feature name -> values, row-major [size, feature length].
  std::map<std::string, std::vector<int32_t>> int32_features;
  std::map<std::string, std::vector<float>> float_features;

  // The values of a feature declared in LoaderOptions (asserts that it exists and has the type).
  absl::Span<const int32_t> Int32(const std::string& name) const;
  absl::Span<const float> Float(const std::string& name) const;
};

class ShardedLoader {
 public:
  // Expands the globs, indexes the shards, checks the options and the first record of each
  // shard, and starts the prefetch thread at epoch 0, step 0. InvalidArgument for bad options
  // (e.g. global_batch_size not a multiple of num_ranks, fewer examples than one global batch),
  // NotFound when nothing matches, DataLoss / InvalidArgument / NotFound naming file, record
  // and feature for a bad shard.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ShardedLoader>> Open(
      const LoaderOptions& options);

  // Stops and joins the prefetch thread.
  ~ShardedLoader();
  ShardedLoader(const ShardedLoader&) = delete;
  ShardedLoader& operator=(const ShardedLoader&) = delete;

  // Returns this rank's share of the next global batch. OutOfRange after num_epochs epochs;
  // a data error (see the file comment) is returned once reached and by every later call.
  [[nodiscard]] absl::StatusOr<LoaderBatch> Next();

  // The position of the batch the next Next() returns, with what it depends on (seed, number of
  // examples, global batch size, shuffle). Save it with a checkpoint.
  LoaderState State() const;

  // Continues from `state`: the next Next() returns the batch State() named when it was saved.
  // FailedPrecondition if the state was made with another seed, global batch size or shuffle
  // setting, or for shards holding another number of examples. The rank count may differ.
  [[nodiscard]] absl::Status Restore(const LoaderState& state);

  int64_t num_examples() const { return shard_starts_.back(); }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  const std::vector<std::string>& files() const { return files_; }
  // The file, record index and byte offset of example `id` (0 <= id < num_examples()). The
  // offset may need a read of the shard's index; if that fails, offset is 0 and Next() returns
  // the error when it reaches the example.
  RecordLocation Locate(int64_t id) const;
  // Bytes held to locate records: see ShardOffsets::memory_bytes().
  int64_t offset_memory_bytes() const { return offsets_->memory_bytes(); }
  // Shards located through their index (the others were scanned at Open()).
  int64_t indexed_shards() const { return offsets_->indexed_shards(); }

 private:
  struct Position {
    int64_t epoch = 0;
    int64_t step = 0;
  };

  explicit ShardedLoader(const LoaderOptions& options);
  absl::Status Init();
  size_t FileOf(int64_t id) const;  // index into files_ of example `id`
  absl::Status CheckExample(const tf::Example& example, const RecordLocation& where) const;
  // Copies the features of example `id` into row `row` of `*batch`.
  absl::Status FillRow(int64_t id, int64_t row, LoaderBatch* batch, std::string* scratch,
                       tf::Example* example);
  absl::StatusOr<LoaderBatch> BuildBatch(Position pos);
  Position Advance(Position pos) const;
  void StartThread();
  void StopThread();
  void ProducerLoop();

  LoaderOptions options_;
  std::vector<std::string> files_;
  std::unique_ptr<ShardOffsets> offsets_;  // where each record of each file starts
  std::vector<int64_t> shard_starts_;      // example id of each file's first record; N last
  std::vector<std::unique_ptr<RecordReader>> readers_;  // per file, opened when first needed
  size_t open_readers_ = 0;                             // non-null entries of readers_
  int64_t steps_per_epoch_ = 0;
  int64_t local_batch_ = 0;

  Position consumed_;    // position of the batch the next Next() returns
  absl::Status sticky_;  // a data error, returned by every Next() once reached

  // Prefetch: the thread builds batches from produce_ onwards into queue_.
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::StatusOr<LoaderBatch>> queue_;  // guarded by mu_
  Position produce_;                               // guarded by mu_
  bool stop_ = false;                              // guarded by mu_
};

// The position of index `i` of epoch `epoch`'s permutation of [0, n) for `seed`: a bijection of
// [0, n) for every (seed, epoch). Exposed for tests.
uint64_t ShuffledIndex(uint64_t i, uint64_t n, uint64_t seed, int64_t epoch);

// The files matching `patterns` (comma-separated globs), sorted, without duplicates, and without
// the shards' indexes (a match "X.index" where X matches too). NotFound naming the pattern when
// one of them matches nothing.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ExpandFileGlobs(const std::string& patterns);

}  // namespace headroom

#endif  // HEADROOM_DATA_SHARDED_LOADER_H_
