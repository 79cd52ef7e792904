// Learning-rate schedules: one function from the optimizer step to the learning rate, covering
// every phase of a run (train.schedule + train.phases in config/config.proto).
//
// Steps are counted as Google BERT's and tensor2tensor's `global_step`: the learning rate of an
// update is computed from the number of updates applied before it, g = 0, 1, 2, ... So the very
// first update of a warm-up has learning rate 0 (as in Google BERT's optimization.py and in
// Hugging Face's get_linear_schedule_with_warmup).
//
// Phases. A run is a sequence of phases (BERT: sequence 128, then 512); a run without
// `train.phases` is one phase of `train.steps` steps at `data.seq_length` with warm-up
// `train.schedule.warmup_steps`. Every phase restarts its own schedule: with t = g - (first step
// of the phase) and T = the phase's steps, W = the phase's warm-up, lr = learning_rate,
//
//   LINEAR_WARMUP_LINEAR_DECAY      t < W: lr * t / W;  else lr * max(0, 1 - t / T)
//   LINEAR_WARMUP_RSQRT             lr * min(1, t / W) / sqrt(max(t, W))    (W must be > 0)
//   LINEAR_WARMUP_RSQRT_NORMALIZED  lr * min(1, t / W) * sqrt(W / max(t, W)) (W must be > 0)
//   CONSTANT                        t < W: lr * t / W;  else lr
//
// The two inverse-square-root schedules are tensor2tensor's (utils/learning_rate.py), whose
// learning_rate_schedule multiplies named factors evaluated at step_num = global_step (0 for
// the first update, as here): LINEAR_WARMUP_RSQRT is "constant*linear_warmup*rsqrt_decay" with
// learning_rate_constant = lr and learning_rate_warmup_steps = W, i.e. linear_warmup =
// min(1, t/W) and rsqrt_decay = rsqrt(max(t, W)), so it peaks at lr / sqrt(W) (lr 0.1 and
// W = 10k, the paper's LM1B setting, peak at 1e-3). LINEAR_WARMUP_RSQRT_NORMALIZED is
// "constant*linear_warmup*rsqrt_normalized_decay" (rsqrt_normalized_decay = sqrt(W) *
// rsqrt(max(t, W))), which peaks at lr itself.
//
// This is the BERT practice. Google BERT trains phase 2 as a second run_pretraining.py run with
// its own num_train_steps and num_warmup_steps (polynomial_decay of power 1 measured from the
// run's step 0, with the warm-up overriding it, exactly the first formula); NVIDIA's
// DeepLearningExamples BERT resets global_step for phase 2 and rebuilds its PolyWarmUpScheduler
// over the phase-2 steps with its own warm-up. Both decay over the phase, not the whole run, and
// both re-warm-up from 0. The optimizer's moments and its bias-correction step count carry over
// across phases (NVIDIA loads them from the phase-1 checkpoint); that is trainer/optimizer.h's
// business, not the schedule's. Each phase's warm-up is `TrainPhase.warmup_steps` as written
// (0 = none); `train.schedule.warmup_steps` applies only to a run without phases.
//
// Batch. A phase trains its own global_batch_size sequences per step if it sets one, else the
// run's: train.global_batch_size, or train.global_batch_tokens / (the phase's seq_length) when
// the batch is given in tokens (tensor2tensor's convention), which must divide exactly.
//
// Steps past the end of the run keep the last phase's formula (linear decay stays at 0).
//
// Example:
//   absl::StatusOr<LearningRateSchedule> s = LearningRateSchedule::Create(config);
//   double lr = s->LearningRate(step);          // step = updates applied so far
//   const SchedulePhase& p = s->PhaseAt(step);  // p.seq_length, p.global_batch_size, ...
#ifndef HEADROOM_TRAINER_SCHEDULE_H_
#define HEADROOM_TRAINER_SCHEDULE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.pb.h"

namespace headroom {

// One phase, resolved: absolute step range and the shapes the trainer feeds in it.
struct SchedulePhase {
  int64_t begin = 0;   // first global step (0-based) of the phase
  int64_t steps = 0;   // number of optimizer steps in the phase
  int64_t warmup = 0;  // warm-up steps at the start of the phase
  int seq_length = 0;
  int max_predictions_per_seq = 0;
  int global_batch_size = 0;  // sequences (train.global_batch_tokens / seq_length if given)
  // The phase's own shards (TrainPhase.train_files / eval_files); empty: the run's.
  std::string train_files;
  std::string eval_files;
  int64_t end() const { return begin + steps; }
};

class LearningRateSchedule {
 public:
  // Builds the schedule of a validated config (config/load.h). Errors (InvalidArgument, naming
  // the field): no steps at all, LINEAR_WARMUP_RSQRT with a zero warm-up, a warm-up longer
  // than its phase, train.steps disagreeing with the sum of the phases' steps (0 = the sum),
  // no global batch size, a train.global_batch_tokens that a phase's sequence length does not
  // divide.
  [[nodiscard]] static absl::StatusOr<LearningRateSchedule> Create(const ExperimentConfig& config);

  // The learning rate of the update at 0-based global step `step` (>= 0).
  double LearningRate(int64_t step) const;

  // Index of the phase that contains `step` (the last phase for steps past the end).
  int PhaseIndex(int64_t step) const;
  const SchedulePhase& PhaseAt(int64_t step) const { return phases_[PhaseIndex(step)]; }

  const std::vector<SchedulePhase>& phases() const { return phases_; }
  // Total optimizer steps of the run (sum of the phases).
  int64_t total_steps() const { return phases_.back().end(); }
  ScheduleConfig::Type type() const { return type_; }
  // train.schedule.learning_rate: the constant factor of every formula, and the peak of every
  // type but LINEAR_WARMUP_RSQRT (which peaks at lr / sqrt(W)).
  double learning_rate() const { return learning_rate_; }

 private:
  LearningRateSchedule() = default;

  ScheduleConfig::Type type_ = ScheduleConfig::LINEAR_WARMUP_LINEAR_DECAY;
  double learning_rate_ = 0;
  std::vector<SchedulePhase> phases_;
};

}  // namespace headroom

#endif  // HEADROOM_TRAINER_SCHEDULE_H_
