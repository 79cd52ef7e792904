// BERT pre-training examples (masked LM + next sentence prediction) from text, following Google
// BERT's create_pretraining_data.py, but streaming.
//
// The algorithm, per document (Google's create_instances_from_document):
//   - target length = max_seq_length - 3, or with probability short_seq_prob a uniform length in
//     [2, max_seq_length - 3];
//   - sentences accumulate until the target is reached (or the document ends); segment A is a
//     random non-empty prefix of them; segment B is the true continuation or, with probability 0.5
//     (always when only one sentence accumulated), a span from a random other document starting
//     at a random sentence, the unused sentences being put back;
//   - the pair is truncated to max_seq_length - 3 tokens by dropping, from the longer side, the
//     first or last token (coin flip each time);
//   - tokens = [CLS] A [SEP] B [SEP]; min(max_predictions_per_seq, max(1, round(len * prob)))
//     positions are masked (never [CLS]/[SEP]; with whole-word masking a word's "##" pieces go
//     together); each masked token becomes [MASK] 80%, stays 10%, a random vocab token 10%.
// Documents are read in chunks of `chunk_documents` (or of `chunk_tokens` tokens, whichever
// comes first, at a document boundary): each chunk is shuffled, passed over
// `dupe_factor` times (different masks and pairings each time), and its instances shuffled and
// emitted in chunk order. Random "next" segments come from the same chunk. With a chunk as
// large as the corpus this is Google's algorithm (whose script holds everything in memory); the
// random numbers differ from Python's, so the exact examples differ, not their statistics.
// Documents never span input files.
// Every core: each chunk's instances come from their own generator, seeded from (random_seed,
// the chunk's index, max_seq_length), and chunks are built on `num_workers` threads while the
// next chunk is read, so at most num_workers + 1 chunks (and their instances) are in memory.
// Chunks are written in order, so the output is the same for any number of workers.
//
// Output features (Google's names; int64 lists except masked_lm_weights, a float list):
//   input_ids, input_mask, segment_ids          [max_seq_length], zero-padded
//   masked_lm_positions, masked_lm_ids           [max_predictions_per_seq], zero-padded
//   masked_lm_weights                            1.0 per real prediction, then 0.0
//   next_sentence_labels                         [1]: 1 if B is random, 0 if it is the continuation
//
// Example:
//   HR_ASSIGN_OR_RETURN(auto tok, WordPieceTokenizer::FromFile("vocab.txt"));
//   BertDataOptions o;                   // Google's defaults
//   HR_ASSIGN_OR_RETURN(BertDataStats s,
//                       WriteBertShards({"train.txt"}, tok, o, "out", "train", 8, &progress));
//   // out/train-00000-of-00008.tfrecord ... out/train-00007-of-00008.tfrecord
#ifndef HEADROOM_DATA_BERT_PRETRAINING_DATA_H_
#define HEADROOM_DATA_BERT_PRETRAINING_DATA_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/example.pb.h"
#include "data/wordpiece_tokenizer.h"

namespace headroom {

class Progress;

struct BertDataOptions {
  int max_seq_length = 128;          // >= 5
  int max_predictions_per_seq = 20;  // >= 1
  double masked_lm_prob = 0.15;      // in (0, 1]
  double short_seq_prob = 0.1;       // in [0, 1]
  int dupe_factor = 10;              // >= 1
  bool do_whole_word_mask = false;
  uint64_t random_seed = 12345;
  // Documents per chunk (memory bound; random next segments are drawn within a chunk).
  int64_t chunk_documents = 2000;  // >= 1
  // WordPiece tokens per chunk (0: no bound): a chunk also closes, at the next document
  // boundary, once it holds this many, so that 2,000 books (~200M tokens) are not one chunk.
  int64_t chunk_tokens = 8'000'000;
  // Threads that tokenize (data/encoded_lines.h) and that build chunks' instances (above);
  // <= 0: one per hardware thread. The output is the same for any number.
  int num_workers = 0;
};

// InvalidArgument naming the first bad field.
[[nodiscard]] absl::Status ValidateBertDataOptions(const BertDataOptions& options);

// One training pair before padding.
struct BertInstance {
  std::vector<int32_t> input_ids;            // [CLS] A [SEP] B [SEP], after masking
  std::vector<int32_t> segment_ids;          // 0 for [CLS] A [SEP], 1 for B [SEP]
  std::vector<int32_t> masked_lm_positions;  // increasing positions into input_ids
  std::vector<int32_t> masked_lm_ids;        // the original tokens there
  bool is_random_next = false;
};

// A document: its sentences as WordPiece ids (none empty).
using Document = std::vector<std::vector<int32_t>>;

// Deterministic random numbers (SplitMix-seeded xoshiro256**), identical on every platform, so
// the same seed gives byte-identical shards everywhere.
class BertRng {
 public:
  explicit BertRng(uint64_t seed);
  uint64_t Next();
  double Uniform();                            // [0, 1)
  int64_t UniformInt(int64_t lo, int64_t hi);  // [lo, hi], inclusive like Python's randint
  template <typename T>
  void Shuffle(std::vector<T>* v) {  // Fisher-Yates
    for (size_t i = v->size(); i > 1; --i) {
      std::swap((*v)[i - 1], (*v)[static_cast<size_t>(UniformInt(0, static_cast<int64_t>(i) - 1))]);
    }
  }

 private:
  uint64_t s_[4];
};

// Google's truncate_seq_pair: while |a| + |b| > max_tokens, drops one token from the longer side
// (b on ties), from its front or its back by a coin flip (one rng->Uniform() per dropped token).
// Time linear in |a| + |b|.
void TruncateSeqPair(std::vector<int32_t>* a, std::vector<int32_t>* b, size_t max_tokens,
                     BertRng* rng);

// Appends the instances of documents[document_index] to `out` (create_instances_from_document).
void CreateInstancesFromDocument(const std::vector<Document>& documents, size_t document_index,
                                 const WordPieceTokenizer& tokenizer,
                                 const BertDataOptions& options, BertRng* rng,
                                 std::vector<BertInstance>* out);

// The padded tf.Example of `instance` (features above).
tf::Example BertInstanceToExample(const BertInstance& instance, const BertDataOptions& options);

struct BertDataStats {
  int64_t documents = 0;  // non-empty documents read
  int64_t sentences = 0;
  int64_t tokens = 0;     // WordPiece tokens of the input text (one pass)
  int64_t instances = 0;  // examples written (all dupe passes)
  double seconds = 0;
};

// Streams `input_files` through the algorithm and hands each instance to `sink`, in output
// order. Errors: the reader's (file named), InvalidArgument for bad options, and InvalidArgument
// "no documents in ..." when the input holds no text. `progress` may be null.
[[nodiscard]] absl::StatusOr<BertDataStats> CreateBertInstances(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tokenizer,
    const BertDataOptions& options, const std::function<absl::Status(const BertInstance&)>& sink,
    Progress* progress = nullptr);

// The shard paths WriteBertShards/WriteLmShards produce: dir/name-00000-of-0000N.tfrecord.
std::vector<std::string> ShardPaths(const std::string& dir, const std::string& name,
                                    int num_shards);

// CreateBertInstances for several option sets at once (BERT's two phases: max_seq_length 128
// with 20 predictions, 512 with 80) from one read and tokenization of the input: the chunks are
// shared, and set k's instances, from generators seeded with its random_seed and
// max_seq_length, go to sinks[k]. Set k's output is exactly what CreateBertInstances with sets[k]
// alone gives. The sets must share chunk_documents. Stats: per set; documents, sentences and tokens
// are the input's (the same in each).
[[nodiscard]] absl::StatusOr<std::vector<BertDataStats>> CreateBertInstanceSets(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tokenizer,
    const std::vector<BertDataOptions>& sets,
    const std::vector<std::function<absl::Status(const BertInstance&)>>& sinks,
    Progress* progress = nullptr);

// CreateBertInstances written round-robin over `num_shards` record files (atomically: each shard
// appears under its name only when complete). `output_dir` must exist.
[[nodiscard]] absl::StatusOr<BertDataStats> WriteBertShards(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tokenizer,
    const BertDataOptions& options, const std::string& output_dir, const std::string& name,
    int num_shards, Progress* progress = nullptr);

// CreateBertInstanceSets written as WriteBertShards writes one set: set k's shards are
// output_dirs[k]/name-0000i-of-0000N.tfrecord. The directories must exist.
[[nodiscard]] absl::StatusOr<std::vector<BertDataStats>> WriteBertShardSets(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tokenizer,
    const std::vector<BertDataOptions>& sets, const std::vector<std::string>& output_dirs,
    const std::string& name, int num_shards, Progress* progress = nullptr);

// Serializes with sorted map keys, so that equal examples give equal bytes.
std::string SerializeExampleDeterministically(const tf::Example& example);

}  // namespace headroom

#endif  // HEADROOM_DATA_BERT_PRETRAINING_DATA_H_
