// BatchSource: the trainer's view of the data loader, one global batch of named features at a
// time, with a position that a checkpoint saves and a resume restores.
//
// It wraps data/sharded_loader.h behind a header that includes nothing from data/, because
// data/sharded_loader.h and model/batch.h both declare a `headroom::Batch` and so cannot meet in
// one translation unit. The trainer turns FeatureBatch into model/batch.h's Batch.
//
// Features are Google BERT's (input_ids, input_mask, segment_ids [S]; masked_lm_positions,
// masked_lm_ids, masked_lm_weights [M]; next_sentence_labels [1]) or tensor2tensor's LM
// `targets` [S] (shorter examples zero-padded), with `targets_segmentation` and
// `targets_position` [S] too when the shards are packed (their first record has them; padding
// then gets segment 0), so shards from those tools load unchanged.
//
// Example:
//   HR_ASSIGN_OR_RETURN(auto src, OpenBatchSource(config.model(), "shards/train-*", 128, 20,
//                                                 /*global_batch=*/256, /*seed=*/1234, true));
//   HR_ASSIGN_OR_RETURN(FeatureBatch b, src->Next());   // b.ints["input_ids"]: [256 * 128]
//   std::string position = src->Position();             // save with the checkpoint
#ifndef HEADROOM_TRAINER_DATA_SOURCE_H_
#define HEADROOM_TRAINER_DATA_SOURCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"

namespace headroom {

// One global batch: feature name -> row-major [size, length] values.
struct FeatureBatch {
  int64_t size = 0;
  std::map<std::string, std::vector<int32_t>> ints;
  std::map<std::string, std::vector<float>> floats;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // The next global batch (wrapping around epochs). Data errors name file, record and feature.
  [[nodiscard]] virtual absl::StatusOr<FeatureBatch> Next() = 0;
  // The position of the batch the next Next() returns, as text (a LoaderState proto).
  virtual std::string Position() const = 0;
  // Continues from a Position() string. FailedPrecondition for a position made with other data,
  // seed or batch size.
  [[nodiscard]] virtual absl::Status Restore(const std::string& position) = 0;
  // Examples in the matched shards.
  virtual int64_t num_examples() const = 0;
};

// Opens the shards matching `files` (glob or comma-separated globs) for `model`'s objective at
// sequence length `seq_length` (and `max_predictions` masked slots for BERT). Every id is
// checked against model.vocab_size. NotFound when the glob matches nothing; InvalidArgument
// naming file, record and feature when the shards were made for another sequence length or
// vocabulary: checked here on the first 1024 examples of every shard (so such shards fail
// before training starts), and by Next() on every example it reads.
// With num_ranks > 1 each Next() returns rank `rank`'s share: rows [rank * G/R, (rank+1) * G/R)
// of the global batch (data/sharded_loader.h), so the position is the same on every rank.
[[nodiscard]] absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(
    const ModelConfig& model, const std::string& files, int seq_length, int max_predictions,
    int64_t global_batch_size, uint64_t seed, bool shuffle, int rank = 0, int num_ranks = 1);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_DATA_SOURCE_H_
