// SQuAD answers from start/end logits, exactly as Google BERT's run_squad.py write_predictions
// (v1.1: no null answer) and get_final_text.
//
// Per example, over all of its features (windows):
//   1. candidates: the n_best_size largest start logits and the n_best_size largest end logits
//      of the feature (stable order on ties), every pair (start, end) with both positions inside
//      the window's context tokens, the start token's max-context flag set, start <= end and
//      end - start + 1 <= max_answer_length;
//   2. candidates ranked by start_logit + end_logit, highest first (stable sort: ties keep the
//      order above);
//   3. the answer is the first entry of the n-best list, the best candidate's text: its
//      WordPiece tokens joined and de-tokenised (" ##" and "##" removed, whitespace collapsed),
//      mapped back onto the original doc tokens by get_final_text ("empty" when there is no
//      candidate at all). The rest of the list (nbest_predictions.json there) is not built.
// get_final_text(pred, orig): run BERT's BasicTokenizer over the original doc tokens' text,
// find the predicted text in it, and carry its first and last characters back to the original
// through the space-free alignment of the two strings; when that is impossible (not found, or
// the two space-free strings differ in length, e.g. a decomposed accent) the whole original
// text of the span is returned. The result is always a substring of the context's doc tokens
// joined by single spaces, with the original case, accents and punctuation.
//
// Example:
//   std::vector<std::pair<std::string, std::string>> p =
//       DecodeSquadPredictions(examples, features, start, end, tokenizer, {20, 30});
//   HR_RETURN_IF_ERROR(WriteSquadPredictions(dir + "/predictions.json", p));
#ifndef HEADROOM_FINETUNE_SQUAD_DECODE_H_
#define HEADROOM_FINETUNE_SQUAD_DECODE_H_

#include <string>
#include <utility>
#include <vector>

#include "data/wordpiece_tokenizer.h"
#include "finetune/squad_features.h"

namespace headroom {

struct SquadDecodeOptions {
  int n_best_size = 20;
  int max_answer_length = 30;  // tokens
};

// get_final_text: the span of `orig_text` (UTF-8) that `pred_text` (de-tokenised WordPiece
// text) stands for, using `tokenizer`'s basic tokenisation (its do_lower_case).
std::string GetFinalText(const std::string& pred_text, const std::string& orig_text,
                         const WordPieceTokenizer& tokenizer);

// The answer text of each example, (qas_id, text) in example order. `features` are the
// examples' features (not training ones: they carry the decoding maps), in order;
// start_logits[i] and end_logits[i] are feature i's logits, at least as many as its tokens.
std::vector<std::pair<std::string, std::string>> DecodeSquadPredictions(
    const std::vector<SquadExample>& examples, const std::vector<SquadFeature>& features,
    const std::vector<std::vector<float>>& start_logits,
    const std::vector<std::vector<float>>& end_logits, const WordPieceTokenizer& tokenizer,
    const SquadDecodeOptions& options);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_SQUAD_DECODE_H_
