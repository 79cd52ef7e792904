// The SQuAD v1.1 metric; see squad_metric.h. Text is handled as code points, as Python's str
// is, so lower-casing and the word-boundary test see characters, not bytes.
#include "finetune/squad_metric.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "data/unicode_text.h"

namespace headroom {
namespace {

// Python's string.punctuation: the 32 printable ASCII characters that are neither letters,
// digits nor space.
bool IsAsciiPunctuation(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}

// re.sub(r'\b(a|an|the)\b', ' ', text): scanning left to right, an article that starts at a
// word boundary and ends at one is replaced by a space; matches do not overlap.
std::u32string RemoveArticles(const std::u32string& t) {
  static const std::u32string kArticles[] = {U"a", U"an", U"the"};  // the alternation's order
  std::u32string out;
  out.reserve(t.size());
  size_t i = 0;
  while (i < t.size()) {
    size_t matched = 0;
    if (i == 0 || !IsPythonWordChar(t[i - 1])) {
      for (const std::u32string& a : kArticles) {
        const size_t end = i + a.size();
        if (t.compare(i, a.size(), a) == 0 && (end == t.size() || !IsPythonWordChar(t[end]))) {
          matched = a.size();
          break;
        }
      }
    }
    if (matched > 0) {
      out.push_back(U' ');
      i += matched;
    } else {
      out.push_back(t[i++]);
    }
  }
  return out;
}

// The tokens of the normalised answer (normalize_answer(s).split()).
std::vector<std::u32string> NormalizedTokens(absl::string_view text) {
  std::u32string s = DecodeUtf8(text);
  PythonLower(&s);
  s.erase(std::remove_if(s.begin(), s.end(), IsAsciiPunctuation), s.end());
  return PythonSplit(RemoveArticles(s));
}

}  // namespace

std::string NormalizeAnswer(absl::string_view text) {
  std::string out;
  for (const std::u32string& w : NormalizedTokens(text)) {
    if (!out.empty()) out.push_back(' ');
    out += EncodeUtf8(w);
  }
  return out;
}

double SquadExactMatch(absl::string_view prediction, absl::string_view gold) {
  return NormalizeAnswer(prediction) == NormalizeAnswer(gold) ? 1.0 : 0.0;
}

double SquadF1(absl::string_view prediction, absl::string_view gold) {
  const std::vector<std::u32string> p = NormalizedTokens(prediction);
  const std::vector<std::u32string> g = NormalizedTokens(gold);
  absl::flat_hash_map<std::u32string, int> gold_counts;
  for (const std::u32string& w : g) ++gold_counts[w];
  int common = 0;
  for (const std::u32string& w : p) {
    auto it = gold_counts.find(w);
    if (it != gold_counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  if (common == 0) return 0.0;
  const double precision = 1.0 * common / static_cast<double>(p.size());
  const double recall = 1.0 * common / static_cast<double>(g.size());
  return 2 * precision * recall / (precision + recall);
}

absl::StatusOr<SquadMetrics> EvaluateSquad(const SquadDataset& dataset,
                                           const SquadPredictions& predictions) {
  SquadMetrics m;
  double em = 0, f1 = 0;
  for (const SquadParagraph& paragraph : dataset.paragraphs) {
    for (const SquadQuestion& q : paragraph.questions) {
      ++m.questions;
      auto it = predictions.find(q.id);
      if (it == predictions.end()) {
        m.unanswered.push_back(q.id);
        continue;
      }
      double best_em = 0, best_f1 = 0;
      for (const SquadAnswer& a : q.answers) {
        best_em = std::max(best_em, SquadExactMatch(it->second, a.text));
        best_f1 = std::max(best_f1, SquadF1(it->second, a.text));
      }
      em += best_em;
      f1 += best_f1;
    }
  }
  if (m.questions == 0) {
    return absl::InvalidArgumentError(
        "the dataset has no questions: nothing to evaluate (is it a SQuAD v1.1 file?)");
  }
  m.exact_match = 100.0 * em / static_cast<double>(m.questions);
  m.f1 = 100.0 * f1 / static_cast<double>(m.questions);
  return m;
}

std::string SquadMetrics::ToJson() const {
  return absl::StrCat("{\"exact_match\": ", PythonFloatRepr(exact_match),
                      ", \"f1\": ", PythonFloatRepr(f1), "}");
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "NaN";  // json.dumps spellings
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: [-]d[.ddd]e[+-]XX.
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  (void)ec;  // 64 characters always suffice for a double
  std::string sci(buf, end);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string sign;
  if (mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  if (exponent < -4 || exponent >= 16) {
    std::string m = digits.substr(0, 1);
    if (digits.size() > 1) absl::StrAppend(&m, ".", digits.substr(1));
    const int a = std::abs(exponent);
    return absl::StrCat(sign, m, "e", exponent < 0 ? "-" : "+", a < 10 ? "0" : "", a);
  }
  // Fixed: the decimal point sits after digit exponent + 1.
  const int point = exponent + 1;
  std::string out;
  if (point <= 0) {
    out = absl::StrCat("0.", std::string(static_cast<size_t>(-point), '0'), digits);
  } else if (static_cast<size_t>(point) >= digits.size()) {
    out = absl::StrCat(digits, std::string(static_cast<size_t>(point) - digits.size(), '0'), ".0");
  } else {
    out = absl::StrCat(digits.substr(0, static_cast<size_t>(point)), ".",
                       digits.substr(static_cast<size_t>(point)));
  }
  return sign + out;
}

}  // namespace headroom
