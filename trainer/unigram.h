// The unigram baselines of an evaluation: what a model would score that ignores its input and
// predicts every token (and, for BERT, every next-sentence label) from training-set frequencies.
// UnigramPerplexity is the causal LM's; BertUnigramBaseline BERT's (further down).
//
//   count(t)   = occurrences of id t among the non-zero `targets` values of every example in the
//                training shards (0 is padding, never a target: model/batch.h)
//   p(t)       = (count(t) + 1) / (N + V)            add-one (Laplace) smoothing over all V ids
//                                                    of the model's softmax, N = sum of counts
//   loss       = -(1/T) sum over scored targets y of ln p(y)      (nats per token)
//   perplexity = exp(loss)
// The scored targets are exactly the ones `headroom eval` scores (trainer.h EvaluateCheckpoint):
// the non-zero `targets` of the first `num_sequences` examples of the evaluation shards, in the
// order the unshuffled loader reads them (files sorted by name, records in file order). Passing
// EvalResult::sequences therefore compares the model and the baseline token for token, and
// UnigramResult::tokens equals EvalResult::tokens.
//
// Only the `targets` feature is read (tensor2tensor LM shards, `headroom prepare-lm`); an id
// outside [0, vocab_size) is InvalidArgument naming file, record and feature.
//
// Example:
//   HR_ASSIGN_OR_RETURN(EvalResult e, EvaluateCheckpoint(run_dir, "lm/valid-*", 1000, 0, kCpu));
//   HR_ASSIGN_OR_RETURN(UnigramResult u,
//                       UnigramPerplexity(4096, "lm/train-*", "lm/valid-*", e.sequences));
//   // e.perplexity vs u.perplexity, over u.tokens == e.tokens tokens
#ifndef HEADROOM_TRAINER_UNIGRAM_H_
#define HEADROOM_TRAINER_UNIGRAM_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace headroom {

struct UnigramResult {
  int64_t train_tokens = 0;  // N: targets counted in the training shards
  int64_t sequences = 0;     // evaluation examples read (fewer than asked if the shards end)
  int64_t tokens = 0;        // T: targets scored
  double loss = 0;           // nats per scored token
  double perplexity = 0;     // exp(loss)
};

// See the file comment. `train_files` and `eval_files` are globs or comma-separated globs;
// num_sequences < 0 scores every evaluation example. NotFound when a glob matches nothing,
// InvalidArgument for a bad id or vocab_size < 1, FailedPrecondition when nothing is scored.
[[nodiscard]] absl::StatusOr<UnigramResult> UnigramPerplexity(int64_t vocab_size,
                                                              const std::string& train_files,
                                                              const std::string& eval_files,
                                                              int64_t num_sequences);

// BERT's baselines, on the examples `headroom eval` scores for a BERT checkpoint (the first
// `num_sequences` examples of the evaluation shards in unshuffled loader order; pass
// EvalResult::sequences):
//   masked LM:  count(t) = occurrences of id t among the masked_lm_ids of the training shards
//               whose masked_lm_weights is > 0; p(t) = (count(t) + 1) / (N + V) as above;
//               mlm_loss = the weighted mean of -ln p(y) over the evaluation predictions (weights
//               masked_lm_weights, as the model's masked-LM loss); mlm_accuracy = the share of
//               evaluation predictions (weight > 0) equal to the most frequent training id (the
//               smallest id among ties): the unigram model's argmax.
//   next sentence: q(l) = (count(l) + 1) / (pairs + 2) for the labels l = 0, 1 of the training
//               shards' next_sentence_labels; nsp_loss = the mean of -ln q(label) over the
//               evaluation pairs; nsp_accuracy = the share of evaluation pairs whose label is the
//               training majority (0 on a tie): the majority-class predictor.
//   loss = mlm_loss + nsp_loss, comparable with EvalResult::loss (Google BERT's sum of the two).
// Errors as UnigramPerplexity; an id outside [0, vocab_size) or a label other than 0/1 is
// InvalidArgument naming file, record and feature; FailedPrecondition when no prediction is
// scored.
struct BertBaselineResult {
  int64_t train_predictions = 0;  // N: masked positions counted in the training shards
  int64_t train_pairs = 0;        // training examples (next-sentence labels) counted
  int64_t sequences = 0;          // evaluation examples read
  int64_t predictions = 0;        // evaluation masked positions scored (weight > 0)
  double mlm_loss = 0;
  double mlm_accuracy = 0;
  double nsp_loss = 0;
  double nsp_accuracy = 0;
  double loss = 0;  // mlm_loss + nsp_loss
  int majority_label = 0;
  double train_random_next_share = 0;  // share of training pairs labelled 1 (random next)
};

[[nodiscard]] absl::StatusOr<BertBaselineResult> BertUnigramBaseline(int64_t vocab_size,
                                                                     const std::string& train_files,
                                                                     const std::string& eval_files,
                                                                     int64_t num_sequences);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_UNIGRAM_H_
