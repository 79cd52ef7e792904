// ShardedLoader; see sharded_loader.h for the data order and its guarantees.
#include "data/sharded_loader.h"

#include <glob.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstdio>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/splitmix.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "data/record_index.h"

namespace headroom {
namespace {

// The default LoaderOptions::warn: several loaders open the same files in one process (the
// trainer checks the shards with one before training with another), so a line is printed once.
void PrintOncePerProcess(const std::string& line) {
  static std::mutex mu;
  static std::set<std::string>* printed = new std::set<std::string>;
  std::lock_guard<std::mutex> lock(mu);
  if (!printed->insert(line).second) return;
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// SplitMix64's finaliser: a cheap, well-mixing 64-bit hash (Steele et al. 2014), the first
// output of a generator seeded with x.
uint64_t Mix(uint64_t x) { return SplitMix{x}.Next(); }

}  // namespace

uint64_t ShuffledIndex(uint64_t i, uint64_t n, uint64_t seed, int64_t epoch) {
  assert(i < n);
  // A balanced Feistel network on 2h-bit numbers is a bijection of [0, 4^h) whatever its round
  // function; applying it repeatedly until the value falls below n ("cycle walking") restricts it
  // to a bijection of [0, n). 4^h < 4n, so under 4 applications are needed on average. Six
  // rounds of a 64-bit hash make the order statistically unremarkable for data shuffling.
  int bits = std::max(2, static_cast<int>(std::bit_width(n - 1)));
  int half = (bits + 1) / 2;
  uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t key = Mix(seed ^ Mix(static_cast<uint64_t>(epoch)));
  uint64_t x = i;
  do {
    uint64_t left = x >> half, right = x & mask;
    for (uint64_t round = 0; round < 6; ++round) {
      uint64_t f = Mix(right ^ key ^ (round << 58)) & mask;
      uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half) | right;
  } while (x >= n);
  return x;
}

absl::StatusOr<std::vector<std::string>> ExpandFileGlobs(const std::string& patterns) {
  std::set<std::string> files;
  for (absl::string_view p : absl::StrSplit(patterns, ',', absl::SkipWhitespace())) {
    std::string pattern(absl::StripAsciiWhitespace(p));
    glob_t g;
    int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) files.insert(g.gl_pathv[i]);
    }
    ::globfree(&g);
    if (rc == GLOB_NOMATCH) {
      return absl::NotFoundError(absl::StrCat("no shard files match '", pattern, "'"));
    }
    if (rc != 0) return absl::InternalError(absl::StrCat("cannot expand '", pattern, "'"));
  }
  if (files.empty()) return absl::InvalidArgumentError("no shard files given (empty pattern)");
  return WithoutRecordIndexes(std::vector<std::string>(files.begin(), files.end()));
}

absl::Span<const int32_t> LoaderBatch::Int32(const std::string& name) const {
  auto it = int32_features.find(name);
  assert(it != int32_features.end());
  return it->second;
}

absl::Span<const float> LoaderBatch::Float(const std::string& name) const {
  auto it = float_features.find(name);
  assert(it != float_features.end());
  return it->second;
}

absl::StatusOr<std::unique_ptr<ShardedLoader>> ShardedLoader::Open(const LoaderOptions& options) {
  std::unique_ptr<ShardedLoader> loader(new ShardedLoader(options));
  HR_RETURN_IF_ERROR(loader->Init());
  loader->StartThread();
  return loader;
}

ShardedLoader::ShardedLoader(const LoaderOptions& options) : options_(options) {}

ShardedLoader::~ShardedLoader() { StopThread(); }

absl::Status ShardedLoader::Init() {
  const LoaderOptions& o = options_;
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (o.num_ranks < 1 || o.rank < 0 || o.rank >= o.num_ranks) {
    return bad("loader: rank ", o.rank, " of ", o.num_ranks, " ranks is not a valid rank");
  }
  if (o.global_batch_size < 1 || o.global_batch_size % o.num_ranks != 0) {
    return bad("loader: global batch size ", o.global_batch_size,
               " must be a positive multiple of the number of ranks (", o.num_ranks, ")");
  }
  if (o.features.empty()) return bad("loader: no features requested");
  if (o.prefetch < 0 || o.num_epochs < 0) return bad("loader: negative prefetch or num_epochs");
  std::set<std::string> names;
  for (const LoaderFeature& f : o.features) {
    if (f.name.empty() || f.length < 1 || !names.insert(f.name).second) {
      return bad("loader: feature '", f.name, "' needs a unique non-empty name and length >= 1");
    }
  }
  for (const std::string& id : o.id_features) {
    auto it = std::find_if(o.features.begin(), o.features.end(),
                           [&](const LoaderFeature& f) { return f.name == id; });
    if (it == o.features.end() || it->type != LoaderFeature::kInt32) {
      return bad("loader: id feature '", id, "' is not one of the requested int32 features");
    }
  }
  local_batch_ = o.global_batch_size / o.num_ranks;

  HR_ASSIGN_OR_RETURN(files_, ExpandFileGlobs(o.files));
  ShardOffsets::WarnFn warn = o.warn;
  if (!warn && o.rank == 0) warn = PrintOncePerProcess;
  HR_ASSIGN_OR_RETURN(offsets_, ShardOffsets::Open(files_, o.files, std::move(warn)));
  shard_starts_.push_back(0);
  for (size_t f = 0; f < files_.size(); ++f) {
    shard_starts_.push_back(shard_starts_.back() + offsets_->num_records(f));
    readers_.push_back(nullptr);
  }
  if (num_examples() < o.global_batch_size) {
    return bad("loader: '", o.files, "' holds ", num_examples(), " examples in ", files_.size(),
               " files, fewer than one global batch of ", o.global_batch_size);
  }
  steps_per_epoch_ = num_examples() / o.global_batch_size;

  // The first record of each shard, so that a shard written for another model or vocabulary
  // fails now rather than hours into training.
  LoaderBatch probe;
  probe.size = 1;
  std::string scratch;
  tf::Example example;
  for (size_t f = 0; f < files_.size(); ++f) {
    if (offsets_->num_records(f) == 0) continue;
    probe.int32_features.clear();
    probe.float_features.clear();
    HR_RETURN_IF_ERROR(FillRow(shard_starts_[f], 0, &probe, &scratch, &example));
  }
  return absl::OkStatus();
}

size_t ShardedLoader::FileOf(int64_t id) const {
  assert(id >= 0 && id < num_examples());
  // The last file whose first example id is <= id (an empty file shares its successor's start).
  return std::upper_bound(shard_starts_.begin(), shard_starts_.end(), id) - shard_starts_.begin() -
         1;
}

RecordLocation ShardedLoader::Locate(int64_t id) const {
  size_t f = FileOf(id);
  int64_t record = id - shard_starts_[f];
  absl::StatusOr<uint64_t> offset = offsets_->Offset(f, record);
  return RecordLocation{files_[f], record, offset.ok() ? *offset : 0};
}

absl::Status ShardedLoader::FillRow(int64_t id, int64_t row, LoaderBatch* batch,
                                    std::string* scratch, tf::Example* example) {
  size_t f = FileOf(id);
  RecordLocation where{files_[f], id - shard_starts_[f], 0};
  HR_ASSIGN_OR_RETURN(where.offset, offsets_->Offset(f, where.record));
  if (readers_[f] == nullptr) {
    // Shards are opened lazily and kept open; past OpenFilesPerPool() open files all are closed
    // before the next is opened, which keeps a loader under the process's descriptor limit with
    // any shard count.
    if (open_readers_ >= OpenFilesPerPool()) {
      for (auto& r : readers_) r.reset();
      open_readers_ = 0;
    }
    HR_ASSIGN_OR_RETURN(readers_[f], RecordReader::Open(files_[f]));
    ++open_readers_;
  }
  HR_RETURN_IF_ERROR(readers_[f]->ReadAt(where.offset, where.record, scratch));
  HR_RETURN_IF_ERROR(ParseExample(*scratch, where, example));

  for (const LoaderFeature& spec : options_.features) {
    const size_t len = static_cast<size_t>(spec.length);
    auto check_count = [&](size_t count) -> absl::Status {
      if (count == len || (spec.pad && count < len)) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(where.ToString(), ": feature '", spec.name,
                                                     "' has ", count, " values, expected ",
                                                     spec.pad ? "at most " : "", len));
    };
    if (spec.type == LoaderFeature::kFloat) {
      HR_ASSIGN_OR_RETURN(absl::Span<const float> values,
                          GetFloatFeature(*example, spec.name, where));
      HR_RETURN_IF_ERROR(check_count(values.size()));
      std::vector<float>& out = batch->float_features[spec.name];
      out.resize(static_cast<size_t>(batch->size) * len);
      std::fill(std::copy(values.begin(), values.end(), out.begin() + row * len),
                out.begin() + (row + 1) * len, 0.0f);
      continue;
    }
    HR_ASSIGN_OR_RETURN(absl::Span<const int64_t> values,
                        GetInt64Feature(*example, spec.name, where));
    HR_RETURN_IF_ERROR(check_count(values.size()));
    const bool is_id = options_.vocab_size > 0 &&
                       std::find(options_.id_features.begin(), options_.id_features.end(),
                                 spec.name) != options_.id_features.end();
    int64_t lo = is_id ? 0 : std::numeric_limits<int32_t>::min();
    int64_t hi = is_id ? options_.vocab_size - 1 : std::numeric_limits<int32_t>::max();
    std::vector<int32_t>& out = batch->int32_features[spec.name];
    out.resize(static_cast<size_t>(batch->size) * len);
    int32_t* dst = out.data() + row * len;
    for (size_t i = 0; i < values.size(); ++i) {
      if (values[i] < lo || values[i] > hi) {
        return absl::InvalidArgumentError(absl::StrCat(
            where.ToString(), ": feature '", spec.name, "' value ", values[i], " at position ", i,
            is_id ? absl::StrCat(" is not a token id of the vocabulary of ", options_.vocab_size,
                                 " (wrong vocab file for these shards?)")
                  : " does not fit in int32"));
      }
      dst[i] = static_cast<int32_t>(values[i]);
    }
    std::fill(dst + values.size(), dst + len, 0);
  }
  return absl::OkStatus();
}

absl::StatusOr<LoaderBatch> ShardedLoader::BuildBatch(Position pos) {
  LoaderBatch batch;
  batch.epoch = pos.epoch;
  batch.step = pos.step;
  batch.size = local_batch_;
  const uint64_t n = static_cast<uint64_t>(num_examples());
  const uint64_t first =
      static_cast<uint64_t>(pos.step * options_.global_batch_size + options_.rank * local_batch_);
  std::string scratch;
  tf::Example example;
  for (int64_t row = 0; row < local_batch_; ++row) {
    uint64_t i = first + static_cast<uint64_t>(row);
    int64_t id =
        static_cast<int64_t>(options_.shuffle ? ShuffledIndex(i, n, options_.seed, pos.epoch) : i);
    batch.example_ids.push_back(id);
    HR_RETURN_IF_ERROR(FillRow(id, row, &batch, &scratch, &example));
  }
  return batch;
}

ShardedLoader::Position ShardedLoader::Advance(Position pos) const {
  if (++pos.step == steps_per_epoch_) {
    pos.step = 0;
    ++pos.epoch;
  }
  return pos;
}

absl::StatusOr<LoaderBatch> ShardedLoader::Next() {
  if (!sticky_.ok()) return sticky_;
  if (options_.num_epochs > 0 && consumed_.epoch >= options_.num_epochs) {
    return absl::OutOfRangeError(
        absl::StrCat("loader: all ", options_.num_epochs, " epochs have been read"));
  }
  absl::StatusOr<LoaderBatch> batch;
  if (options_.prefetch == 0) {
    batch = BuildBatch(consumed_);
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !queue_.empty(); });
    batch = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
  }
  if (!batch.ok()) {
    sticky_ = batch.status();
    return sticky_;
  }
  consumed_ = Advance(consumed_);
  return batch;
}

void ShardedLoader::ProducerLoop() {
  while (true) {
    Position pos;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock,
               [this] { return stop_ || queue_.size() < static_cast<size_t>(options_.prefetch); });
      if (stop_) return;
      pos = produce_;
    }
    // Past the last epoch there is nothing to build; Next() stops before reaching here.
    if (options_.num_epochs > 0 && pos.epoch >= options_.num_epochs) return;
    absl::StatusOr<LoaderBatch> batch = BuildBatch(pos);
    bool failed = !batch.ok();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      queue_.push_back(std::move(batch));
      produce_ = Advance(pos);
    }
    cv_.notify_all();
    if (failed) return;  // the error is delivered; nothing after it would be
  }
}

void ShardedLoader::StartThread() {
  if (options_.prefetch == 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    queue_.clear();
    produce_ = consumed_;
  }
  thread_ = std::thread([this] { ProducerLoop(); });
}

void ShardedLoader::StopThread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

LoaderState ShardedLoader::State() const {
  LoaderState s;
  s.set_epoch(consumed_.epoch);
  s.set_step(consumed_.step);
  s.set_seed(options_.seed);
  s.set_num_examples(num_examples());
  s.set_global_batch_size(options_.global_batch_size);
  s.set_shuffle(options_.shuffle);
  return s;
}

absl::Status ShardedLoader::Restore(const LoaderState& s) {
  auto mismatch = [](const char* what, auto saved, auto now) {
    return absl::FailedPreconditionError(
        absl::StrCat("loader: cannot resume: the saved data position was made with ", what, " ",
                     saved, ", this run has ", now,
                     "; resuming would train on other examples than the checkpoint expects"));
  };
  if (s.seed() != options_.seed) return mismatch("seed", s.seed(), options_.seed);
  if (s.num_examples() != num_examples()) {
    return mismatch("a number of examples of", s.num_examples(), num_examples());
  }
  if (s.global_batch_size() != options_.global_batch_size) {
    return mismatch("global batch size", s.global_batch_size(), options_.global_batch_size);
  }
  if (s.shuffle() != options_.shuffle) return mismatch("shuffle", s.shuffle(), options_.shuffle);
  if (s.epoch() < 0 || s.step() < 0 || s.step() >= steps_per_epoch_) {
    return absl::InvalidArgumentError(absl::StrCat("loader: saved position epoch ", s.epoch(),
                                                   " step ", s.step(), " is out of range (",
                                                   steps_per_epoch_, " steps per epoch)"));
  }
  StopThread();
  consumed_ = Position{s.epoch(), s.step()};
  sticky_ = absl::OkStatus();
  StartThread();
  return absl::OkStatus();
}

}  // namespace headroom
