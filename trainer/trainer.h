// The training loop and evaluation: config + shards -> trained model, checkpoints and metrics.
//
// Train() runs, for each optimizer step g (0-based) of LearningRateSchedule's phases:
//   1. one global batch from the phase's data source (sequence length and batch of the phase),
//      split into k = global_batch / micro_batch micro-batches;
//   2. per micro-batch: Forward (training, dropout keys {seed, g * k + j}) and Backward, the
//      gradients accumulating in the model's buffer; the step's loss is the mean of the k;
//   3. a non-finite loss stops training with "step g: loss is nan" (nothing is updated or
//      saved for that step); otherwise the optimizer step (trainer/optimizer.h, grad_scale 1/k,
//      learning rate schedule.LearningRate(g)); a non-finite gradient norm stops likewise;
//   4. every train.log_every steps a metrics line, every train.eval_every steps an evaluation
//      (dropout off) on train.eval_batches batches, every train.checkpoint_every steps and at
//      the end a checkpoint (trainer/checkpoint.h) keeping train.keep_checkpoints.
// Everything a step depends on is a function of (checkpoint, step): parameters, moments, the
// loader position and the dropout keys, so a run resumed from a checkpoint reproduces the losses
// of an uninterrupted run bit for bit on the CPU backend.
//
// A run directory that already holds checkpoints is refused unless `resume` is set (nothing is
// overwritten); with `resume` the newest complete checkpoint is loaded after checking that it is
// for the same model (and training starts from step 0 when there is none).
//
// Example:
//   TrainOptions o;
//   o.config = LoadConfig("configs/demo.textproto").value();
//   o.run_dir = "runs/demo";
//   absl::StatusOr<TrainResult> r = Train(o);
#ifndef HEADROOM_TRAINER_TRAINER_H_
#define HEADROOM_TRAINER_TRAINER_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"

namespace headroom {

struct TrainOptions {
  ExperimentConfig config;  // validated (config/load.h)
  std::string run_dir;      // checkpoints/, metrics.jsonl, tb/
  std::string train_files;  // overrides config.data.train_files when non-empty
  std::string eval_files;   // overrides config.data.eval_files when non-empty
  DeviceKind device = DeviceKind::kCpu;
  int64_t max_steps = 0;  // stop after this many optimizer steps in total (0: the whole run)
  bool resume = false;
  double peak_flops = 0;  // for MFU in the metrics (0: not shown)
  FILE* console = stdout;
  // Called after every completed step with (step done, loss); for tests (e.g. to kill the
  // process at a chosen point).
  std::function<void(int64_t, double)> on_step;
};

struct TrainResult {
  int64_t first_step = 0;      // the step training started from (a checkpoint's, or 0)
  int64_t last_step = 0;       // optimizer steps done at the end
  std::vector<double> losses;  // loss of steps first_step .. last_step - 1
  std::string last_checkpoint;
};

[[nodiscard]] absl::StatusOr<TrainResult> Train(const TrainOptions& options);

// Evaluation over `batches` batches (fewer if the data runs out first) from the start of the
// shards, dropout off.
struct EvalResult {
  int64_t sequences = 0;
  double loss = 0;          // BERT: masked-LM loss (weighted mean) + mean NSP loss; LM: per token
  double perplexity = 0;    // LM: exp(loss)
  double mlm_accuracy = 0;  // BERT
  double nsp_accuracy = 0;  // BERT
  double accuracy = 0;      // LM: next-token accuracy
  bool bert = false;
  // "loss=2.3456 perplexity=10.45" (LM) or "loss=... mlm_accuracy=... nsp_accuracy=..." (BERT).
  std::string ToString() const;
  // The same as (name, value) pairs, for metrics.
  std::vector<std::pair<std::string, double>> Values() const;
};

// Evaluates the newest checkpoint of `checkpoint` (a checkpoint or run directory) on `files`.
[[nodiscard]] absl::StatusOr<EvalResult> EvaluateCheckpoint(const std::string& checkpoint,
                                                            const std::string& files,
                                                            int64_t batches, int batch_size,
                                                            DeviceKind device);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_TRAINER_H_
