// The training loop and evaluation: config + shards -> trained model, checkpoints and metrics.
//
// Train() runs, for each optimizer step g (0-based) of LearningRateSchedule's phases:
//   1. one global batch from the phase's data source (sequence length and batch of the phase;
//      its shards are the phase's own train_files when it names them, else the run's; a new
//      phase opens its source, and its evaluation data, at its first step, and every later
//      phase's shards are checked before step 1), split into k = global_batch / micro_batch
//      micro-batches;
//   2. per micro-batch: Forward (training, dropout keys {seed, g * k + j}) and Backward, the
//      gradients accumulating in the model's buffer; the step's loss is the mean of the k;
//   3. a non-finite loss stops training with "step g: loss is nan" (nothing is updated or
//      saved for that step), and so does a failure of the backend (Ops::status(), checked at
//      the loss read, after the gradient reduction, the optimizer step and before a checkpoint
//      is written: "step g: reading the loss back: the backend failed: <the failed call>");
//      otherwise the optimizer step (trainer/optimizer.h, grad_scale 1/k, learning rate
//      schedule.LearningRate(g)); a non-finite gradient norm stops likewise. With
//      train.skip_nonfinite_steps such a step is skipped instead: no update, its batch is consumed,
//      a console line names it, and training goes on;
//   4. every train.log_every steps a metrics line, every train.eval_every steps an evaluation
//      (dropout off) on train.eval_batches batches, every train.checkpoint_every steps and at
//      the end a checkpoint (trainer/checkpoint.h) keeping train.keep_checkpoints.
// Everything a step depends on is a function of (checkpoint, step): parameters, moments, the
// loader position and the dropout keys, so a run resumed from a checkpoint reproduces the losses
// of an uninterrupted run bit for bit on the CPU backend.
//
// A run directory that already holds checkpoints is refused unless `resume` is set (nothing is
// overwritten); with `resume` the newest intact checkpoint is loaded after checking that it is
// for the same model (trainer/checkpoint.h LoadLatestIntactCheckpoint: damaged newer ones are
// skipped with a "warning: checkpoint DIR is damaged, skipped: ..." line on stderr; training
// starts from step 0 when there is none).
//
// Data parallel over R ranks (train.comm, comm/create_communicator.h; R = 1 is the above
// unchanged). Every rank runs Train() with the same config:
//   - start-up: the ranks compare a checksum of the config and the parameter count; rank 0
//     alone initialises or loads the checkpoint, then broadcasts the weights (and, resuming, the
//     optimizer moments, step and data position); a checksum of the weights is compared across
//     ranks before step 1 (an error names the ranks that differ);
//   - each rank's loader reads rows [r * G/R, (r+1) * G/R) of every global batch G (data/
//     sharded_loader.h), split into k = G / (R * micro) micro-batches; the dropout key of local
//     micro-batch j is {seed, (g * R + r) * k + j}: the global micro-batch index, so R ranks
//     with micro-batch m draw the masks one rank accumulating G/m micro-batches of m draws;
//   - the gradient is reduced (average over ranks; trainer/data_parallel.h) in buckets of
//   train.comm_bucket_mb over the
//     flat buffer (comm/gradient_buckets.h), each launched as soon as backward has produced it
//     (Model::Backward's hook), only in the last micro-batch; the step waits for every bucket
//     before clipping and the optimizer, so all ranks apply the same update. The gradient is
//     thus the mean of the R * k micro-batch gradients (as PyTorch DDP): R ranks with
//     micro-batch m equal one rank accumulating micro-batches of m, up to summation order;
//     equal to one rank with micro-batch R*m when every micro-batch has the same loss
//     normaliser (LM tokens, BERT masked weights);
//   - the loss and evaluation are averaged over ranks; rank 0 alone writes checkpoints,
//     metrics and console lines; the metrics add per step compute_seconds (forward+backward),
//     comm_wait_seconds (all-reduce time backward did not hide) and bytes_reduced;
//   - train.zero_stage: 1 (ZeRO-1, trainer/data_parallel.h): the buckets are reduce-scattered
//     into each rank's shard instead, each rank's optimizer holds and updates its shard only
//     (the grad norm for clipping and LAMB's per-tensor norms are summed over the ranks), and
//     the parameters are all-gathered after the update; the same training up to summation
//     order. Checkpoints hold the full state (the moments gathered to rank 0), so a run resumes
//     on any R and either stage;
//   - memory: rank 0's buffers by purpose (parameters, gradients, optimizer state,
//     activations; trainer/memory_report.h) are printed at the start and added to every
//     metrics line (memory_*_bytes, with zero_stage);
//   - device tensors: "nccl" reduces them in place; "mpi" copies each tensor to the host as
//     backward finishes it, reduces there and copies back (host staging; on the CPU backend the
//     host buffer is the gradient buffer itself and the copies are skipped);
//   - an error on any rank (e.g. a corrupt shard) ends the whole job with that rank's message
//     (Communicator::Abort), so no rank waits forever for it; Train() returns errors only when
//     R = 1. A rank that is stopped or lost is found by the others' collective deadline
//     (train.comm_timeout_s, comm/watchdog.h), whose message names it.
// A checkpoint written with R ranks resumes with any R' dividing the global batch.
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
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "trainer/evaluation.h"
#include "trainer/training_backend.h"

namespace headroom {

class Communicator;  // comm/communicator.h

struct TrainOptions {
  ExperimentConfig config;  // validated (config/load.h)
  std::string run_dir;      // checkpoints/, metrics.jsonl, tb/
  // Override config.data.train_files / eval_files when non-empty (a phase's own
  // train.phases[i].train_files / eval_files still win for that phase).
  std::string train_files;
  std::string eval_files;
  DeviceKind device = DeviceKind::kCpu;
  int64_t max_steps = 0;  // stop after this many optimizer steps in total (0: the whole run)
  bool resume = false;
  // FLOP/s for MFU in the metrics: 0 measures a bf16 GEMM at the start on CUDA (times the
  // ranks) and shows no MFU on the CPU.
  double peak_flops = 0;
  FILE* console = stdout;
  // Called after every completed step with (step done, loss); for tests (e.g. to kill the
  // process at a chosen point).
  std::function<void(int64_t, double)> on_step;
  // The ranks to train with (not owned); nullptr: created from config.train.comm.
  Communicator* comm = nullptr;
  // Tests only: wraps the backend Train() creates, e.g. in a FailingOps (kernels/failing_ops.h)
  // that fails a chosen call; the wrapper forwards to `backend`, which outlives it.
  WrapOps wrap_ops;  // trainer/training_backend.h
};

struct TrainResult {
  int64_t first_step = 0;       // the step training started from (a checkpoint's, or 0)
  int64_t last_step = 0;        // optimizer steps done at the end
  std::vector<double> losses;   // loss of steps first_step .. last_step - 1
  std::string last_checkpoint;  // rank 0 only
  int rank = 0;
  int num_ranks = 1;
  // This rank's totals over the steps run: forward+backward time, time blocked waiting for the
  // gradient all-reduce after backward, and gradient bytes all-reduced (0 with one rank).
  double compute_seconds = 0;
  double comm_wait_seconds = 0;
  int64_t bytes_reduced = 0;
  // Steps skipped for a non-finite loss or gradient norm (train.skip_nonfinite_steps); their
  // entries in `losses` are NaN or Inf.
  int64_t skipped_steps = 0;
};

[[nodiscard]] absl::StatusOr<TrainResult> Train(const TrainOptions& options);

// EvaluateCheckpoint and EvalResult: trainer/evaluation.h. The gradient reduction over the
// ranks (buckets, backward hook, host staging): trainer/data_parallel.h.

}  // namespace headroom

#endif  // HEADROOM_TRAINER_TRAINER_H_
