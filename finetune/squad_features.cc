// SQuAD examples and features as run_squad.py; see squad_features.h. Positions within the
// context are code points (Python string indices); token comparisons use ids, which map one to
// one to WordPiece token strings.
#include "finetune/squad_features.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/unicode_text.h"

namespace headroom {
namespace {

// run_squad's is_whitespace (narrower than Python's str.isspace).
bool IsSquadWhitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0x202F;
}

// The context's whitespace tokens and, per code point, the index of the token it belongs to
// (the previous token for whitespace; -1 before the first token).
void SplitContext(const std::u32string& context, std::vector<std::string>* doc_tokens,
                  std::vector<int>* char_to_word_offset) {
  std::vector<std::u32string> words;
  bool prev_is_whitespace = true;
  for (char32_t c : context) {
    if (IsSquadWhitespace(c)) {
      prev_is_whitespace = true;
    } else {
      if (prev_is_whitespace) {
        words.emplace_back(1, c);
      } else {
        words.back().push_back(c);
      }
      prev_is_whitespace = false;
    }
    char_to_word_offset->push_back(static_cast<int>(words.size()) - 1);
  }
  for (const std::u32string& w : words) doc_tokens->push_back(EncodeUtf8(w));
}

absl::Status BadQuestion(const std::string& source, const std::string& id,
                         const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": question ", id, ": ", what));
}

// _improve_answer_span: the first (start, end) inside [start, end], scanning starts forward
// and ends backward, whose tokens are exactly the tokenised answer text.
std::pair<int, int> ImproveAnswerSpan(const std::vector<int32_t>& doc, int start, int end,
                                      const std::vector<int32_t>& answer) {
  for (int s = start; s <= end; ++s) {
    for (int e = end; e >= s; --e) {
      if (static_cast<size_t>(e - s + 1) == answer.size() &&
          std::equal(answer.begin(), answer.end(), doc.begin() + s)) {
        return {s, e};
      }
    }
  }
  return {start, end};
}

// _check_is_max_context: whether `span_index` is the window with the most context around
// `position` (score min(left, right) + 0.01 * length, the first best on ties).
bool IsMaxContext(const std::vector<TokenWindow>& spans, int span_index, int position) {
  double best_score = -1;
  int best = -1;
  for (int i = 0; i < static_cast<int>(spans.size()); ++i) {
    const int end = spans[i].start + spans[i].length - 1;
    if (position < spans[i].start || position > end) continue;
    const int left = position - spans[i].start, right = end - position;
    const double score = std::min(left, right) + 0.01 * spans[i].length;
    if (best < 0 || score > best_score) {
      best_score = score;
      best = i;
    }
  }
  return best == span_index;
}

}  // namespace

absl::StatusOr<std::vector<SquadExample>> ReadSquadExamples(const SquadDataset& dataset,
                                                            const std::string& source,
                                                            bool is_training,
                                                            std::vector<std::string>* warnings) {
  std::vector<SquadExample> examples;
  for (const SquadParagraph& paragraph : dataset.paragraphs) {
    std::vector<std::string> doc_tokens;
    std::vector<int> char_to_word_offset;
    SplitContext(DecodeUtf8(paragraph.context), &doc_tokens, &char_to_word_offset);
    for (const SquadQuestion& q : paragraph.questions) {
      SquadExample ex;
      ex.qas_id = q.id;
      ex.question_text = q.question;
      ex.doc_tokens = doc_tokens;
      if (is_training) {
        if (q.answers.size() != 1) {
          return BadQuestion(source, q.id,
                             absl::StrCat("has ", q.answers.size(),
                                          " answers; for training each question needs exactly 1"));
        }
        const SquadAnswer& a = q.answers[0];
        const int64_t length = static_cast<int64_t>(DecodeUtf8(a.text).size());
        const int64_t last = a.answer_start + length - 1;
        if (length == 0) return BadQuestion(source, q.id, "the answer text is empty");
        if (last >= static_cast<int64_t>(char_to_word_offset.size())) {
          return BadQuestion(source, q.id,
                             absl::StrCat("answer_start ", a.answer_start, " + ", length,
                                          " characters runs past the end of the context (",
                                          char_to_word_offset.size(), " characters)"));
        }
        ex.orig_answer_text = a.text;
        ex.start_position = char_to_word_offset[a.answer_start];
        ex.end_position = char_to_word_offset[last];
        // Only answers whose text can be found in their doc tokens (run_squad's check).
        std::string cleaned;
        for (const std::u32string& w : PythonSplit(DecodeUtf8(a.text))) {
          absl::StrAppend(&cleaned, cleaned.empty() ? "" : " ", EncodeUtf8(w));
        }
        std::string actual;
        if (ex.start_position >= 0) {
          actual = absl::StrJoin(doc_tokens.begin() + ex.start_position,
                                 doc_tokens.begin() + ex.end_position + 1, " ");
        }
        if (ex.start_position < 0 || actual.find(cleaned) == std::string::npos) {
          if (warnings != nullptr) {
            warnings->push_back(absl::StrCat(source, ": question ", q.id,
                                             ": could not find answer '", cleaned, "' in '", actual,
                                             "'; skipped"));
          }
          continue;
        }
      }
      examples.push_back(std::move(ex));
    }
  }
  return examples;
}

std::vector<SquadFeature> ConvertSquadExamples(const std::vector<SquadExample>& examples,
                                               const WordPieceTokenizer& tokenizer,
                                               const SquadFeatureOptions& options,
                                               bool is_training) {
  std::vector<SquadFeature> features;
  int64_t unique_id = 1000000000;
  for (size_t example_index = 0; example_index < examples.size(); ++example_index) {
    const SquadExample& ex = examples[example_index];
    std::vector<int32_t> query = tokenizer.Encode(ex.question_text);
    if (static_cast<int>(query.size()) > options.max_query_length) {
      query.resize(static_cast<size_t>(options.max_query_length));
    }
    std::vector<int> tok_to_orig, orig_to_tok;
    std::vector<int32_t> doc;
    for (size_t i = 0; i < ex.doc_tokens.size(); ++i) {
      orig_to_tok.push_back(static_cast<int>(doc.size()));
      tokenizer.Encode(ex.doc_tokens[i], &doc);
      tok_to_orig.resize(doc.size(), static_cast<int>(i));
    }
    const int num_doc = static_cast<int>(doc.size());
    int tok_start = -1, tok_end = -1;
    if (is_training && ex.start_position >= 0) {
      tok_start = orig_to_tok[ex.start_position];
      tok_end = ex.end_position < static_cast<int>(ex.doc_tokens.size()) - 1
                    ? orig_to_tok[ex.end_position + 1] - 1
                    : num_doc - 1;
      std::tie(tok_start, tok_end) =
          ImproveAnswerSpan(doc, tok_start, tok_end, tokenizer.Encode(ex.orig_answer_text));
    }

    // Windows of at most max_tokens_for_doc tokens, every doc_stride tokens.
    const int max_tokens_for_doc = options.max_seq_length - static_cast<int>(query.size()) - 3;
    const std::vector<TokenWindow> spans =
        TokenWindows(num_doc, max_tokens_for_doc, options.doc_stride);

    const int doc_offset = static_cast<int>(query.size()) + 2;
    for (int span_index = 0; span_index < static_cast<int>(spans.size()); ++span_index) {
      const TokenWindow& span = spans[span_index];
      SquadFeature f;
      f.unique_id = unique_id++;
      f.example_index = static_cast<int>(example_index);
      f.doc_span_index = span_index;
      std::vector<int32_t>& ids = f.feature.input_ids;
      ids.push_back(tokenizer.cls_id());
      ids.insert(ids.end(), query.begin(), query.end());
      ids.push_back(tokenizer.sep_id());
      f.feature.segment_b_start = doc_offset;
      ids.insert(ids.end(), doc.begin() + span.start, doc.begin() + span.start + span.length);
      ids.push_back(tokenizer.sep_id());
      if (!is_training) {
        f.token_to_orig_map.assign(ids.size(), -1);
        f.token_is_max_context.assign(ids.size(), 0);
        for (int i = 0; i < span.length; ++i) {
          f.token_to_orig_map[doc_offset + i] = tok_to_orig[span.start + i];
          f.token_is_max_context[doc_offset + i] =
              IsMaxContext(spans, span_index, span.start + i) ? 1 : 0;
        }
      }
      if (is_training && tok_start >= 0) {
        const int doc_end = span.start + span.length - 1;
        if (tok_start >= span.start && tok_end <= doc_end) {
          f.feature.start_position = tok_start - span.start + doc_offset;
          f.feature.end_position = tok_end - span.start + doc_offset;
        } else {  // the answer is not (entirely) in this window: predict [CLS]
          f.feature.start_position = 0;
          f.feature.end_position = 0;
        }
      }
      features.push_back(std::move(f));
    }
  }
  return features;
}

}  // namespace headroom
