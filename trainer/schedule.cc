// Learning-rate schedules; the formulas and the BERT phase convention are in schedule.h.
#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace headroom {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The run's phases as the config gives them: one from train.steps and the data settings, or
// train.phases in order. A batch is global_batch_size, or global_batch_tokens over the phase's
// sequence length (clamped so that a huge token count is reported, not wrapped; ValidatePhase
// checks that it divides exactly).
std::vector<SchedulePhase> PhasesOf(const ExperimentConfig& config) {
  const TrainConfig& t = config.train();
  auto run_batch = [&t](int seq_length) -> int {
    if (t.global_batch_tokens() <= 0 || seq_length <= 0) return t.global_batch_size();
    return static_cast<int>(std::min<int64_t>(t.global_batch_tokens() / seq_length, INT32_MAX));
  };
  std::vector<SchedulePhase> phases;
  if (t.phases_size() == 0) {
    SchedulePhase p;
    p.steps = t.steps();
    p.warmup = t.schedule().warmup_steps();
    p.seq_length = config.data().seq_length();
    p.max_predictions_per_seq = config.data().max_predictions_per_seq();
    p.global_batch_size = run_batch(p.seq_length);
    phases.push_back(p);
  }
  int64_t begin = 0;
  for (const TrainPhase& tp : t.phases()) {
    SchedulePhase p;
    p.begin = begin;
    p.steps = tp.steps();
    p.warmup = tp.warmup_steps();
    p.seq_length = tp.seq_length();
    p.max_predictions_per_seq = tp.max_predictions_per_seq();
    p.global_batch_size =
        tp.global_batch_size() > 0 ? tp.global_batch_size() : run_batch(p.seq_length);
    p.train_files = tp.train_files();
    p.eval_files = tp.eval_files();
    begin += p.steps;
    phases.push_back(p);
  }
  return phases;
}

// Phase i's steps, warm-up, sequence length and batch, with errors naming the config field.
absl::Status ValidatePhase(const TrainConfig& t, ScheduleConfig::Type type, const SchedulePhase& p,
                           int i) {
  const std::string f =
      t.phases_size() == 0 ? std::string("train") : absl::StrCat("train.phases[", i, "]");
  const std::string warm_f =
      t.phases_size() == 0 ? "train.schedule.warmup_steps" : absl::StrCat(f, ".warmup_steps");
  if (p.steps <= 0) {
    return Invalid(absl::StrCat(f, ".steps"),
                   absl::StrCat("must be > 0 (got ", p.steps, "): nothing to train"));
  }
  if (p.warmup < 0 || p.warmup > p.steps) {
    return Invalid(
        warm_f, absl::StrCat(p.warmup, " must be in [0, ", p.steps, "], the steps of its phase"));
  }
  if (type == ScheduleConfig::LINEAR_WARMUP_RSQRT && p.warmup == 0) {
    return Invalid(warm_f,
                   "LINEAR_WARMUP_RSQRT needs a warm-up > 0 (lr * min(1, t/W) / sqrt(max(t, W)))");
  }
  if (type == ScheduleConfig::LINEAR_WARMUP_RSQRT_NORMALIZED && p.warmup == 0) {
    return Invalid(warm_f,
                   "LINEAR_WARMUP_RSQRT_NORMALIZED needs a warm-up > 0 "
                   "(lr * min(1, t/W) * sqrt(W / max(t, W)))");
  }
  if (p.seq_length <= 0) {
    return Invalid(t.phases_size() == 0 ? "data.seq_length" : absl::StrCat(f, ".seq_length"),
                   "must be > 0");
  }
  const bool own = t.phases_size() > 0 && t.phases(i).global_batch_size() > 0;
  if (t.global_batch_tokens() > 0 && !own && t.global_batch_tokens() % p.seq_length != 0) {
    return Invalid(
        "train.global_batch_tokens",
        absl::StrCat(t.global_batch_tokens(), " is not a multiple of the sequence length ",
                     p.seq_length, t.phases_size() == 0 ? "" : absl::StrCat(" of ", f),
                     "; give a multiple, or the phase its own global_batch_size"));
  }
  if (p.global_batch_size <= 0) {
    return Invalid(
        t.global_batch_tokens() > 0 ? "train.global_batch_tokens" : "train.global_batch_size",
        "must be > 0 (at least one sequence per step)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LearningRateSchedule> LearningRateSchedule::Create(const ExperimentConfig& config) {
  const TrainConfig& t = config.train();
  LearningRateSchedule s;
  s.type_ = t.schedule().type();
  if (s.type_ == ScheduleConfig::TYPE_UNSPECIFIED) {
    s.type_ = ScheduleConfig::LINEAR_WARMUP_LINEAR_DECAY;
  }
  s.learning_rate_ = t.schedule().learning_rate();
  s.phases_ = PhasesOf(config);
  for (size_t i = 0; i < s.phases_.size(); ++i) {
    HR_RETURN_IF_ERROR(ValidatePhase(t, s.type_, s.phases_[i], static_cast<int>(i)));
  }
  if (t.phases_size() > 0 && t.steps() != 0 && t.steps() != s.total_steps()) {
    return Invalid("train.steps",
                   absl::StrCat(t.steps(), " disagrees with the sum of train.phases[].steps ",
                                s.total_steps(), "; set it to the sum or to 0"));
  }
  return s;
}

int LearningRateSchedule::PhaseIndex(int64_t step) const {
  // Phases are few (BERT has two): a linear scan is the clearest.
  for (size_t i = 0; i < phases_.size(); ++i) {
    if (step < phases_[i].end()) return static_cast<int>(i);
  }
  return static_cast<int>(phases_.size()) - 1;
}

double LearningRateSchedule::LearningRate(int64_t step) const {
  const SchedulePhase& p = PhaseAt(step);
  const double t = static_cast<double>(std::max<int64_t>(0, step - p.begin));
  const double W = static_cast<double>(p.warmup);
  const double T = static_cast<double>(p.steps);
  switch (type_) {
    case ScheduleConfig::LINEAR_WARMUP_RSQRT:
      return learning_rate_ * std::min(1.0, t / W) / std::sqrt(std::max(t, W));
    case ScheduleConfig::LINEAR_WARMUP_RSQRT_NORMALIZED:
      return learning_rate_ * std::min(1.0, t / W) * std::sqrt(W / std::max(t, W));
    case ScheduleConfig::CONSTANT:
      return t < W ? learning_rate_ * t / W : learning_rate_;
    default:
      if (t < W) return learning_rate_ * t / W;
      return learning_rate_ * std::max(0.0, 1.0 - t / T);
  }
}

}  // namespace headroom
