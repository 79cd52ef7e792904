// SentencePiece training and encoding, with errors turned into one-line absl::Status messages.
// All calls into the library go through data/internal/sentencepiece_shim (see there for why).
#include "data/sentencepiece_tokenizer.h"

#include <sys/stat.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "data/text_input.h"

namespace headroom {

absl::Status TrainSentencePiece(const SentencePieceTrainOptions& o) {
  if (o.input_files.empty()) return absl::InvalidArgumentError("SentencePiece: no input files");
  if (o.model_prefix.empty()) return absl::InvalidArgumentError("SentencePiece: no model prefix");
  if (o.vocab_size < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece: vocab_size must be >= 4, got ", o.vocab_size));
  }
  if (o.model_type != "unigram" && o.model_type != "bpe") {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece: model_type must be unigram or bpe, got '", o.model_type, "'"));
  }
  for (const std::string& f : o.input_files) {
    struct stat st;
    if (::stat(f.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("SentencePiece training input ", f, " not found"));
    }
    if (f.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("SentencePiece training input ", f, ": file names must not contain ','"));
    }
  }
  // An empty corpus would fail deep inside the trainer; say so plainly.
  bool any_text = false;
  for (size_t i = 0; i < o.input_files.size() && !any_text; ++i) {
    absl::StatusOr<TextReader> reader = TextReader::Open({o.input_files[i]});
    if (!reader.ok()) return reader.status();
    std::string line;
    while (!any_text && reader->NextLine(&line)) any_text = !line.empty();
    if (!reader->status().ok()) return reader->status();
  }
  if (!any_text) {
    return absl::InvalidArgumentError(
        absl::StrCat("no sentences in ", absl::StrJoin(o.input_files, ","),
                     ": the input is empty (expected one sentence per line)"));
  }
  int threads = o.num_threads > 0
                    ? o.num_threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::pair<std::string, std::string>> args = {
      {"input", absl::StrJoin(o.input_files, ",")},
      {"model_prefix", o.model_prefix},
      {"vocab_size", absl::StrCat(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", absl::StrCat(o.character_coverage)},
      {"input_sentence_size", absl::StrCat(o.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", absl::StrCat(threads)},
      // tensor2tensor's ids: 0 pad, 1 end of sentence, 2 unknown, no beginning-of-sentence.
      {"pad_id", "0"},
      {"eos_id", "1"},
      {"unk_id", "2"},
      {"bos_id", "-1"},
      {"minloglevel", o.verbose ? "0" : "1"},
  };
  std::string error = internal_spm::Train(args);
  if (!error.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece training on ", absl::StrJoin(o.input_files, ","),
                     " failed: ", absl::StripTrailingAsciiWhitespace(error)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SentencePieceTokenizer> SentencePieceTokenizer::Load(const std::string& model_path) {
  struct stat st;
  if (::stat(model_path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("SentencePiece model ", model_path, " not found"));
  }
  SentencePieceTokenizer t;
  std::string error = internal_spm::Load(model_path, &t.processor_);
  if (!error.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load SentencePiece model ", model_path, ": ", error));
  }
  t.path_ = model_path;
  t.vocab_size_ = internal_spm::PieceSize(t.processor_.get());
  t.pad_id_ = internal_spm::PadId(t.processor_.get());
  t.eos_id_ = internal_spm::EosId(t.processor_.get());
  t.unk_id_ = internal_spm::UnkId(t.processor_.get());
  return t;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(absl::string_view text) const {
  std::vector<int> ids;
  std::string error = internal_spm::EncodeIds(processor_.get(), std::string(text), &ids);
  if (!error.empty()) return absl::InternalError(absl::StrCat("SentencePiece encode: ", error));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

absl::StatusOr<std::vector<std::string>> SentencePieceTokenizer::EncodeAsPieces(
    absl::string_view text) const {
  std::vector<std::string> pieces;
  std::string error = internal_spm::EncodePieces(processor_.get(), std::string(text), &pieces);
  if (!error.empty()) return absl::InternalError(absl::StrCat("SentencePiece encode: ", error));
  return pieces;
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("SentencePiece decode: id ", id,
                                                     " outside the vocabulary [0, ", vocab_size_,
                                                     ") of ", path_));
    }
  }
  std::string text;
  std::string error =
      internal_spm::DecodeIds(processor_.get(), std::vector<int>(ids.begin(), ids.end()), &text);
  if (!error.empty()) return absl::InternalError(absl::StrCat("SentencePiece decode: ", error));
  return text;
}

std::string SentencePieceTokenizer::IdToPiece(int32_t id) const {
  return internal_spm::IdToPiece(processor_.get(), id);
}

}  // namespace headroom
