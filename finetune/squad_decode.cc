// run_squad.py's write_predictions and get_final_text; see squad_decode.h. Strings are
// compared and indexed as code points, as in Python.
#include "finetune/squad_decode.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "data/unicode_text.h"

namespace headroom {
namespace {

// _get_best_indexes: positions of the n largest logits, largest first, ties in position order.
std::vector<int> BestIndexes(const std::vector<float>& logits, int n) {
  std::vector<int> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (static_cast<int>(idx.size()) > n) idx.resize(static_cast<size_t>(n));
  return idx;
}

// _strip_spaces: the text without ' ' characters, and for each of its characters the index in
// the original.
std::u32string StripSpaces(const std::u32string& text, std::vector<int>* ns_to_s) {
  std::u32string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == U' ') continue;
    ns_to_s->push_back(static_cast<int>(i));
    out.push_back(text[i]);
  }
  return out;
}

struct Candidate {
  int feature = 0;  // index into the example's features
  int start = 0, end = 0;
  double score = 0;  // start_logit + end_logit
};

// The de-tokenised text of tokens [start, end] of a feature.
std::string TokenText(const std::vector<int32_t>& ids, int start, int end,
                      const WordPieceTokenizer& tokenizer) {
  std::vector<std::string> tokens;
  for (int i = start; i <= end; ++i) tokens.push_back(tokenizer.IdToToken(ids[i]));
  std::string text = absl::StrJoin(tokens, " ");
  text = absl::StrReplaceAll(text, {{" ##", ""}});
  text = absl::StrReplaceAll(text, {{"##", ""}});
  std::string out;
  for (const std::u32string& w : PythonSplit(DecodeUtf8(text))) {
    if (!out.empty()) out.push_back(' ');
    out += EncodeUtf8(w);
  }
  return out;
}

}  // namespace

std::string GetFinalText(const std::string& pred_text, const std::string& orig_text,
                         const WordPieceTokenizer& tokenizer) {
  const std::u32string orig = DecodeUtf8(orig_text);
  const std::u32string tok = DecodeUtf8(absl::StrJoin(tokenizer.BasicTokenize(orig_text), " "));
  const std::u32string pred = DecodeUtf8(pred_text);
  const size_t start = tok.find(pred);
  if (start == std::u32string::npos) return orig_text;
  const size_t end = start + pred.size() - 1;

  std::vector<int> orig_ns_to_s, tok_ns_to_s;
  const std::u32string orig_ns = StripSpaces(orig, &orig_ns_to_s);
  const std::u32string tok_ns = StripSpaces(tok, &tok_ns_to_s);
  if (orig_ns.size() != tok_ns.size()) return orig_text;
  std::map<int, int> tok_s_to_ns;
  for (size_t i = 0; i < tok_ns_to_s.size(); ++i) tok_s_to_ns[tok_ns_to_s[i]] = static_cast<int>(i);

  // A position maps back only if it is not a space in the tokenised text.
  auto to_orig = [&](size_t pos) -> int {
    auto it = tok_s_to_ns.find(static_cast<int>(pos));
    return it == tok_s_to_ns.end() ? -1 : orig_ns_to_s[static_cast<size_t>(it->second)];
  };
  const int orig_start = to_orig(start), orig_end = to_orig(end);
  if (orig_start < 0 || orig_end < 0) return orig_text;
  return EncodeUtf8(
      orig.substr(static_cast<size_t>(orig_start), static_cast<size_t>(orig_end - orig_start + 1)));
}

std::vector<std::pair<std::string, std::string>> DecodeSquadPredictions(
    const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
    const std::vector<std::vector<float>>& start_logits,
    const std::vector<std::vector<float>>& end_logits, const WordPieceTokenizer& tokenizer,
    const SquadDecodeOptions& options) {
  std::vector<std::vector<int>> by_example(examples.size());
  for (size_t i = 0; i < features.size(); ++i) by_example[features[i].example_index].push_back(i);

  std::vector<std::pair<std::string, std::string>> out;
  for (size_t e = 0; e < examples.size(); ++e) {
    const SquadExample& ex = examples[e];
    std::vector<Candidate> candidates;
    for (int fi = 0; fi < static_cast<int>(by_example[e].size()); ++fi) {
      const size_t i = static_cast<size_t>(by_example[e][fi]);
      const SquadFeature& f = features[i];
      const int n = static_cast<int>(f.feature.input_ids.size());
      for (int s : BestIndexes(start_logits[i], options.n_best_size)) {
        for (int t : BestIndexes(end_logits[i], options.n_best_size)) {
          if (s >= n || t >= n) continue;
          if (f.token_to_orig_map[s] < 0 || f.token_to_orig_map[t] < 0) continue;
          if (!f.token_is_max_context[s]) continue;
          if (t < s || t - s + 1 > options.max_answer_length) continue;
          candidates.push_back(
              {fi, s, t,
               static_cast<double>(start_logits[i][s]) + static_cast<double>(end_logits[i][t])});
        }
      }
    }
    // The answer is the first entry of run_squad's n-best list, the first of the candidates
    // with the highest score after its stable sort: the first maximum (the rest of the list
    // only feeds nbest_predictions.json).
    if (candidates.empty()) {  // run_squad's nonce answer when no candidate survives
      out.emplace_back(ex.qas_id, "empty");
      continue;
    }
    const Candidate& c =
        *std::max_element(candidates.begin(), candidates.end(),
                          [](const Candidate& a, const Candidate& b) { return a.score < b.score; });
    const SquadFeature& f = features[static_cast<size_t>(by_example[e][c.feature])];
    const std::string tok_text = TokenText(f.feature.input_ids, c.start, c.end, tokenizer);
    const int orig_start = f.token_to_orig_map[c.start], orig_end = f.token_to_orig_map[c.end];
    const std::string orig_text = absl::StrJoin(ex.doc_tokens.begin() + orig_start,
                                                ex.doc_tokens.begin() + orig_end + 1, " ");
    out.emplace_back(ex.qas_id, GetFinalText(tok_text, orig_text, tokenizer));
  }
  return out;
}

}  // namespace headroom
