// GLUE / headed TSV readers and run_classifier.py's features; see sentence_data.h.
#include "finetune/sentence_data.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/status_macros.h"

namespace headroom {
namespace {

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// The column of `header` named `name`, or -1.
int Column(const std::vector<std::string>& header, const std::string& name) {
  auto it = std::find(header.begin(), header.end(), name);
  return it == header.end() ? -1 : static_cast<int>(it - header.begin());
}

// _truncate_seq_pair: pop from the longer sequence (B on ties) until the pair fits.
void TruncatePair(std::vector<int32_t>& a, std::vector<int32_t>& b, size_t max_length) {
  while (a.size() + b.size() > max_length) {
    if (a.size() > b.size()) {
      a.pop_back();
    } else {
      b.pop_back();
    }
  }
}

}  // namespace

const std::vector<std::string>& MnliLabels() {
  static const std::vector<std::string> labels = {"contradiction", "entailment", "neutral"};
  return labels;
}

absl::StatusOr<std::vector<SentenceExample>> ParseSentenceTsv(const std::string& text,
                                                              const std::string& path,
                                                              SentenceFormat format) {
  std::vector<SentenceExample> out;
  std::vector<std::string> header;
  int col_a = -1, col_b = -1, col_label = -1;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::vector<std::string> cols = absl::StrSplit(line, '\t');
    const std::string where = absl::StrCat(path, ":", line_number);
    if (header.empty()) {  // the header line
      header = cols;
      if (format == SentenceFormat::kClassify) {
        col_label = Column(header, "label");
        col_a = Column(header, "sentence");
        if (col_a < 0) {
          col_a = Column(header, "sentence1");
          col_b = Column(header, "sentence2");
        }
        if (col_a < 0 || col_label < 0 || (Column(header, "sentence") < 0 && col_b < 0)) {
          return Bad(where, absl::StrCat("the header (", absl::StrJoin(header, ", "),
                                         ") must name `sentence` (or `sentence1` and "
                                         "`sentence2`) and `label` columns, tab-separated"));
        }
      }
      continue;
    }
    SentenceExample ex;
    ex.source = where;
    if (format == SentenceFormat::kMnli) {
      if (cols.size() < 11) {
        return Bad(where, absl::StrCat("has ", cols.size(),
                                       " tab-separated columns; GLUE MNLI rows have sentence1 in "
                                       "column 9, sentence2 in 10 and the label last"));
      }
      ex.text_a = cols[8];
      ex.text_b = cols[9];
      ex.has_b = true;
      ex.label = cols.back();
    } else {
      const int needed = std::max({col_a, col_b, col_label}) + 1;
      if (static_cast<int>(cols.size()) < needed) {
        return Bad(where, absl::StrCat("has ", cols.size(), " tab-separated columns, the header ",
                                       header.size()));
      }
      ex.text_a = cols[col_a];
      if (col_b >= 0) {
        ex.text_b = cols[col_b];
        ex.has_b = true;
      }
      ex.label = cols[col_label];
    }
    out.push_back(std::move(ex));
  }
  if (header.empty()) return Bad(path, "is empty; expected a header line and examples");
  return out;
}

absl::StatusOr<std::vector<SentenceExample>> ReadSentenceTsv(const std::string& path,
                                                             SentenceFormat format) {
  HR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseSentenceTsv(text, path, format);
}

std::vector<std::string> DistinctLabels(const std::vector<SentenceExample>& examples) {
  std::set<std::string> labels;
  for (const SentenceExample& e : examples) labels.insert(e.label);
  return {labels.begin(), labels.end()};
}

namespace {

// The index of `ex`'s label in `labels`; InvalidArgument naming the example's line otherwise.
absl::StatusOr<int32_t> LabelIndex(const SentenceExample& ex,
                                   const std::vector<std::string>& labels) {
  auto it = std::find(labels.begin(), labels.end(), ex.label);
  if (it == labels.end()) {
    return Bad(ex.source, absl::StrCat("label '", ex.label, "' is not one of the task's labels (",
                                       absl::StrJoin(labels, ", "), ")"));
  }
  return static_cast<int32_t>(it - labels.begin());
}

// [CLS] a [SEP] (b [SEP]) with `label`.
TaskFeature MakeFeature(const WordPieceTokenizer& tokenizer, std::vector<int32_t>::const_iterator a,
                        std::vector<int32_t>::const_iterator a_end, const std::vector<int32_t>* b,
                        int32_t label) {
  TaskFeature f;
  f.input_ids.push_back(tokenizer.cls_id());
  f.input_ids.insert(f.input_ids.end(), a, a_end);
  f.input_ids.push_back(tokenizer.sep_id());
  f.segment_b_start = static_cast<int32_t>(f.input_ids.size());
  if (b != nullptr) {
    f.input_ids.insert(f.input_ids.end(), b->begin(), b->end());
    f.input_ids.push_back(tokenizer.sep_id());
  }
  f.label = label;
  return f;
}

}  // namespace

absl::StatusOr<std::vector<TaskFeature>> SentenceFeatures(
    const std::vector<SentenceExample>& examples, const std::vector<std::string>& labels,
    const WordPieceTokenizer& tokenizer, int max_seq_length) {
  std::vector<TaskFeature> out;
  out.reserve(examples.size());
  for (const SentenceExample& ex : examples) {
    HR_ASSIGN_OR_RETURN(const int32_t label, LabelIndex(ex, labels));
    std::vector<int32_t> a = tokenizer.Encode(ex.text_a), b;
    if (ex.has_b) {
      b = tokenizer.Encode(ex.text_b);
      TruncatePair(a, b, static_cast<size_t>(max_seq_length - 3));
    } else if (static_cast<int>(a.size()) > max_seq_length - 2) {
      a.resize(static_cast<size_t>(max_seq_length - 2));
    }
    out.push_back(MakeFeature(tokenizer, a.begin(), a.end(), ex.has_b ? &b : nullptr, label));
  }
  return out;
}

absl::StatusOr<SentenceWindows> SentenceWindowFeatures(const std::vector<SentenceExample>& examples,
                                                       const std::vector<std::string>& labels,
                                                       const WordPieceTokenizer& tokenizer,
                                                       int max_seq_length, int doc_stride) {
  SentenceWindows out;
  for (size_t e = 0; e < examples.size(); ++e) {
    const SentenceExample& ex = examples[e];
    if (ex.has_b) {
      return Bad(ex.source,
                 "is a sentence pair; finetune.long_text_windows takes single sentences (a TSV "
                 "with a `sentence` column)");
    }
    HR_ASSIGN_OR_RETURN(const int32_t label, LabelIndex(ex, labels));
    const std::vector<int32_t> a = tokenizer.Encode(ex.text_a);
    std::vector<TokenWindow> windows =
        TokenWindows(static_cast<int>(a.size()), max_seq_length - 2, doc_stride);
    if (windows.empty()) windows.push_back({0, 0});
    for (const TokenWindow& w : windows) {
      out.features.push_back(MakeFeature(tokenizer, a.begin() + w.start,
                                         a.begin() + w.start + w.length, nullptr, label));
      out.example_of_feature.push_back(static_cast<int32_t>(e));
    }
  }
  return out;
}

std::vector<int32_t> MeanLogitPredictions(const std::vector<float>& logits, int num_labels,
                                          const std::vector<int32_t>& example_of_feature,
                                          int num_examples) {
  const size_t L = static_cast<size_t>(num_labels);
  std::vector<double> sums(static_cast<size_t>(num_examples) * L, 0.0);
  std::vector<int64_t> counts(static_cast<size_t>(num_examples), 0);
  for (size_t f = 0; f < example_of_feature.size(); ++f) {
    const size_t e = static_cast<size_t>(example_of_feature[f]);
    for (size_t l = 0; l < L; ++l) sums[e * L + l] += logits[f * L + l];
    ++counts[e];
  }
  std::vector<int32_t> predictions(static_cast<size_t>(num_examples), -1);
  for (size_t e = 0; e < predictions.size(); ++e) {
    if (counts[e] == 0) continue;
    size_t best = 0;  // the mean's argmax is the sum's: the count is positive
    for (size_t l = 1; l < L; ++l) {
      if (sums[e * L + l] > sums[e * L + best]) best = l;
    }
    predictions[e] = static_cast<int32_t>(best);
  }
  return predictions;
}

}  // namespace headroom
