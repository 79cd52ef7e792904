// ShardedLoader: ranks together read each example of an epoch once, the global batch at a step
// does not depend on the number of ranks, a saved position resumes exactly (with any rank count),
// and bad shards fail naming file, record and feature. Examples are identified by their contents
// (input_ids[0] == u for example u), independently of the loader's own bookkeeping.
#include "data/sharded_loader.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "data/record_reader.h"
#include "data/record_writer.h"
#include "gtest/gtest.h"
#include "tests/data/record_test_util.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;
using testing::TestDir;

// Example u: input_ids {u, u+1, u+2, u+3}, label {u + 0.5}.
tf::Example MakeExample(int64_t u) {
  tf::Example e;
  SetInt64Feature(&e, "input_ids", {u, u + 1, u + 2, u + 3});
  SetFloatFeature(&e, "label", {static_cast<float>(u) + 0.5f});
  return e;
}

void WriteShard(const std::string& path, const std::vector<tf::Example>& examples) {
  auto w = RecordWriter::Create(path);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const auto& e : examples) ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
  ASSERT_TRUE((*w)->Close().ok());
}

constexpr int64_t kExamples = 36;

// Shards b (examples 0..9), c (empty), d (10..35); a decoy file that the glob does not match.
std::string WriteCorpus() {
  std::string dir = TestDir();
  std::vector<tf::Example> first, rest;
  for (int64_t u = 0; u < 10; ++u) first.push_back(MakeExample(u));
  for (int64_t u = 10; u < kExamples; ++u) rest.push_back(MakeExample(u));
  // Written out of name order: the loader sorts.
  WriteShard(dir + "/train-d", rest);
  WriteShard(dir + "/train-b", first);
  WriteShard(dir + "/train-c", {});
  WriteShard(dir + "/other", {MakeExample(99)});
  return dir;
}

LoaderOptions Options(const std::string& dir) {
  LoaderOptions o;
  o.files = dir + "/train-*";
  o.features = {{"input_ids", LoaderFeature::kInt32, 4}, {"label", LoaderFeature::kFloat, 1}};
  o.vocab_size = 100;
  o.id_features = {"input_ids"};
  o.global_batch_size = 6;
  o.seed = 7;
  return o;
}

// The example (by contents) of each row of `b`, checking that the row is well formed.
std::vector<int64_t> Contents(const LoaderBatch& b) {
  std::vector<int64_t> us;
  absl::Span<const int32_t> ids = b.Int32("input_ids");
  absl::Span<const float> label = b.Float("label");
  EXPECT_EQ(ids.size(), static_cast<size_t>(b.size) * 4);
  EXPECT_EQ(label.size(), static_cast<size_t>(b.size));
  for (int64_t r = 0; r < b.size; ++r) {
    int32_t u = ids[r * 4];
    for (int j = 1; j < 4; ++j) EXPECT_EQ(ids[r * 4 + j], u + j);
    EXPECT_EQ(label[r], u + 0.5f);
    us.push_back(u);
  }
  return us;
}

// For R ranks: [step][rank's rows concatenated in rank order] for `steps` steps, optionally from
// a saved state.
std::vector<std::vector<int64_t>> GlobalBatches(LoaderOptions o, int ranks, int steps,
                                                const LoaderState* from = nullptr) {
  std::vector<std::vector<int64_t>> out(steps);
  for (int r = 0; r < ranks; ++r) {
    o.rank = r;
    o.num_ranks = ranks;
    auto loader = ShardedLoader::Open(o);
    EXPECT_TRUE(loader.ok()) << loader.status();
    if (!loader.ok()) return {};
    if (from != nullptr) {
      EXPECT_TRUE((*loader)->Restore(*from).ok());
    }
    for (int t = 0; t < steps; ++t) {
      absl::StatusOr<LoaderBatch> b = (*loader)->Next();
      EXPECT_TRUE(b.ok()) << b.status();
      if (!b.ok()) return {};
      EXPECT_EQ(b->size, o.global_batch_size / ranks);
      std::vector<int64_t> us = Contents(*b);
      out[t].insert(out[t].end(), us.begin(), us.end());
    }
  }
  return out;
}

TEST(ShardedLoaderTest, IndexesSortedShardsMatchingTheGlob) {
  std::string dir = WriteCorpus();
  auto loader = ShardedLoader::Open(Options(dir));
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->num_examples(), kExamples);
  EXPECT_EQ((*loader)->steps_per_epoch(), 6);
  EXPECT_EQ((*loader)->files(),
            (std::vector<std::string>{dir + "/train-b", dir + "/train-c", dir + "/train-d"}));
  RecordLocation where = (*loader)->Locate(12);
  EXPECT_EQ(where.file, dir + "/train-d");
  EXPECT_EQ(where.record, 2);
}

TEST(ShardedLoaderTest, RanksTogetherReadEachExampleOfAnEpochOnce) {
  std::string dir = WriteCorpus();
  for (int ranks : {1, 2, 3}) {
    std::vector<std::vector<int64_t>> batches = GlobalBatches(Options(dir), ranks, 12);
    ASSERT_EQ(batches.size(), 12u);
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::vector<int64_t> seen;
      for (int t = 0; t < 6; ++t) {
        seen.insert(seen.end(), batches[epoch * 6 + t].begin(), batches[epoch * 6 + t].end());
      }
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> all(kExamples);
      for (int64_t u = 0; u < kExamples; ++u) all[u] = u;
      EXPECT_EQ(seen, all) << ranks << " ranks, epoch " << epoch;
    }
  }
}

TEST(ShardedLoaderTest, GlobalBatchAtEachStepIsIndependentOfRankCount) {
  std::string dir = WriteCorpus();
  std::vector<std::vector<int64_t>> one = GlobalBatches(Options(dir), 1, 14);
  EXPECT_EQ(GlobalBatches(Options(dir), 2, 14), one);
  EXPECT_EQ(GlobalBatches(Options(dir), 3, 14), one);
  // And it is shuffled: not the file order, and another order in the next epoch.
  std::vector<int64_t> first_epoch, second_epoch;
  for (int t = 0; t < 6; ++t) {
    first_epoch.insert(first_epoch.end(), one[t].begin(), one[t].end());
    second_epoch.insert(second_epoch.end(), one[6 + t].begin(), one[6 + t].end());
  }
  EXPECT_FALSE(std::is_sorted(first_epoch.begin(), first_epoch.end()));
  EXPECT_NE(first_epoch, second_epoch);
}

TEST(ShardedLoaderTest, SameSeedSameOrderOtherSeedOtherOrder) {
  std::string dir = WriteCorpus();
  LoaderOptions o = Options(dir);
  std::vector<std::vector<int64_t>> a = GlobalBatches(o, 1, 6);
  o.prefetch = 0;  // synchronous reads give the same batches
  EXPECT_EQ(GlobalBatches(o, 1, 6), a);
  o.seed = 8;
  EXPECT_NE(GlobalBatches(o, 1, 6), a);
}

TEST(ShardedLoaderTest, WithoutShuffleBatchesFollowFileOrder) {
  LoaderOptions o = Options(WriteCorpus());
  o.shuffle = false;
  std::vector<std::vector<int64_t>> batches = GlobalBatches(o, 2, 7);
  for (int t = 0; t < 7; ++t) {
    std::vector<int64_t> expected;
    for (int64_t u = (t % 6) * 6; u < (t % 6) * 6 + 6; ++u) expected.push_back(u);
    EXPECT_EQ(batches[t], expected) << "step " << t;
  }
}

TEST(ShardedLoaderTest, SavedStateResumesExactlyWithAnyRankCount) {
  std::string dir = WriteCorpus();
  LoaderOptions o = Options(dir);
  auto loader = ShardedLoader::Open(o);
  ASSERT_TRUE(loader.ok());
  for (int t = 0; t < 4; ++t) ASSERT_TRUE((*loader)->Next().ok());
  // Through its serialized form, as a checkpoint stores it.
  LoaderState saved;
  ASSERT_TRUE(saved.ParseFromString((*loader)->State().SerializeAsString()));
  EXPECT_EQ(saved.epoch(), 0);
  EXPECT_EQ(saved.step(), 4);
  std::vector<std::vector<int64_t>> continued(10);
  for (int t = 0; t < 10; ++t) {  // crosses into epoch 1
    absl::StatusOr<LoaderBatch> b = (*loader)->Next();
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b->epoch, (4 + t) / 6);
    EXPECT_EQ(b->step, (4 + t) % 6);
    continued[t] = Contents(*b);
  }
  EXPECT_EQ(GlobalBatches(o, 1, 10, &saved), continued);
  EXPECT_EQ(GlobalBatches(o, 3, 10, &saved), continued);
  // Restoring a loader whose prefetch thread has run ahead discards what it prefetched.
  ASSERT_TRUE((*loader)->Restore(saved).ok());
  for (int t = 0; t < 10; ++t) {
    absl::StatusOr<LoaderBatch> b = (*loader)->Next();
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(Contents(*b), continued[t]);
  }
}

TEST(ShardedLoaderTest, RestoreRefusesAStateOfAnotherSetup) {
  LoaderOptions o = Options(WriteCorpus());
  auto loader = ShardedLoader::Open(o);
  ASSERT_TRUE(loader.ok());
  LoaderState s = (*loader)->State();
  s.set_seed(8);
  EXPECT_EQ((*loader)->Restore(s).code(), absl::StatusCode::kFailedPrecondition);
  s = (*loader)->State();
  s.set_num_examples(35);
  absl::Status st = (*loader)->Restore(s);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("35"), absl::string_view::npos) << st;
  s = (*loader)->State();
  s.set_step(6);
  EXPECT_EQ((*loader)->Restore(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ShardedLoaderTest, StopsAfterNumEpochs) {
  LoaderOptions o = Options(WriteCorpus());
  o.num_epochs = 2;
  auto loader = ShardedLoader::Open(o);
  ASSERT_TRUE(loader.ok());
  for (int t = 0; t < 12; ++t) ASSERT_TRUE((*loader)->Next().ok()) << t;
  EXPECT_EQ((*loader)->Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST(ShardedLoaderTest, ShortFeaturesArePaddedWithZerosWhenAllowed) {
  std::string dir = TestDir();
  std::vector<tf::Example> examples;
  for (int64_t u = 0; u < 4; ++u) {
    tf::Example e;
    std::vector<int64_t> targets(u + 1, 9);
    SetInt64Feature(&e, "targets", targets);
    examples.push_back(e);
  }
  WriteShard(dir + "/lm", examples);
  LoaderOptions o;
  o.files = dir + "/lm";
  o.features = {{"targets", LoaderFeature::kInt32, 4, /*pad=*/true}};
  o.global_batch_size = 4;
  o.shuffle = false;
  auto loader = ShardedLoader::Open(o);
  ASSERT_TRUE(loader.ok()) << loader.status();
  absl::StatusOr<LoaderBatch> b = (*loader)->Next();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(std::vector<int32_t>(b->Int32("targets").begin(), b->Int32("targets").end()),
            (std::vector<int32_t>{9, 0, 0, 0, 9, 9, 0, 0, 9, 9, 9, 0, 9, 9, 9, 9}));
}

TEST(ShardedLoaderTest, ShuffledIndexIsAPermutationForEverySize) {
  for (uint64_t n = 1; n <= 130; ++n) {
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      std::set<uint64_t> seen;
      for (uint64_t i = 0; i < n; ++i) seen.insert(ShuffledIndex(i, n, 42, epoch));
      ASSERT_EQ(seen.size(), n) << n;
      ASSERT_LT(*seen.rbegin(), n);
    }
  }
}

// A corpus of 12 good examples in `good` and one shard `bad` whose record `bad_index` is `bad`.
struct BadCorpus {
  std::string dir, bad_path;
};
BadCorpus WriteBadCorpus(int bad_index, const tf::Example& bad) {
  BadCorpus c{TestDir(), ""};
  std::vector<tf::Example> good, mixed;
  for (int64_t u = 0; u < 12; ++u) good.push_back(MakeExample(u));
  for (int64_t u = 12; u < 24; ++u) mixed.push_back(u - 12 == bad_index ? bad : MakeExample(u));
  WriteShard(c.dir + "/train-0", good);
  c.bad_path = c.dir + "/train-1";
  WriteShard(c.bad_path, mixed);
  return c;
}

// Reads (no shuffle) until an error; returns it.
absl::Status FirstError(const LoaderOptions& o) {
  auto loader = ShardedLoader::Open(o);
  if (!loader.ok()) return loader.status();
  for (int t = 0; t < 10; ++t) {
    absl::StatusOr<LoaderBatch> b = (*loader)->Next();
    if (!b.ok()) return b.status();
  }
  return absl::OkStatus();
}

void ExpectMentions(const absl::Status& s, const std::vector<std::string>& parts) {
  EXPECT_FALSE(s.ok());
  for (const std::string& p : parts) {
    EXPECT_NE(s.message().find(p), absl::string_view::npos) << "'" << p << "' not in: " << s;
  }
}

TEST(ShardedLoaderBadShardTest, MissingFeatureInFirstRecordFailsAtOpen) {
  tf::Example e;
  SetInt64Feature(&e, "input_ids", {1, 2, 3, 4});
  BadCorpus c = WriteBadCorpus(0, e);
  LoaderOptions o = Options(c.dir);
  auto loader = ShardedLoader::Open(o);
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), absl::StatusCode::kNotFound);
  ExpectMentions(loader.status(), {c.bad_path + ": record 0 at byte offset 0", "'label' missing"});
}

TEST(ShardedLoaderBadShardTest, MissingFeatureLaterFailsWhenReached) {
  tf::Example e;
  SetInt64Feature(&e, "input_ids", {1, 2, 3, 4});
  BadCorpus c = WriteBadCorpus(5, e);
  LoaderOptions o = Options(c.dir);
  o.shuffle = false;
  ExpectMentions(FirstError(o), {c.bad_path + ": record 5 at byte offset", "'label' missing"});
  o.shuffle = true;  // reached in some batch of the first epoch, with prefetch or without
  ExpectMentions(FirstError(o), {c.bad_path + ": record 5 at byte offset", "'label' missing"});
  o.prefetch = 0;
  ExpectMentions(FirstError(o), {c.bad_path + ": record 5 at byte offset", "'label' missing"});
}

TEST(ShardedLoaderBadShardTest, WrongLengthNamesCounts) {
  tf::Example e = MakeExample(12);
  SetInt64Feature(&e, "input_ids", {1, 2, 3});
  BadCorpus c = WriteBadCorpus(3, e);
  LoaderOptions o = Options(c.dir);
  o.shuffle = false;
  ExpectMentions(FirstError(o), {c.bad_path + ": record 3 at byte offset",
                                 "feature 'input_ids' has 3 values, expected 4"});
}

TEST(ShardedLoaderBadShardTest, TokenIdOutsideVocabularyIsReported) {
  tf::Example e = MakeExample(12);
  SetInt64Feature(&e, "input_ids", {1, 2, 100, 4});
  BadCorpus c = WriteBadCorpus(2, e);
  LoaderOptions o = Options(c.dir);
  o.shuffle = false;
  ExpectMentions(FirstError(o), {c.bad_path + ": record 2 at byte offset", "'input_ids'",
                                 "value 100 at position 2", "vocabulary of 100"});
  SetInt64Feature(&e, "input_ids", {1, -1, 2, 4});
  c = WriteBadCorpus(2, e);
  o = Options(c.dir);
  ExpectMentions(FirstError(o), {c.bad_path + ": record 2", "value -1 at position 1"});
}

TEST(ShardedLoaderBadShardTest, WrongKindIsReported) {
  tf::Example e = MakeExample(12);
  SetInt64Feature(&e, "label", {1});
  BadCorpus c = WriteBadCorpus(0, e);
  ExpectMentions(FirstError(Options(c.dir)),
                 {c.bad_path + ": record 0", "'label' is an int64_list, expected a float_list"});
}

TEST(ShardedLoaderBadShardTest, DamagedRecordIsDataLossWithLocation) {
  BadCorpus c = WriteBadCorpus(-1, tf::Example());
  // Flip a payload bit of record 0 of the second shard: headers (and the index) stay valid.
  std::fstream f(c.bad_path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(14);
  f.put('\x7f');
  f.close();
  LoaderOptions o = Options(c.dir);
  auto loader = ShardedLoader::Open(o);  // the first record is checked at Open
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), absl::StatusCode::kDataLoss);
  ExpectMentions(loader.status(), {c.bad_path + ": record 0 at byte offset 0", "CRC"});
}

TEST(ShardedLoaderBadShardTest, TruncatedShardFailsAtOpen) {
  BadCorpus c = WriteBadCorpus(-1, tf::Example());
  fs::resize_file(c.bad_path, fs::file_size(c.bad_path) - 3);
  auto loader = ShardedLoader::Open(Options(c.dir));
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), absl::StatusCode::kDataLoss);
  ExpectMentions(loader.status(), {c.bad_path + ": record 11 at byte offset", "truncated"});
}

TEST(ShardedLoaderBadShardTest, BadOptionsAreInvalidArgument) {
  std::string dir = WriteCorpus();
  LoaderOptions o = Options(dir);
  o.num_ranks = 4;  // 6 is not a multiple of 4
  EXPECT_EQ(ShardedLoader::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(dir);
  o.global_batch_size = 48;
  ExpectMentions(ShardedLoader::Open(o).status(), {"holds 36 examples", "global batch of 48"});
  o = Options(dir);
  o.id_features = {"label"};
  EXPECT_EQ(ShardedLoader::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(dir);
  o.files = dir + "/nothing-*";
  absl::Status s = ShardedLoader::Open(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ExpectMentions(s, {"nothing-*"});
}

// ---------------------------------------------------------------------------------------------
// Shard indexes (<shard>.index): the same batches as the scan of record headers, resumable the
// same way, memory that does not grow with the record count, and a fallback to the scan, said in
// a line naming the index, when an index is missing, stale or damaged.

// Collects the loader's warning lines (from the prefetch thread too).
struct Warnings {
  std::mutex mu;
  std::vector<std::string> lines;
  std::vector<std::string> Lines() {
    std::lock_guard<std::mutex> lock(mu);
    return lines;
  }
};

LoaderOptions IndexOptions(const std::string& dir, std::shared_ptr<Warnings> warnings) {
  LoaderOptions o = Options(dir);
  o.vocab_size = 0;  // ids reach the record count
  o.global_batch_size = 12;
  o.warn = [warnings](const std::string& line) {
    std::lock_guard<std::mutex> lock(warnings->mu);
    warnings->lines.push_back(line);
  };
  return o;
}

// Shards of 700, 0, 1100 and 9 examples (several index blocks each, and an empty shard) in
// `dir` (x `scale` for the two large ones), examples numbered in file order; returns the count.
int64_t WriteIndexedCorpus(const std::string& dir, int64_t scale = 1) {
  int64_t u = 0;
  const std::vector<int64_t> sizes = {700 * scale, 0, 1100 * scale, 9};
  const std::vector<std::string> names = {"train-a", "train-b", "train-c", "train-d"};
  for (size_t s = 0; s < sizes.size(); ++s) {
    std::vector<tf::Example> examples;
    for (int64_t i = 0; i < sizes[s]; ++i) examples.push_back(MakeExample(u++));
    WriteShard(dir + "/" + names[s], examples);
  }
  return u;
}

// A copy of the shards of `dir` without their indexes, in a fresh `dir`-scan (TestDir's names
// end in the process id, which a later run can reuse: an old copy failed CI once).
std::string CopyWithoutIndexes(const std::string& dir) {
  const std::string copy = dir + "-scan";
  fs::remove_all(copy);
  fs::create_directories(copy);
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".index") fs::copy_file(e.path(), copy / e.path().filename());
  }
  return copy;
}

bool Contains(const std::string& line, const std::vector<std::string>& parts) {
  for (const std::string& p : parts) {
    if (line.find(p) == std::string::npos) return false;
  }
  return true;
}

TEST(ShardedLoaderIndexTest, IndexedShardsGiveTheBatchesOfTheScanForEveryRankCount) {
  const std::string dir = TestDir();
  const int64_t n = WriteIndexedCorpus(dir);
  const std::string scan = CopyWithoutIndexes(dir);
  auto indexed_warnings = std::make_shared<Warnings>();
  auto scan_warnings = std::make_shared<Warnings>();
  const LoaderOptions indexed = IndexOptions(dir, indexed_warnings);
  const LoaderOptions scanned = IndexOptions(scan, scan_warnings);
  {
    auto a = ShardedLoader::Open(indexed);
    auto b = ShardedLoader::Open(scanned);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ((*a)->num_examples(), n);
    EXPECT_EQ((*b)->num_examples(), n);
    EXPECT_EQ((*a)->indexed_shards(), 4);
    EXPECT_EQ((*b)->indexed_shards(), 0);
  }
  // Past the end of the first epoch (150 steps).
  const int steps = 160;
  const std::vector<std::vector<int64_t>> reference = GlobalBatches(scanned, 1, steps);
  ASSERT_EQ(reference.size(), static_cast<size_t>(steps));
  for (int ranks : {1, 2, 3, 4}) {
    EXPECT_EQ(GlobalBatches(indexed, ranks, steps), reference) << ranks << " ranks";
  }
  EXPECT_TRUE(indexed_warnings->Lines().empty());
  // Without indexes: one line for the dataset, however many loaders opened it.
  for (const std::string& line : scan_warnings->Lines()) {
    EXPECT_TRUE(Contains(line, {"4 of 4 shards", scan + "/train-*", "no index", "--write_index"}))
        << line;
  }
  EXPECT_FALSE(scan_warnings->Lines().empty());
}

TEST(ShardedLoaderIndexTest, AResumedIndexedLoaderContinuesAsTheScannedOneDoes) {
  const std::string dir = TestDir();
  WriteIndexedCorpus(dir);
  const std::string scan = CopyWithoutIndexes(dir);
  const LoaderOptions indexed = IndexOptions(dir, std::make_shared<Warnings>());
  auto loader = ShardedLoader::Open(indexed);
  ASSERT_TRUE(loader.ok());
  for (int t = 0; t < 145; ++t) ASSERT_TRUE((*loader)->Next().ok());
  LoaderState saved = (*loader)->State();
  std::vector<std::vector<int64_t>> continued(20);  // across the epoch boundary
  for (int t = 0; t < 20; ++t) {
    absl::StatusOr<LoaderBatch> b = (*loader)->Next();
    ASSERT_TRUE(b.ok());
    continued[t] = Contents(*b);
  }
  EXPECT_EQ(GlobalBatches(indexed, 2, 20, &saved), continued);
  EXPECT_EQ(GlobalBatches(IndexOptions(scan, std::make_shared<Warnings>()), 3, 20, &saved),
            continued);
}

TEST(ShardedLoaderIndexTest, AStaleIndexIsNamedAndTheShardScanned) {
  const std::string dir = TestDir();
  WriteIndexedCorpus(dir);
  // train-d rewritten with 13 examples, its old index (of 9) put back beside it.
  fs::copy_file(dir + "/train-d.index", dir + "/old.index");
  std::vector<tf::Example> examples;
  for (int64_t u = 1800; u < 1813; ++u) examples.push_back(MakeExample(u));
  WriteShard(dir + "/train-d", examples);
  fs::copy_file(dir + "/old.index", dir + "/train-d.index", fs::copy_options::overwrite_existing);
  fs::remove(dir + "/old.index");
  auto warnings = std::make_shared<Warnings>();
  const LoaderOptions o = IndexOptions(dir, warnings);
  auto loader = ShardedLoader::Open(o);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->num_examples(), 1813);
  EXPECT_EQ((*loader)->indexed_shards(), 3);
  ASSERT_EQ(warnings->Lines().size(), 1u);
  EXPECT_TRUE(Contains(warnings->Lines()[0], {dir + "/train-d.index: stale", "bytes",
                                              "read the shard's record headers instead"}))
      << warnings->Lines()[0];
  const std::string scan = CopyWithoutIndexes(dir);
  EXPECT_EQ(GlobalBatches(o, 2, 30), GlobalBatches(IndexOptions(scan, warnings), 1, 30));
}

// Flips one byte of `path` at `offset`.
void FlipByte(const std::string& path, uint64_t offset) {
  std::string bytes = testing::ReadAll(path);
  bytes[offset] ^= 0x10;
  testing::WriteAll(path, bytes);
}

TEST(ShardedLoaderIndexTest, ADamagedIndexHeaderIsNamedAtOpenAndTheShardScanned) {
  const std::string dir = TestDir();
  WriteIndexedCorpus(dir);
  FlipByte(dir + "/train-a.index", 20);  // the record count
  auto warnings = std::make_shared<Warnings>();
  auto loader = ShardedLoader::Open(IndexOptions(dir, warnings));
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->indexed_shards(), 3);
  ASSERT_EQ(warnings->Lines().size(), 1u);
  EXPECT_TRUE(Contains(warnings->Lines()[0],
                       {dir + "/train-a.index: damaged record index: header CRC mismatch"}))
      << warnings->Lines()[0];
}

TEST(ShardedLoaderIndexTest, ADamagedIndexBlockFoundWhileTrainingIsNamedAndTheBatchesUnchanged) {
  const std::string dir = TestDir();
  WriteIndexedCorpus(dir);
  const std::string scan = CopyWithoutIndexes(dir);
  // An offset in block 1 of train-c's 18 (of 64 entries, 516 bytes); Open reads only the header
  // and the last block.
  FlipByte(dir + "/train-c.index", 36 + 516 + 100);
  auto warnings = std::make_shared<Warnings>();
  const LoaderOptions o = IndexOptions(dir, warnings);
  const std::vector<std::vector<int64_t>> reference =
      GlobalBatches(IndexOptions(scan, std::make_shared<Warnings>()), 1, 150);
  {
    auto loader = ShardedLoader::Open(o);
    ASSERT_TRUE(loader.ok()) << loader.status();
    EXPECT_EQ((*loader)->indexed_shards(), 4);
    EXPECT_TRUE(warnings->Lines().empty());
  }
  EXPECT_EQ(GlobalBatches(o, 1, 150), reference);  // a whole epoch reads every block
  ASSERT_FALSE(warnings->Lines().empty());
  EXPECT_TRUE(Contains(warnings->Lines()[0],
                       {dir + "/train-c.index: damaged record index: block 1 (records 64..127)",
                        "CRC mismatch", "read the shard's record headers instead"}))
      << warnings->Lines()[0];
}

TEST(ShardedLoaderIndexTest, WhenTheShardOfADamagedIndexBlockIsDamagedTooItsErrorIsReturned) {
  const std::string dir = TestDir();
  WriteIndexedCorpus(dir);
  FlipByte(dir + "/train-c.index", 36 + 516 + 100);  // block 1 (records 64..127)
  // And record 100 of train-c itself: its length, so the scan that replaces the index fails.
  auto reader = RecordReader::Open(dir + "/train-c");
  ASSERT_TRUE(reader.ok());
  auto offsets = (*reader)->IndexRecords();
  ASSERT_TRUE(offsets.ok());
  const uint64_t record_100 = (*offsets)[100];
  FlipByte(dir + "/train-c", record_100 + 1);
  LoaderOptions o = IndexOptions(dir, std::make_shared<Warnings>());
  o.shuffle = false;
  o.prefetch = 0;
  auto loader = ShardedLoader::Open(o);
  ASSERT_TRUE(loader.ok()) << loader.status();
  absl::Status error;
  for (int t = 0; t < 150 && error.ok(); ++t) error = (*loader)->Next().status();
  EXPECT_EQ(error.code(), absl::StatusCode::kDataLoss);
  ExpectMentions(error, {dir + "/train-c: record 100 at byte offset " + std::to_string(record_100),
                         "length CRC mismatch"});
  // Every later lookup in that shard returns the error, never an offset from nowhere.
  EXPECT_EQ((*loader)->Next().status(), error);
  const RecordLocation where = (*loader)->Locate(700 + 3);
  EXPECT_EQ(where.file, dir + "/train-c");
  EXPECT_EQ(where.record, 3);
}

TEST(ShardedLoaderIndexTest, MissingIndexesAreOneLineForTheDataset) {
  const std::string dir = TestDir();
  WriteIndexedCorpus(dir);
  fs::remove(dir + "/train-a.index");
  fs::remove(dir + "/train-c.index");
  auto warnings = std::make_shared<Warnings>();
  auto loader = ShardedLoader::Open(IndexOptions(dir, warnings));
  ASSERT_TRUE(loader.ok());
  EXPECT_EQ((*loader)->indexed_shards(), 2);
  ASSERT_EQ(warnings->Lines().size(), 1u);
  EXPECT_TRUE(Contains(warnings->Lines()[0], {"2 of 4 shards", dir + "/train-a.index", "no index"}))
      << warnings->Lines()[0];
}

TEST(ShardedLoaderIndexTest, MemoryToLocateRecordsDoesNotGrowWithTheRecordCount) {
  const std::string small = TestDir() + "/small", large = TestDir() + "/large";
  fs::create_directories(small);
  fs::create_directories(large);
  const int64_t n_small = WriteIndexedCorpus(small, 1);
  const int64_t n_large = WriteIndexedCorpus(large, 5);
  auto open = [](const std::string& dir) {
    LoaderOptions o = IndexOptions(dir, std::make_shared<Warnings>());
    o.prefetch = 0;  // nothing read beyond what Open reads
    auto loader = ShardedLoader::Open(o);
    EXPECT_TRUE(loader.ok()) << loader.status();
    return std::move(*loader);
  };
  std::unique_ptr<ShardedLoader> a = open(small), b = open(large);
  // The same shards, 5x the records: the same bytes up to the paths' lengths.
  EXPECT_NEAR((*a).offset_memory_bytes(), (*b).offset_memory_bytes(), 64);
  // After an epoch of reads, at most the block cache (4096 blocks of 64 offsets) more.
  for (int t = 0; t < (*b).steps_per_epoch(); ++t) ASSERT_TRUE((*b).Next().ok());
  EXPECT_LT((*b).offset_memory_bytes(), (*a).offset_memory_bytes() + 4096 * 64 * 8);
  EXPECT_LT((*b).offset_memory_bytes(), 3 << 20);
  // The scan keeps 8 bytes per record.
  std::unique_ptr<ShardedLoader> c = open(CopyWithoutIndexes(large));
  EXPECT_GE((*c).offset_memory_bytes(), 8 * n_large);
  EXPECT_EQ(n_large, 5 * n_small - 4 * 9);
}

}  // namespace
}  // namespace headroom
