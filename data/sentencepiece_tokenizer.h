// The LM's sub-word tokenizer: a SentencePiece model (unigram or BPE) trained on the corpus with
// Debian's libsentencepiece, and encoding/decoding with it.
//
// Id convention (tensor2tensor's, so that `targets` padded with zeros mean "no token"):
//   0 = <pad> (never produced by Encode), 1 = </s> (end of sentence, appended by prepare-lm),
//   2 = <unk>; no <s>. TrainSentencePiece fixes these ids; Load accepts any model but reports
//   its ids, so models trained elsewhere still work.
//
// Example:
//   SentencePieceTrainOptions o;
//   o.input_files = {"train.txt"};
//   o.model_prefix = "/tmp/lm";  // writes /tmp/lm.model and /tmp/lm.vocab
//   o.vocab_size = 8192;
//   HR_RETURN_IF_ERROR(TrainSentencePiece(o));
//   HR_ASSIGN_OR_RETURN(SentencePieceTokenizer spm, SentencePieceTokenizer::Load("/tmp/lm.model"));
//   HR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, spm.Encode("Hello world."));
//   HR_ASSIGN_OR_RETURN(std::string text, spm.Decode(ids));  // "Hello world."
#ifndef HEADROOM_DATA_SENTENCEPIECE_TOKENIZER_H_
#define HEADROOM_DATA_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/internal/sentencepiece_shim.h"

namespace headroom {

struct SentencePieceTrainOptions {
  // Text files, one sentence per line (blank lines are skipped). Must be non-empty.
  std::vector<std::string> input_files;
  // Output: model_prefix + ".model" (what Load reads) and model_prefix + ".vocab" (readable).
  std::string model_prefix;
  // Pieces including <pad>, </s>, <unk>. The paper's LM1B uses 32000.
  int vocab_size = 32000;
  // "unigram" (SentencePiece's default) or "bpe".
  std::string model_type = "unigram";
  // Fraction of characters the model must cover; rarer characters become <unk>.
  double character_coverage = 0.9995;
  // Sentences sampled for training; 0 uses all of them. SentencePiece (0.1.97) samples them
  // with a reservoir seeded by a constant of its own (12345678), so the same input and size
  // always give the same sample, and training is deterministic for a given num_threads.
  int64_t input_sentence_size = 0;
  // Trainer threads; 0 means all hardware threads.
  int num_threads = 0;
  // Print SentencePiece's training log to stderr.
  bool verbose = false;
};

// Trains a model. InvalidArgument (one line) for bad options, missing or empty inputs, or when
// SentencePiece rejects the vocabulary size for this corpus.
[[nodiscard]] absl::Status TrainSentencePiece(const SentencePieceTrainOptions& options);

// Immutable after Load; Encode/Decode are const and thread-safe.
class SentencePieceTokenizer {
 public:
  // Loads `model_path` (a .model file). NotFound / InvalidArgument naming the path.
  [[nodiscard]] static absl::StatusOr<SentencePieceTokenizer> Load(const std::string& model_path);

  [[nodiscard]] absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> EncodeAsPieces(
      absl::string_view text) const;
  // Control ids (<pad>, </s>) decode to nothing.
  [[nodiscard]] absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const { return vocab_size_; }
  // -1 where the model has no such piece.
  int32_t pad_id() const { return pad_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  std::string IdToPiece(int32_t id) const;
  const std::string& path() const { return path_; }

 private:
  SentencePieceTokenizer() = default;
  std::string path_;
  internal_spm::Processor processor_;
  int32_t vocab_size_ = 0, pad_id_ = -1, eos_id_ = -1, unk_id_ = -1;
};

}  // namespace headroom

#endif  // HEADROOM_DATA_SENTENCEPIECE_TOKENIZER_H_
