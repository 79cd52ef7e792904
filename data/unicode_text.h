// Unicode text helpers that reproduce Python 3's str methods, for code ported from Python
// (Google BERT's tokenization.py and run_squad.py, the official SQuAD evaluation script):
// UTF-8 <-> code points, str.lower(), str.split()'s whitespace and the `\w` class of `re`.
//
// Python indexes strings by code point, so ports that keep character offsets (SQuAD's
// answer_start, run_squad's char_to_word_offset) work on std::u32string.
//
// Example:
//   std::u32string s = DecodeUtf8("\u0130STANBUL \u03a3\u039f\u03a3");
//   PythonLower(&s);                 // "i\u0307stanbul \u03c3\u03bf\u03c2" (final sigma)
//   std::vector<std::u32string> w = PythonSplit(s);   // 2 words
#ifndef HEADROOM_DATA_UNICODE_TEXT_H_
#define HEADROOM_DATA_UNICODE_TEXT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace headroom {

// Code points of UTF-8 `text`; invalid bytes are dropped (Python's decode(errors="ignore")).
std::u32string DecodeUtf8(absl::string_view text);
// The next code point of `*text` into `*c`, removing its bytes (and any invalid bytes before
// it, dropped as DecodeUtf8 drops them) from the front; false once nothing is left.
bool PopCodePoint(absl::string_view* text, char32_t* c);
// UTF-8 of code points (each must be a valid scalar value).
std::string EncodeUtf8(const std::u32string& text);
void AppendUtf8(char32_t c, std::string* out);

// Python's str.lower() in place: the simple lower-case mapping per code point, capital sigma at
// the end of a cased word becoming final sigma, and U+0130 becoming "i" + U+0307 (the only
// unconditional special lower-case mapping of SpecialCasing.txt).
void PythonLower(std::u32string* text);

// Whitespace as str.split() and str.strip() see it: U+0009..U+000D, U+001C..U+001F, space,
// U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool IsPythonSpace(char32_t c);

// `\w` of Python's re module on str patterns: letters and numbers (Unicode categories L* and
// N*) and the underscore.
bool IsPythonWordChar(char32_t c);

// str.split() without arguments: the maximal runs of non-whitespace, in order.
std::vector<std::u32string> PythonSplit(const std::u32string& text);

}  // namespace headroom

#endif  // HEADROOM_DATA_UNICODE_TEXT_H_
