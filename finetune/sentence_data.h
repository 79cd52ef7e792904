// Sentence (pair) classification data: GLUE MNLI files and any headed TSV, read as Google
// BERT's run_classifier.py reads them, and turned into TaskFeatures as its
// convert_single_example does.
//
// Files are tab-separated with no quoting (Python's csv.reader(delimiter="\t",
// quotechar=None)); a trailing CR is dropped and blank lines are skipped. The first line is a
// header:
//   MNLI (train.tsv, dev_matched.tsv, dev_mismatched.tsv of GLUE's MNLI directory): sentence1 is
//     column 8, sentence2 column 9 (0-based), the gold label the last column; labels
//     contradiction, entailment, neutral (MnliProcessor).
//   classify: any TSV whose header names a `sentence` column (one sentence) or `sentence1` and
//     `sentence2` columns (a pair), and a `label` column; labels are the strings found, indexed
//     in sorted order of the training file's distinct labels (e.g. SST-2's 0/1, or ham/spam).
//
// Features: tokens_a, tokens_b = WordPiece of each text; a pair is cut to max_seq_length - 3
// tokens by popping the last token of the longer one (ties: B) until it fits, a single
// sentence to max_seq_length - 2; then [CLS] A [SEP] (B [SEP]) (finetune/task_feature.h).
//
// Long texts (finetune.long_text_windows): SentenceWindowFeatures cuts each single sentence
// into TokenWindows (finetune/task_feature.h) of max_seq_length - 2 tokens every doc_stride
// tokens, one feature [CLS] window [SEP] per window with the text's label;
// MeanLogitPredictions then predicts each text from the mean of its windows' logits.
//
// Errors are InvalidArgument naming the file and line: too few columns, a missing header column,
// a label outside the task's labels.
//
// Example:
//   HR_ASSIGN_OR_RETURN(auto train, ReadSentenceTsv("MNLI/train.tsv", SentenceFormat::kMnli));
//   HR_ASSIGN_OR_RETURN(auto f, SentenceFeatures(train, MnliLabels(), tokenizer, 128));
#ifndef HEADROOM_FINETUNE_SENTENCE_DATA_H_
#define HEADROOM_FINETUNE_SENTENCE_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/wordpiece_tokenizer.h"
#include "finetune/task_feature.h"

namespace headroom {

struct SentenceExample {
  std::string text_a;
  std::string text_b;  // empty when !has_b
  bool has_b = false;
  std::string label;
  std::string source;  // "FILE:LINE" (1-based), for messages
};

enum class SentenceFormat { kMnli, kClassify };

// The examples of a TSV file in file order. NotFound for a missing file.
[[nodiscard]] absl::StatusOr<std::vector<SentenceExample>> ReadSentenceTsv(const std::string& path,
                                                                           SentenceFormat format);
// The same from the file's text, `path` naming it in messages.
[[nodiscard]] absl::StatusOr<std::vector<SentenceExample>> ParseSentenceTsv(const std::string& text,
                                                                            const std::string& path,
                                                                            SentenceFormat format);

// MNLI's labels in index order: contradiction, entailment, neutral.
const std::vector<std::string>& MnliLabels();
// The distinct labels of `examples`, sorted (byte order).
std::vector<std::string> DistinctLabels(const std::vector<SentenceExample>& examples);

// convert_single_example for every example, the label as its index in `labels`.
[[nodiscard]] absl::StatusOr<std::vector<TaskFeature>> SentenceFeatures(
    const std::vector<SentenceExample>& examples, const std::vector<std::string>& labels,
    const WordPieceTokenizer& tokenizer, int max_seq_length);

// The features of every window of every example (finetune.long_text_windows): the WordPiece
// tokens of text_a cut into TokenWindows(n, max_seq_length - 2, doc_stride), each as
// [CLS] window [SEP] with the example's label (an empty text gives one feature [CLS] [SEP]).
struct SentenceWindows {
  std::vector<TaskFeature> features;        // example by example, windows in order
  std::vector<int32_t> example_of_feature;  // index into the examples, per feature
};
[[nodiscard]] absl::StatusOr<SentenceWindows> SentenceWindowFeatures(
    const std::vector<SentenceExample>& examples, const std::vector<std::string>& labels,
    const WordPieceTokenizer& tokenizer, int max_seq_length, int doc_stride);

// Per example, the label index with the largest mean over the example's features of
// `logits` ([features x num_labels], row-major); the first such label on ties, -1 for an
// example without features. `example_of_feature` as SentenceWindows'.
std::vector<int32_t> MeanLogitPredictions(const std::vector<float>& logits, int num_labels,
                                          const std::vector<int32_t>& example_of_feature,
                                          int num_examples);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_SENTENCE_DATA_H_
