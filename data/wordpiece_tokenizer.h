// BERT's WordPiece tokenizer: Google BERT's `tokenization.py` FullTokenizer (= Hugging Face
// `BertTokenizer` with its BasicTokenizer), reimplemented over utf8proc.
//
// Tokenize(text) runs, in order:
//   1. Clean: drop U+0000, U+FFFD and control characters (categories Cc/Cf, except tab, LF, CR);
//      map whitespace (space, tab, LF, CR, category Zs) to a space. Invalid UTF-8 bytes are
//      dropped (Python's decode(errors="ignore")).
//   2. Put spaces around CJK ideographs (the Unicode blocks BERT's _is_chinese_char lists).
//   3. Split on whitespace. For each word, when lower-casing: lower-case it (Python str.lower:
//      the simple lower-case mapping per code point, with the final-sigma rule), decompose it
//      (NFD) and drop nonspacing marks (category Mn), i.e. strip accents.
//   4. Split each word on punctuation: ASCII 33-47, 58-64, 91-96, 123-126 and every Unicode P*
//      category; each punctuation character becomes its own word.
//   5. WordPiece each word: greedy longest-match-first from the left, pieces after the first
//      carry the "##" prefix; a word with no full segmentation, or longer than
//      max_input_chars_per_word code points, becomes [UNK].
// Like Google's code (and unlike Hugging Face's added-token handling) special tokens written in
// the text, e.g. "[CLS]", are not recognised: they are split as ordinary punctuation and words.
//
// Example (bert-base-uncased vocab.txt):
//   auto tok = WordPieceTokenizer::FromFile("vocab.txt");
//   tok->Tokenize("UNwant\u00E9d,running");  // {"un", "##want", "##ed", ",", "running"}
//   tok->Encode("unaffable");                // {4895, 10354, 3085}
#ifndef HEADROOM_DATA_WORDPIECE_TOKENIZER_H_
#define HEADROOM_DATA_WORDPIECE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

struct WordPieceOptions {
  // Lower-case and strip accents (the "uncased" models). False for cased vocabularies.
  bool do_lower_case = true;
  // Longer words (in code points) become [UNK]: 100 in Hugging Face, 200 in Google's code.
  int max_input_chars_per_word = 100;
};

// Immutable after construction; Tokenize/Encode are const and safe to call from many threads.
class WordPieceTokenizer {
 public:
  // Loads a BERT vocab.txt: one token per line, id = line index (0-based); surrounding
  // whitespace of each line is stripped, as Google's load_vocab does. Errors, each one line
  // naming `path`: NotFound when the file is missing, InvalidArgument when it is empty, has a
  // blank line or a token twice (with the line number; Google's load_vocab would silently take
  // the later id), or lacks one of the special tokens [PAD] [UNK] [CLS] [SEP] [MASK]. The
  // file's final newline ends the last token.
  [[nodiscard]] static absl::StatusOr<WordPieceTokenizer> FromFile(const std::string& path,
                                                                   WordPieceOptions options = {});
  // The same from tokens in id order (token i is line i + 1 in messages); `source` names them.
  [[nodiscard]] static absl::StatusOr<WordPieceTokenizer> FromTokens(
      std::vector<std::string> tokens, WordPieceOptions options = {},
      const std::string& source = "vocabulary");

  // The WordPiece tokens of `text` (UTF-8). Empty for empty or all-whitespace input.
  std::vector<std::string> Tokenize(absl::string_view text) const;
  // The ids of Tokenize(text), appended to `ids`.
  void Encode(absl::string_view text, std::vector<int32_t>* ids) const;
  std::vector<int32_t> Encode(absl::string_view text) const;
  // Steps 1-4 only: the words WordPiece would see.
  std::vector<std::string> BasicTokenize(absl::string_view text) const;

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  // -1 when `token` is not in the vocabulary.
  int32_t TokenToId(absl::string_view token) const;
  // Requires 0 <= id < vocab_size().
  const std::string& IdToToken(int32_t id) const { return tokens_[id]; }
  // True for "##" continuation pieces (whole-word masking groups them with the word start).
  bool IsContinuation(int32_t id) const { return tokens_[id].rfind("##", 0) == 0; }

  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t mask_id() const { return mask_id_; }
  const WordPieceOptions& options() const { return options_; }

 private:
  WordPieceTokenizer() = default;
  // Appends the pieces of one basic-tokenized word (ids, or strings when `pieces` is set).
  void WordPiece(const std::u32string& word, std::vector<int32_t>* ids,
                 std::vector<std::string>* pieces) const;
  // Steps 1-4 over code points; calls `emit` for each word.
  template <typename Emit>
  void ForEachWord(absl::string_view text, Emit emit) const;

  WordPieceOptions options_;
  std::vector<std::string> tokens_;
  absl::flat_hash_map<std::string, int32_t> ids_;
  int32_t pad_id_ = -1, unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, mask_id_ = -1;
};

// The name the issue and BERT's docs use.
using BertTokenizer = WordPieceTokenizer;

}  // namespace headroom

#endif  // HEADROOM_DATA_WORDPIECE_TOKENIZER_H_
