// Language-model examples from text: sentences -> SentencePiece ids + end-of-sentence ->
// tensor2tensor-style examples: an int64 feature "targets" (as t2t's LM1B problem writes), and
// for packed examples also "targets_segmentation" and "targets_position" (as t2t's packed
// problems, e.g. languagemodel_lm1b32k_packed, write them).
//
// Input is the standard pre-training text form (one sentence per line; blank lines, which
// separate documents, are skipped: an LM1B-style LM trains on sentences). Each sentence becomes
// Encode(sentence) + [eos_id]. Then, with max_length L:
//   - one sentence per example (pack = false): a sentence longer than L is cut into consecutive
//     pieces of L tokens (no token is dropped; only the last piece ends with EOS);
//   - packed (pack = true): whole sentences are appended to the current example while they fit
//     in L; a sentence that does not fit starts the next example (one longer than L is cut as
//     above). Examples therefore hold several sentences, each ending in EOS, and no padding.
//     Each sentence (or piece of a cut one) is a segment: targets_segmentation numbers them 1,
//     2, ... within the example and targets_position counts 0, 1, ... within each, so the model
//     (model/batch.h) trains on every sentence as if it had a row of its own.
// Examples are written round-robin over the shards, in input order; the loader shuffles.
//
// Example:
//   HR_ASSIGN_OR_RETURN(auto spm, SentencePieceTokenizer::Load("lm.model"));
//   LmDataOptions o;  // max_length 256, one sentence per example
//   HR_ASSIGN_OR_RETURN(LmDataStats s, WriteLmShards({"train.txt"}, spm, o, "out", "train", 8));
#ifndef HEADROOM_DATA_LM_PRETRAINING_DATA_H_
#define HEADROOM_DATA_LM_PRETRAINING_DATA_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/sentencepiece_tokenizer.h"

namespace headroom {

class Progress;

struct LmDataOptions {
  int max_length = 256;  // tokens per example, >= 2 (LM1B configs: 256)
  bool pack = false;     // pack several sentences per example
  // With pack: write targets_segmentation / targets_position, so that each sentence is trained
  // on alone (tensor2tensor's packing). false: none, so the packed sentences are one stream
  // (attention and positions run across sentence ends), as before packing had segments.
  bool pack_segments = true;
  // Tokenizer threads (data/encoded_lines.h); <= 0: one per hardware thread. The examples are
  // the same for any number.
  int num_workers = 0;
};

// One example: `targets`, and for packed examples the segment (1, 2, ...) and the position
// within its segment of every target (empty when not packed).
struct LmExample {
  std::vector<int32_t> targets;
  std::vector<int32_t> segmentation;
  std::vector<int32_t> position;
};

struct LmDataStats {
  int64_t sentences = 0;
  int64_t tokens = 0;  // written, EOS included
  int64_t examples = 0;
  double seconds = 0;
};

// Streams `input_files` and hands each example to `sink`. Errors: the reader's,
// InvalidArgument for bad options, for a model without an end-of-sentence id, and "no sentences
// in ..." when the input holds no text. `progress` may be null.
[[nodiscard]] absl::StatusOr<LmDataStats> CreateLmExamples(
    const std::vector<std::string>& input_files, const SentencePieceTokenizer& spm,
    const LmDataOptions& options, const std::function<absl::Status(const LmExample&)>& sink,
    Progress* progress = nullptr);

// CreateLmExamples written round-robin over `num_shards` files
// output_dir/name-0000i-of-0000N.tfrecord.
[[nodiscard]] absl::StatusOr<LmDataStats> WriteLmShards(const std::vector<std::string>& input_files,
                                                        const SentencePieceTokenizer& spm,
                                                        const LmDataOptions& options,
                                                        const std::string& output_dir,
                                                        const std::string& name, int num_shards,
                                                        Progress* progress = nullptr);

}  // namespace headroom

#endif  // HEADROOM_DATA_LM_PRETRAINING_DATA_H_
