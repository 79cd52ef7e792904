// SQuAD v1.1 examples and features exactly as Google BERT's run_squad.py builds them
// (read_squad_examples, convert_examples_to_features, _improve_answer_span,
// _check_is_max_context), over the WordPiece tokenizer of data/wordpiece_tokenizer.h.
//
// Examples. The context is split into "doc tokens" on run_squad's whitespace (space, tab, CR,
// LF, U+202F only), with each character's token index (char_to_word_offset), counting code
// points as Python does. For training, each question must have exactly one answer; its
// answer_start and length give the first and last doc token. An answer whose doc tokens do not
// contain its whitespace-normalised text (odd Unicode) is skipped with a warning, as there.
//
// Features. The question is WordPiece-tokenised and cut to max_query_length tokens; each doc
// token is WordPiece-tokenised on its own (tok_to_orig_index / orig_to_tok_index). For training
// the answer's token span is narrowed to the tokens of the tokenised answer text where possible
// (_improve_answer_span: "(1895-1943)." -> "1895"). Windows ("doc spans") of at most
// max_seq_length - |query| - 3 context tokens start every doc_stride tokens until one reaches
// the end; each window is one feature [CLS] query [SEP] window [SEP] (finetune/task_feature.h).
// A token's max-context flag says whether this window, of all windows containing the token,
// has the largest min(left context, right context) + 0.01 * window length (the first on ties).
// Training targets are the answer's positions in the feature, or 0 and 0 ([CLS]) when the answer
// is not entirely inside the window. unique_id counts from 1000000000.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::vector<SquadExample> ex,
//                       ReadSquadExamples(dataset, "train.json", /*is_training=*/true, &warn));
//   std::vector<SquadFeature> f = ConvertSquadExamples(ex, tokenizer, {384, 128, 64}, true);
#ifndef HEADROOM_FINETUNE_SQUAD_FEATURES_H_
#define HEADROOM_FINETUNE_SQUAD_FEATURES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/wordpiece_tokenizer.h"
#include "finetune/squad_dataset.h"
#include "finetune/task_feature.h"

namespace headroom {

struct SquadExample {
  std::string qas_id;
  std::string question_text;
  std::vector<std::string> doc_tokens;  // the context's whitespace tokens (UTF-8)
  // Training only: the answer text and its first and last doc token (-1 otherwise).
  std::string orig_answer_text;
  int start_position = -1;
  int end_position = -1;
};

// The examples of every question of `dataset`, in file order (`source` names the dataset in
// errors). Training errors (InvalidArgument naming the question id): a question without exactly
// one answer, an empty answer, an answer running past the end of its context. Skipped answers
// append a line to `warnings` (may be null).
[[nodiscard]] absl::StatusOr<std::vector<SquadExample>> ReadSquadExamples(
    const SquadDataset& dataset, const std::string& source, bool is_training,
    std::vector<std::string>* warnings);

struct SquadFeatureOptions {
  int max_seq_length = 384;
  int doc_stride = 128;
  int max_query_length = 64;  // must be <= max_seq_length - 4 (config/load.cc checks)
};

struct SquadFeature {
  TaskFeature feature;  // input ids; segment B = the window; training targets
  int64_t unique_id = 0;
  int example_index = 0;   // into the examples
  int doc_span_index = 0;  // window number within the example
  // For decoding (filled when not training; empty for training features, to save memory):
  // per position of feature.input_ids, the doc token it came from (-1 outside the window) and
  // its max-context flag.
  std::vector<int32_t> token_to_orig_map;
  std::vector<uint8_t> token_is_max_context;
};

// The features of `examples`, in order (one or more per example; none for an empty context).
std::vector<SquadFeature> ConvertSquadExamples(const std::vector<SquadExample>& examples,
                                               const WordPieceTokenizer& tokenizer,
                                               const SquadFeatureOptions& options,
                                               bool is_training);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_SQUAD_FEATURES_H_
