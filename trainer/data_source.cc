// BatchSource over ShardedLoader (see data_source.h). This file must not include model/batch.h.
#include "trainer/data_source.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "data/sharded_loader.h"
#include "google/protobuf/text_format.h"

namespace headroom {
namespace {

class LoaderSource final : public BatchSource {
 public:
  explicit LoaderSource(std::unique_ptr<ShardedLoader> loader) : loader_(std::move(loader)) {}

  absl::StatusOr<FeatureBatch> Next() override {
    // `auto`: the loader's batch type is named apart from model/batch.h's Batch.
    HR_ASSIGN_OR_RETURN(auto b, loader_->Next());
    FeatureBatch f;
    f.size = b.size;
    f.ints = std::move(b.int32_features);
    f.floats = std::move(b.float_features);
    return f;
  }

  std::string Position() const override {
    std::string text;
    google::protobuf::TextFormat::PrintToString(loader_->State(), &text);
    return text;
  }

  absl::Status Restore(const std::string& position) override {
    LoaderState state;
    if (!google::protobuf::TextFormat::ParseFromString(position, &state)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the saved data position is not a LoaderState: '", position, "'"));
    }
    return loader_->Restore(state);
  }

  int64_t num_examples() const override { return loader_->num_examples(); }

 private:
  std::unique_ptr<ShardedLoader> loader_;
};

// Examples checked per shard when a source opens (ShardedLoader::Open checks the first one).
constexpr int64_t kCheckedPerShard = 1024;

// Reads the first kCheckedPerShard examples of every shard of `o` through a loader of batch 1,
// which checks each one (feature lengths, ids in [0, vocab_size)): shards made for another
// vocabulary or sequence length fail before the first step rather than when training reaches
// their bad example (the training loader still checks every example it reads).
absl::Status CheckShardsFit(const LoaderOptions& o) {
  LoaderOptions one = o;
  one.global_batch_size = 1;
  one.rank = 0;
  one.num_ranks = 1;
  one.shuffle = false;  // batch t is example t
  one.num_epochs = 0;
  one.prefetch = 0;
  HR_ASSIGN_OR_RETURN(std::unique_ptr<ShardedLoader> checker, ShardedLoader::Open(one));
  const int64_t n = checker->num_examples();
  int64_t id = 0;
  while (id < n) {
    const RecordLocation where = checker->Locate(id);
    if (where.record >= kCheckedPerShard) {
      // Skip to the first example of the next file: the smallest id' > id in another file.
      int64_t lo = id, hi = n;  // Locate(lo) is in where.file; hi is past it
      while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        (checker->Locate(mid).file == where.file ? lo : hi) = mid;
      }
      id = hi;
      if (id == n) break;
      LoaderState state = checker->State();
      state.set_epoch(0);
      state.set_step(id);
      HR_RETURN_IF_ERROR(checker->Restore(state));
      continue;
    }
    HR_RETURN_IF_ERROR(checker->Next().status());
    ++id;
  }
  return absl::OkStatus();
}

// Whether the LM shards `files` are packed (prepare-lm --pack, tensor2tensor's packed problems):
// the first record of the first shard has "targets_segmentation". The loader then requires it,
// with "targets_position", of every example.
absl::StatusOr<bool> LmShardsArePacked(const std::string& files) {
  HR_ASSIGN_OR_RETURN(std::vector<std::string> paths, ExpandFileGlobs(files));
  HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader, RecordReader::Open(paths.front()));
  std::string record;
  HR_ASSIGN_OR_RETURN(bool any, reader->ReadNext(&record));
  if (!any) return false;  // an empty shard: the loader names it
  tf::Example example;
  HR_RETURN_IF_ERROR(ParseExample(record, RecordLocation{paths.front(), 0, 0}, &example));
  return example.features().feature().count("targets_segmentation") > 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(
    const ModelConfig& model, const std::string& files, int seq_length, int max_predictions,
    int64_t global_batch_size, uint64_t seed, bool shuffle, int rank, int num_ranks) {
  LoaderOptions o;
  o.files = files;
  o.vocab_size = model.vocab_size();
  o.global_batch_size = global_batch_size;
  o.seed = seed;
  o.shuffle = shuffle;
  o.rank = rank;
  o.num_ranks = num_ranks;
  using F = LoaderFeature;
  if (model.objective() == ModelConfig::BERT) {
    o.features = {{"input_ids", F::kInt32, seq_length},
                  {"input_mask", F::kInt32, seq_length},
                  {"segment_ids", F::kInt32, seq_length},
                  {"masked_lm_positions", F::kInt32, max_predictions},
                  {"masked_lm_ids", F::kInt32, max_predictions},
                  {"masked_lm_weights", F::kFloat, max_predictions},
                  {"next_sentence_labels", F::kInt32, 1}};
    o.id_features = {"input_ids", "masked_lm_ids"};
  } else {
    o.features = {{"targets", F::kInt32, seq_length, /*pad=*/true}};
    o.id_features = {"targets"};
    HR_ASSIGN_OR_RETURN(bool packed, LmShardsArePacked(files));
    if (packed) {
      o.features.push_back({"targets_segmentation", F::kInt32, seq_length, /*pad=*/true});
      o.features.push_back({"targets_position", F::kInt32, seq_length, /*pad=*/true});
    }
  }
  HR_ASSIGN_OR_RETURN(std::unique_ptr<ShardedLoader> loader, ShardedLoader::Open(o));
  HR_RETURN_IF_ERROR(CheckShardsFit(o));
  return std::unique_ptr<BatchSource>(new LoaderSource(std::move(loader)));
}

}  // namespace headroom
