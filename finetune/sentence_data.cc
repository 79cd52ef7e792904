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

absl::StatusOr<std::vector<TaskFeature>> SentenceFeatures(
    const std::vector<SentenceExample>& examples, const std::vector<std::string>& labels,
    const WordPieceTokenizer& tokenizer, int max_seq_length) {
  std::vector<TaskFeature> out;
  out.reserve(examples.size());
  for (const SentenceExample& ex : examples) {
    auto it = std::find(labels.begin(), labels.end(), ex.label);
    if (it == labels.end()) {
      return Bad(ex.source, absl::StrCat("label '", ex.label, "' is not one of the task's labels (",
                                         absl::StrJoin(labels, ", "), ")"));
    }
    std::vector<int32_t> a = tokenizer.Encode(ex.text_a), b;
    if (ex.has_b) {
      b = tokenizer.Encode(ex.text_b);
      TruncatePair(a, b, static_cast<size_t>(max_seq_length - 3));
    } else if (static_cast<int>(a.size()) > max_seq_length - 2) {
      a.resize(static_cast<size_t>(max_seq_length - 2));
    }
    TaskFeature f;
    f.input_ids.push_back(tokenizer.cls_id());
    f.input_ids.insert(f.input_ids.end(), a.begin(), a.end());
    f.input_ids.push_back(tokenizer.sep_id());
    f.segment_b_start = static_cast<int32_t>(f.input_ids.size());
    if (ex.has_b) {
      f.input_ids.insert(f.input_ids.end(), b.begin(), b.end());
      f.input_ids.push_back(tokenizer.sep_id());
    }
    f.label = static_cast<int32_t>(it - labels.begin());
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace headroom
