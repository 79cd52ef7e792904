// Fine-tuning: a pre-trained BERT plus a task head trained on SQuAD v1.1, GLUE MNLI or a
// sentence classification TSV, then evaluated with the task's metric. Google BERT's
// run_squad.py / run_classifier.py recipe (FineTuneConfig in config/config.proto holds its
// settings and defaults):
//
//   1. the encoder (and pooler) from a headroom checkpoint (pre-training or fine-tuning; tensors
//      copied by name) or from a Hugging Face safetensors file with its config.json beside it
//      (trainer/hugging_face.h); the head initialised N(0, initializer_range) truncated, bias 0,
//      seeded by finetune.seed; hidden and attention dropout set to finetune.dropout;
//   2. training features (finetune/squad_features.h, finetune/sentence_data.h) in a fresh
//      random order every epoch (seeded), global batches of train_batch_size taken in turn from
//      that stream; steps = int(training examples / train_batch_size * num_train_epochs)
//      (examples, not SQuAD windows, as run_squad.py counts), warm-up int(steps *
//      warmup_proportion);
//   3. per step: micro-batches of micro_batch_size (Forward, Backward; the dropout key of
//      micro-batch j of step g is {seed, g * k + j} on one rank), AdamW with weight decay 0.01 (not
//      on LayerNorm and biases), epsilon 1e-6, global-norm clipping at 1.0 and a linear warm-up and
//      decay of the learning rate (train.optimizer and the schedule of trainer/);
//   4. a console line every log_every steps with the loss, learning rate and an ETA
//      (trainer/metrics.h, also OUTPUT_DIR/metrics.jsonl and tb/); a checkpoint every
//      checkpoint_every steps and at the end (trainer/checkpoint.h, OUTPUT_DIR/checkpoints/,
//      the fine-tuning config with its labels included, so `headroom export` writes a Hugging
//      Face BertForQuestionAnswering / BertForSequenceClassification);
//   5. evaluation on each dev file, dropout off: SQuAD writes OUTPUT_DIR/predictions.json
//      (the official format) and scores it with the official v1.1 metric; classification counts
//      accuracy (MNLI: matched and mismatched).
// SQuAD batches are padded to max_seq_length (the span softmax runs over every position, as in
// run_squad.py); classification batches to their longest row (the result does not depend on it).
//
// Data parallel over R ranks (train.comm, as `headroom train`; trainer/data_parallel.h): every
// rank reads the init, the data and, resuming, the checkpoint (a shared file system, which the
// data needs anyway); rank 0's weights (and moments and step) are broadcast and checked on every
// rank; rank r trains rows [r G/R, (r+1) G/R) of every global batch G in micro-batches, the
// dropout key of its micro-batch j being {seed, (g R + r) k + j} (what one rank accumulating
// the whole batch would draw); gradients are averaged in buckets during backward (with
// train.zero_stage 1, ZeRO-1: reduce-scattered into the rank's shard of the optimizer state, the
// parameters gathered after each update, checkpoints holding the full state); the loss is
// averaged over the ranks; rank 0 alone logs, checkpoints and evaluates. Any rank's error ends
// the job (Communicator::Abort).
//
// Resuming: with `resume`, the newest intact checkpoint of OUTPUT_DIR is loaded (weights, Adam
// moments, step; the data order is a function of the seed and the step) and training goes on
// to the end, reproducing an uninterrupted run's losses exactly on the CPU. Newer checkpoints
// that fail their manifest (size, CRC32C) or finiteness checks are skipped, each with a line
// "warning: checkpoint DIR is damaged, skipped: <reason>" on stderr (trainer/checkpoint.h
// LoadLatestIntactCheckpoint, as `headroom train --resume`). A directory that holds checkpoints
// is refused without `resume`.
//
// A failed backend (Ops::status(): a CUDA error, a failed allocation) is checked where the host
// waits for the device, as in `headroom train` (trainer/backend_status.h): the set-up, the loss
// read, the gradient reduction, the optimizer step, the read-back of the moments and weights for
// a checkpoint, and evaluation. It stops the run with one line "step N: <what>: the backend
// failed: ...; training stopped, ...", and nothing computed after it is logged or saved.
//
// Example:
//   FineTuneOptions o;
//   o.config = ...;  // finetune { task: SQUAD } (config/load.h filled the defaults)
//   o.init_checkpoint = "runs/bert/checkpoints/step-00100000";
//   o.train_file = "train-v1.1.json";
//   o.dev_files = {"dev-v1.1.json"};
//   o.output_dir = "runs/squad";
//   absl::StatusOr<FineTuneResult> r = FineTune(o);   // r->ResultLine(): "exact_match=... f1=..."
#ifndef HEADROOM_FINETUNE_FINETUNE_H_
#define HEADROOM_FINETUNE_FINETUNE_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "trainer/training_backend.h"

namespace headroom {

class Communicator;  // comm/communicator.h

struct FineTuneOptions {
  // finetune.task set, defaults filled, validated (config/load.h). The model and data blocks
  // are not read: the model comes from the initialisation. The optimizer is train.optimizer.
  ExperimentConfig config;
  // Names the config in validation errors (the --config path).
  std::string config_source = "fine-tuning config";
  // A headroom checkpoint directory or run directory (its newest checkpoint), or a Hugging Face
  // .safetensors file with config.json (and, unless finetune.vocab_file is set, vocab.txt) in
  // the same directory. Not needed when resuming.
  std::string init_checkpoint;
  std::string train_file;  // empty: no training (evaluate the initialisation)
  // Dev files, each evaluated at the end (MNLI: dev_matched.tsv and dev_mismatched.tsv).
  std::vector<std::string> dev_files;
  std::string output_dir;
  DeviceKind device = DeviceKind::kCpu;
  bool resume = false;
  int64_t max_steps = 0;  // stop after this many optimizer steps in total (0: all)
  FILE* console = stdout;
  // Called after each step with (steps done, loss); for tests.
  std::function<void(int64_t, double)> on_step;
  // Tests: wraps the backend (e.g. in a FailingOps, kernels/failing_ops.h); the run uses the
  // returned Ops, which must outlive nothing but the run. Empty: the backend itself.
  WrapOps wrap_ops;  // trainer/training_backend.h
  // The ranks to train with (not owned); nullptr: created from train.comm (default "auto":
  // MPI under a launcher, NCCL for CUDA tensors under a launcher, else one rank).
  Communicator* comm = nullptr;
};

struct FineTuneResult {
  int64_t first_step = 0;  // where training started (a checkpoint's step, or 0)
  int64_t last_step = 0;   // optimizer steps done at the end
  int64_t total_steps = 0;
  std::vector<double> losses;  // of steps first_step .. last_step - 1
  // The dev metrics in order: SQuAD "exact_match", "f1"; classification "accuracy" (one dev
  // file) or "accuracy_<name>" per dev file, <name> = matched / mismatched for MNLI's files
  // (else the file's stem).
  std::vector<std::pair<std::string, double>> metrics;
  std::string predictions_file;  // SQuAD: OUTPUT_DIR/predictions.json
  std::string last_checkpoint;
  // "exact_match=81.20 f1=88.50" / "accuracy_matched=0.8412 accuracy_mismatched=0.8390".
  std::string ResultLine() const;
};

[[nodiscard]] absl::StatusOr<FineTuneResult> FineTune(const FineTuneOptions& options);

// The fine-tuning settings of `path` (a text-format ExperimentConfig with a finetune block and,
// optionally, train.optimizer / train.precision / train.attention; empty: none) with
// `overrides` applied (--set), finetune.task from `task` ("squad", "mnli", "classify"; empty:
// the file's), defaults filled (config/load.h) and the finetune block validated. Errors name
// the file or flag.
[[nodiscard]] absl::StatusOr<ExperimentConfig> LoadFineTuneConfig(
    const std::string& path, const std::string& task, const std::vector<std::string>& overrides);

// The task named by --task: "squad", "mnli" or "classify"; InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<FineTuneConfig::Task> ParseFineTuneTask(const std::string& name);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_FINETUNE_H_
