// Python 3 str helpers over utf8proc; see unicode_text.h. The tables Python takes from its own
// Unicode database come from utf8proc's here; both follow the Unicode standard, so they differ
// only for characters added in a Unicode version one of them lacks.
#include "data/unicode_text.h"

#include "absl/strings/ascii.h"
#include "utf8proc.h"

namespace headroom {
namespace {

utf8proc_category_t Category(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

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

}  // namespace

bool PopCodePoint(absl::string_view* text, char32_t* c) {
  while (!text->empty()) {
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text->data());
    if (*p < 0x80) {  // ASCII: the common case, without the decoder
      *c = *p;
      text->remove_prefix(1);
      return true;
    }
    utf8proc_int32_t cp;
    const utf8proc_ssize_t n =
        utf8proc_iterate(p, static_cast<utf8proc_ssize_t>(text->size()), &cp);
    if (n < 0) {  // invalid UTF-8: drop the byte
      text->remove_prefix(1);
      continue;
    }
    *c = static_cast<char32_t>(cp);
    text->remove_prefix(static_cast<size_t>(n));
    return true;
  }
  return false;
}

std::u32string DecodeUtf8(absl::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  char32_t c;
  while (PopCodePoint(&text, &c)) out.push_back(c);
  return out;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
    return;
  }
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string EncodeUtf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) AppendUtf8(c, &out);
  return out;
}

void PythonLower(std::u32string* text) {
  const std::u32string& w = *text;
  std::u32string out;
  out.reserve(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const char32_t c = w[i];
    if (c < 0x80) {
      out.push_back(static_cast<char32_t>(absl::ascii_tolower(static_cast<unsigned char>(c))));
    } else if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {  // GREEK CAPITAL LETTER SIGMA: final sigma after a cased letter
      size_t j = i;
      while (j > 0 && IsCaseIgnorable(w[j - 1])) --j;
      bool final_sigma = j > 0 && IsCased(w[j - 1]);
      size_t k = i + 1;
      while (final_sigma && k < w.size() && IsCaseIgnorable(w[k])) ++k;
      if (final_sigma && k < w.size() && IsCased(w[k])) final_sigma = false;
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  *text = std::move(out);
}

bool IsPythonSpace(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool IsPythonWordChar(char32_t c) {
  if (c < 0x80) return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

std::vector<std::u32string> PythonSplit(const std::u32string& text) {
  std::vector<std::u32string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && IsPythonSpace(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !IsPythonSpace(text[i])) ++i;
    if (i > start) words.emplace_back(text, start, i - start);
  }
  return words;
}

}  // namespace headroom
