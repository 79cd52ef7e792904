// The unigram baseline of a causal LM evaluation: the perplexity a model would get that ignores
// the context and predicts every token with its training-set frequency.
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

}  // namespace headroom

#endif  // HEADROOM_TRAINER_UNIGRAM_H_
