// Evaluation: a model's loss and accuracies on held-out shards, dropout off, summed over the
// ranks of a data-parallel job; and EvaluateCheckpoint, the `headroom eval` library call.
//
// BERT reports Google BERT's metrics (weighted masked-LM loss plus the mean next-sentence loss,
// masked-LM and next-sentence accuracy); a causal LM the per-token loss, perplexity and
// next-token accuracy over non-zero targets.
//
// Example:
//   HR_ASSIGN_OR_RETURN(EvalResult e, EvaluateCheckpoint("runs/demo", "lm/valid-*", 100, 0,
//                                                        DeviceKind::kCpu));
//   std::printf("%s\n", e.ToString().c_str());
#ifndef HEADROOM_TRAINER_EVALUATION_H_
#define HEADROOM_TRAINER_EVALUATION_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/transformer.h"
#include "trainer/data_source.h"

namespace headroom {

class Communicator;  // comm/communicator.h

// Evaluation over `batches` batches (fewer if the data runs out first) from the start of the
// shards, dropout off.
struct EvalResult {
  int64_t sequences = 0;
  double loss = 0;          // BERT: masked-LM loss (weighted mean) + mean NSP loss; LM: per token
  double perplexity = 0;    // LM: exp(loss)
  double mlm_accuracy = 0;  // BERT
  double nsp_accuracy = 0;  // BERT
  double accuracy = 0;      // LM: next-token accuracy
  int64_t tokens = 0;       // LM: target tokens scored (non-zero targets)
  bool bert = false;
  // "loss=2.3456 perplexity=10.45 ..." (LM) or "loss=... mlm_accuracy=... nsp_accuracy=..." (BERT).
  std::string ToString() const;
  // The same as (name, value) pairs, for metrics.
  std::vector<std::pair<std::string, double>> Values() const;
};

// Evaluates the newest checkpoint of `checkpoint` (a checkpoint or run directory) on `files`.
[[nodiscard]] absl::StatusOr<EvalResult> EvaluateCheckpoint(const std::string& checkpoint,
                                                            const std::string& files,
                                                            int64_t batches, int batch_size,
                                                            DeviceKind device);

// Evaluates `model` on up to `batches` batches of `batch_size` sequences (over all ranks of
// `comm`; nullptr: one rank) of `source` from its current position (fewer when the source holds
// fewer whole batches); each rank evaluates its share of every batch and the sums are added over
// ranks, so every rank gets the same result.
[[nodiscard]] absl::StatusOr<EvalResult> RunEval(TrainableModel<float>& model, BatchSource& source,
                                                 int64_t batches, int batch_size, int seq,
                                                 int max_pred, Communicator* comm = nullptr);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_EVALUATION_H_
