// WordPiece tokenizer: the character classes and steps of Google BERT's tokenization.py, with
// utf8proc standing in for Python's unicodedata. Text is decoded once into code points; each
// whitespace-separated word is normalised and split in place, then looked up piece by piece in
// a hash map keyed by UTF-8 strings. ASCII takes a short path that skips the Unicode tables
// (the bundled corpus is almost all ASCII) but gives the same answers.
#include "data/wordpiece_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "utf8proc.h"

namespace headroom {
namespace {

constexpr char kPad[] = "[PAD]";
constexpr char kUnk[] = "[UNK]";
constexpr char kCls[] = "[CLS]";
constexpr char kSep[] = "[SEP]";
constexpr char kMask[] = "[MASK]";

utf8proc_category_t Category(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

// BERT's _is_whitespace: space, tab, LF, CR and category Zs.
bool IsWhitespace(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  if (c < 0x80) return false;
  return Category(c) == UTF8PROC_CATEGORY_ZS;
}

// BERT's _is_control (Google's version: Cc and Cf; tab, LF and CR count as whitespace).
bool IsControl(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c >= 0x20 && c < 0x7f) return false;
  utf8proc_category_t cat = Category(c);
  return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF;
}

// BERT's _is_punctuation: all non-alphanumeric printable ASCII, plus Unicode P* categories.
bool IsPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  if (c < 0x80) return false;
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks and their extensions (not Hangul,
// Hiragana or Katakana, which are written with spaces or are handled by WordPiece).
bool IsCjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Python's str.split() also splits on line/paragraph separators, which cleaning keeps (they are
// neither Zs nor Cc/Cf); everything else Python calls whitespace is a space by now.
bool IsSplitSpace(char32_t c) { return c == ' ' || c == 0x2028 || c == 0x2029; }

// Python's Cased and Case_Ignorable properties, as far as the final-sigma rule needs them.
bool IsCased(char32_t c) {
  auto cp = static_cast<utf8proc_int32_t>(c);
  return utf8proc_islower(cp) || utf8proc_isupper(cp) || Category(c) == UTF8PROC_CATEGORY_LT;
}
bool IsCaseIgnorable(char32_t c) {
  switch (c) {
    case '\'':
    case '.':
    case ':':
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
      return true;
    default:
      break;
  }
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      return false;
  }
}

// Python's str.lower(): the simple mapping per code point, except that capital sigma at the end
// of a cased word becomes final sigma. (Python's one other special case, U+0130 -> "i" plus
// U+0307, gives the same result as the simple mapping once accents are stripped.)
void LowerCase(std::u32string* word) {
  const std::u32string& w = *word;
  std::u32string out(w.size(), 0);
  for (size_t i = 0; i < w.size(); ++i) {
    char32_t c = w[i];
    if (c < 0x80) {
      out[i] = absl::ascii_tolower(static_cast<unsigned char>(c));
    } else if (c == 0x3A3) {
      size_t j = i;
      while (j > 0 && IsCaseIgnorable(w[j - 1])) --j;
      bool final_sigma = j > 0 && IsCased(w[j - 1]);
      size_t k = i + 1;
      while (final_sigma && k < w.size() && IsCaseIgnorable(w[k])) ++k;
      if (final_sigma && k < w.size() && IsCased(w[k])) final_sigma = false;
      out[i] = final_sigma ? 0x3C2 : 0x3C3;
    } else {
      out[i] = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
    }
  }
  *word = std::move(out);
}

// _run_strip_accents: NFD, then drop category Mn.
void StripAccents(std::u32string* word) {
  bool ascii = std::all_of(word->begin(), word->end(), [](char32_t c) { return c < 0x80; });
  if (ascii) return;
  std::u32string nfd;
  utf8proc_int32_t buf[32];
  for (char32_t c : *word) {
    if (c < 0x80) {
      nfd.push_back(c);
      continue;
    }
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buf, 32,
                                                 UTF8PROC_DECOMPOSE, &boundclass);
    if (n < 0 || n > 32) {
      nfd.push_back(c);  // cannot happen for valid code points; keep the character
      continue;
    }
    nfd.append(reinterpret_cast<const char32_t*>(buf), static_cast<size_t>(n));
  }
  // Canonical ordering (the rest of NFD): stable-sort each run of combining characters by
  // combining class. Only marks that survive (Mc, Me with a class) can be affected.
  auto ccc = [](char32_t c) {
    return utf8proc_get_property(static_cast<int32_t>(c))->combining_class;
  };
  for (size_t i = 0; i < nfd.size();) {
    if (nfd[i] < 0x80 || ccc(nfd[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < nfd.size() && nfd[j] >= 0x80 && ccc(nfd[j]) != 0) ++j;
    std::stable_sort(nfd.begin() + i, nfd.begin() + j,
                     [&](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  word->clear();
  for (char32_t c : nfd) {
    if (c >= 0x80 && Category(c) == UTF8PROC_CATEGORY_MN) continue;
    word->push_back(c);
  }
}

void AppendUtf8(char32_t c, std::string* out) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string ToUtf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

}  // namespace

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromFile(const std::string& path,
                                                                WordPieceOptions options) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("cannot read vocabulary ", path, ": ",
                                                           text.status().message()));
  }
  std::vector<std::string> tokens;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    tokens.emplace_back(absl::StripAsciiWhitespace(line));
  }
  // The file's last newline ends the last token rather than starting an empty one.
  if (!tokens.empty() && tokens.back().empty()) tokens.pop_back();
  return FromTokens(std::move(tokens), options, path);
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromTokens(std::vector<std::string> tokens,
                                                                  WordPieceOptions options,
                                                                  const std::string& source) {
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocabulary ", source, " is empty; expected a BERT vocab.txt, one token per line"));
  }
  if (options.max_input_chars_per_word < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_input_chars_per_word must be >= 1, got ",
                                                   options.max_input_chars_per_word));
  }
  WordPieceTokenizer t;
  t.options_ = options;
  t.tokens_ = std::move(tokens);
  t.ids_.reserve(t.tokens_.size());
  // Google's load_vocab would let a later duplicate win and map "" to a blank line's id: both
  // are damaged vocabularies (ids the model can never produce for the text), so refused.
  for (size_t i = 0; i < t.tokens_.size(); ++i) {
    const std::string& token = t.tokens_[i];
    if (token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocabulary ", source, " line ", i + 1,
                       " is blank; a BERT vocab.txt has one token per "
                       "line and no empty lines"));
    }
    auto [it, inserted] = t.ids_.emplace(token, static_cast<int32_t>(i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("vocabulary ", source, " line ", i + 1,
                                                     ": duplicate token \"", token,
                                                     "\" (first at line ", it->second + 1, ")"));
    }
  }
  std::vector<std::string> missing;
  for (auto [name, id] :
       {std::pair{kPad, &t.pad_id_}, std::pair{kUnk, &t.unk_id_}, std::pair{kCls, &t.cls_id_},
        std::pair{kSep, &t.sep_id_}, std::pair{kMask, &t.mask_id_}}) {
    *id = t.TokenToId(name);
    if (*id < 0) missing.push_back(name);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocabulary ", source, " lacks the special token(s) ", absl::StrJoin(missing, " "),
        "; a BERT vocab.txt needs [PAD] [UNK] [CLS] [SEP] [MASK] (is this a "
        "WordPiece vocabulary?)"));
  }
  return t;
}

int32_t WordPieceTokenizer::TokenToId(absl::string_view token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

template <typename Emit>
void WordPieceTokenizer::ForEachWord(absl::string_view text, Emit emit) const {
  // Steps 1 and 2: decode, clean, space out CJK ideographs.
  std::u32string cps;
  cps.reserve(text.size() + 8);
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(text.size());
  while (left > 0) {
    char32_t c;
    if (*p < 0x80) {
      c = *p;
      ++p;
      --left;
    } else {
      utf8proc_int32_t cp;
      utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
      if (n < 0) {  // invalid UTF-8: drop the byte
        ++p;
        --left;
        continue;
      }
      p += n;
      left -= n;
      c = static_cast<char32_t>(cp);
    }
    if (c == 0 || c == 0xFFFD || IsControl(c)) continue;
    if (IsWhitespace(c)) {
      cps.push_back(' ');
    } else if (c >= 0x3400 && IsCjk(c)) {
      cps.push_back(' ');
      cps.push_back(c);
      cps.push_back(' ');
    } else {
      cps.push_back(c);
    }
  }
  // Steps 3 and 4, word by word.
  std::u32string word, piece;
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && IsSplitSpace(cps[i])) ++i;
    size_t start = i;
    while (i < cps.size() && !IsSplitSpace(cps[i])) ++i;
    if (start == i) break;
    word.assign(cps, start, i - start);
    if (options_.do_lower_case) {
      LowerCase(&word);
      StripAccents(&word);
    }
    piece.clear();
    for (char32_t c : word) {
      if (IsPunctuation(c)) {
        if (!piece.empty()) emit(piece);
        piece.assign(1, c);
        emit(piece);
        piece.clear();
      } else {
        piece.push_back(c);
      }
    }
    if (!piece.empty()) emit(piece);
  }
}

void WordPieceTokenizer::WordPiece(const std::u32string& word, std::vector<int32_t>* ids,
                                   std::vector<std::string>* pieces) const {
  auto emit = [&](int32_t id) {
    if (ids != nullptr) ids->push_back(id);
    if (pieces != nullptr) pieces->push_back(tokens_[id]);
  };
  if (word.size() > static_cast<size_t>(options_.max_input_chars_per_word)) {
    emit(unk_id_);
    return;
  }
  // UTF-8 bytes of the word and the byte offset of each code point (offsets[n] = end).
  std::string bytes;
  std::vector<size_t> offsets;
  offsets.reserve(word.size() + 1);
  for (char32_t c : word) {
    offsets.push_back(bytes.size());
    AppendUtf8(c, &bytes);
  }
  offsets.push_back(bytes.size());
  const size_t n = word.size();
  size_t mark = ids != nullptr ? ids->size() : 0, pmark = pieces != nullptr ? pieces->size() : 0;
  std::string candidate;
  for (size_t start = 0; start < n;) {
    int32_t found = -1;
    size_t end = n;
    for (; end > start; --end) {
      absl::string_view sub(bytes.data() + offsets[start], offsets[end] - offsets[start]);
      if (start > 0) {
        candidate.assign("##");
        candidate.append(sub.data(), sub.size());
        found = TokenToId(candidate);
      } else {
        found = TokenToId(sub);
      }
      if (found >= 0) break;
    }
    if (found < 0) {  // no segmentation: the whole word is [UNK]
      if (ids != nullptr) ids->resize(mark);
      if (pieces != nullptr) pieces->resize(pmark);
      emit(unk_id_);
      return;
    }
    emit(found);
    start = end;
  }
}

std::vector<std::string> WordPieceTokenizer::BasicTokenize(absl::string_view text) const {
  std::vector<std::string> words;
  ForEachWord(text, [&](const std::u32string& w) { words.push_back(ToUtf8(w)); });
  return words;
}

std::vector<std::string> WordPieceTokenizer::Tokenize(absl::string_view text) const {
  std::vector<std::string> pieces;
  ForEachWord(text, [&](const std::u32string& w) { WordPiece(w, nullptr, &pieces); });
  return pieces;
}

void WordPieceTokenizer::Encode(absl::string_view text, std::vector<int32_t>* ids) const {
  ForEachWord(text, [&](const std::u32string& w) { WordPiece(w, ids, nullptr); });
}

std::vector<int32_t> WordPieceTokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> ids;
  Encode(text, &ids);
  return ids;
}

}  // namespace headroom
