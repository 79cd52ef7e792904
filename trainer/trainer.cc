// The training loop as a class (Trainer): set-up, restore-or-initialise, the step and its
// logging, evaluation and checkpoints; see trainer.h for the step and the resume contract.
#include "trainer/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "analysis/attention_rank.h"
#include "base/clock.h"
#include "base/status_macros.h"
#include "comm/communicator.h"
#include "data/sharded_loader.h"
#include "google/protobuf/text_format.h"
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "trainer/backend_status.h"
#include "trainer/batch_slice.h"
#include "trainer/checkpoint.h"
#include "trainer/data_parallel.h"
#include "trainer/data_source.h"
#include "trainer/ignored_settings.h"
#include "trainer/memory_budget.h"
#include "trainer/memory_report.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/rank_agreement.h"
#include "trainer/schedule.h"
#include "trainer/training_backend.h"
#ifdef HEADROOM_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

namespace headroom {
namespace {

// One optimizer step's outcome, for the log, the checkpoint and the result.
struct StepResult {
  const SchedulePhase* phase = nullptr;
  double loss = 0;
  double lr = 0;
  OptimizerStats stats;  // not applied when the step was skipped
};

// What the metrics line averages over: the steps since the last one.
struct LogWindow {
  Clock::time_point start = Clock::now();
  int64_t tokens = 0, steps = 0, bytes = 0;
  double compute = 0, wait = 0;
};

// Train() on the ranks of `comm` (see trainer.h), in the order Megatron's pretrain() has:
// set-up, restore-or-initialise, then per step train_step and the periodic log / evaluate /
// save_checkpoint. Errors are this rank's; Train() aborts the job on them when there are
// several ranks.
class Trainer {
 public:
  Trainer(const TrainOptions& options, Communicator& comm);
  absl::StatusOr<TrainResult> Run();

 private:
  // ---- Set-up ----
  absl::Status Validate();  // data globs, run directory, batch sizes against the ranks
  absl::Status CheckPhases();
  absl::Status SetUp();  // backend, model, optimizer, data parallel, same config on all ranks
  absl::Status RestoreOrInitialise();
  absl::Status LoadOrInitialiseOnLead(std::vector<float>* params, std::vector<float>* m,
                                      std::vector<float>* v, bool* resumed);
  absl::Status BroadcastStart(std::vector<float>* params, std::vector<float>* m,
                              std::vector<float>* v, bool* resumed);
  absl::Status OpenMetrics();
  absl::Status CheckPhaseData();  // every later phase's shards fit it, before step 1
  absl::Status OpenEvaluation(const SchedulePhase& phase);
  absl::Status OpenRankProbe();
  // ---- The step ----
  absl::StatusOr<StepResult> TrainStep();
  absl::Status EnterPhase();  // opens the phase's loader when the step starts a new phase
  absl::StatusOr<double> ForwardBackward(const FeatureBatch& local, const SchedulePhase& phase,
                                         int k);
  absl::Status ApplyUpdate(int k, StepResult* r);
  // ---- Log / evaluate / checkpoint ----
  absl::Status AfterStep(const StepResult& s, bool* saved);
  absl::Status LogTrain(const StepResult& s);
  absl::Status Evaluate();
  absl::Status LogAttentionRank(int64_t at);
  absl::Status Save(double loss);
  // OK, or the backend's first failure (Ops::status(): a CUDA error, a failed allocation) as
  // "step N: <what>: ..." (trainer/backend_status.h). Checked wherever the host has waited for
  // the device (the loss read, the optimizer step, the gradient reduction, the checkpoint's
  // copy), so that nothing computed after a failure is logged, applied or saved.
  absl::Status CheckBackend(const char* what, int64_t step) const {
    return headroom::CheckBackend(*ops_, what, step);
  }

  // Micro-batch size of `p` on each rank: train.micro_batch_size, or the rank's whole share.
  int MicroBatch(const SchedulePhase& p) const {
    const int local = p.global_batch_size / ranks_;
    return tc_.micro_batch_size() > 0 ? std::min(tc_.micro_batch_size(), local) : local;
  }
  const SchedulePhase& FirstPhase() const { return schedule_->PhaseAt(result_.first_step); }
  // A phase's shards: its own (TrainPhase.train_files / eval_files), else the run's.
  const std::string& TrainFiles(const SchedulePhase& p) const {
    return p.train_files.empty() ? train_files_ : p.train_files;
  }
  const std::string& EvalFiles(const SchedulePhase& p) const {
    return p.eval_files.empty() ? eval_files_ : p.eval_files;
  }
  // For collectives on host buffers (checksums, the start broadcast, losses, evaluation sums).
  Communicator& HostComm() const { return data_parallel_->host_comm(); }

  const TrainOptions& options_;
  const ExperimentConfig& config_;
  const TrainConfig& tc_;
  Communicator& comm_;
  const int rank_, ranks_;
  const bool lead_, bert_;
  FILE* const console_;
  std::string train_files_, eval_files_;
  std::optional<LearningRateSchedule> schedule_;
  ModelLimits limits_;
  std::unique_ptr<TrainingBackend> backend_;  // with TrainOptions::wrap_ops's wrapper (tests)
  Ops<float>* ops_ = nullptr;  // the fp32 backend: optimizer, reduction, checks (backend_->ops())
  std::unique_ptr<TrainableModel<float>> model_;
  std::unique_ptr<Optimizer<float>> optimizer_;
  std::unique_ptr<DataParallel> data_parallel_;
  std::string config_text_;
  TrainResult result_;
  std::string loader_position_;  // a resumed run's position, until its phase's loader opens
  int64_t end_ = 0;
  std::unique_ptr<MetricsLogger> metrics_;
  std::unique_ptr<BatchSource> eval_source_;
  const SchedulePhase* eval_phase_ = nullptr;  // the phase whose shape and shards it reads
  std::string eval_start_;
  int eval_global_ = 0;
  bool rank_diagnostics_ = false;
  Batch probe_;
  int64_t step_ = 0;
  int phase_index_ = -1;
  int consecutive_skips_ = 0;  // skipped non-finite steps in a row (train.max_consecutive_skips)
  std::unique_ptr<BatchSource> source_;
  LogWindow log_;
  MemoryPerRank memory_;  // rank 0's, for the console and the metrics
};

Trainer::Trainer(const TrainOptions& options, Communicator& comm)
    : options_(options),
      config_(options.config),
      tc_(options.config.train()),
      comm_(comm),
      rank_(comm.rank()),
      ranks_(comm.size()),
      lead_(comm.rank() == 0),
      bert_(options.config.model().objective() == ModelConfig::BERT),
      console_(comm.rank() == 0 ? options.console : nullptr) {
  result_.rank = rank_;
  result_.num_ranks = ranks_;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  HR_RETURN_IF_ERROR(Validate());
  HR_RETURN_IF_ERROR(SetUp());
  HR_RETURN_IF_ERROR(RestoreOrInitialise());
  if (console_ && data_parallel_->active()) {
    std::fprintf(console_, "%s\n", data_parallel_->Describe(tc_.comm_bucket_mb()).c_str());
  }
  memory_ = MeasureMemoryPerRank(*model_, *optimizer_, *data_parallel_);
  if (console_) {
    std::fprintf(console_, "memory per rank (rank 0's buffers): %s\n",
                 DescribeMemory(memory_).c_str());
  }
  end_ = options_.max_steps > 0 ? std::min(options_.max_steps, schedule_->total_steps())
                                : schedule_->total_steps();
  if (console_ && options_.max_steps > schedule_->total_steps()) {
    std::fprintf(console_, "note: --steps %lld is capped at the config's %lld steps\n",
                 static_cast<long long>(options_.max_steps),
                 static_cast<long long>(schedule_->total_steps()));
  }
  HR_RETURN_IF_ERROR(OpenMetrics());
  HR_RETURN_IF_ERROR(CheckPhaseData());
  HR_RETURN_IF_ERROR(OpenRankProbe());

  step_ = result_.first_step;
  log_ = LogWindow();
  double last_loss = 0;
  bool saved_last = false;
  while (step_ < end_) {
    HR_ASSIGN_OR_RETURN(StepResult s, TrainStep());
    last_loss = s.loss;
    HR_RETURN_IF_ERROR(AfterStep(s, &saved_last));
  }
  if (!saved_last && step_ > result_.first_step) HR_RETURN_IF_ERROR(Save(last_loss));
  if (metrics_) HR_RETURN_IF_ERROR(metrics_->Flush());
  if (step_ > result_.first_step && result_.skipped_steps == step_ - result_.first_step) {
    return absl::InternalError(absl::StrCat(
        "every step of this run (", result_.skipped_steps,
        ") was skipped for a non-finite loss or gradient (train.skip_nonfinite_steps); nothing "
        "was learned: lower train.schedule.learning_rate"));
  }
  result_.last_step = step_;
  return result_;
}

absl::Status Trainer::Validate() {
  HR_ASSIGN_OR_RETURN(LearningRateSchedule schedule, LearningRateSchedule::Create(config_));
  schedule_.emplace(std::move(schedule));
  train_files_ = options_.train_files.empty() ? config_.data().train_files() : options_.train_files;
  eval_files_ = options_.eval_files.empty() ? config_.data().eval_files() : options_.eval_files;
  for (const SchedulePhase& p : schedule_->phases()) {
    if (TrainFiles(p).empty()) {
      return absl::InvalidArgumentError(
          "no training data: pass --data GLOB or set data.train_files (or every "
          "train.phases[i].train_files)");
    }
  }
  if (options_.run_dir.empty()) return absl::InvalidArgumentError("--run_dir is required");
  // The data globs before anything is written to the run directory: a typo must leave no empty
  // metrics.jsonl or tb/ behind.
  std::vector<std::pair<std::string, std::string>> globs = {
      {train_files_, "training data (--data, data.train_files)"},
      {eval_files_, "evaluation data (--eval_data, data.eval_files)"}};
  for (size_t i = 0; i < schedule_->phases().size(); ++i) {
    const SchedulePhase& p = schedule_->phases()[i];
    globs.push_back({p.train_files, absl::StrCat("train.phases[", i, "].train_files")});
    globs.push_back({p.eval_files, absl::StrCat("train.phases[", i, "].eval_files")});
  }
  for (const auto& [files, what] : globs) {
    if (files.empty()) continue;
    absl::StatusOr<std::vector<std::string>> matched = ExpandFileGlobs(files);
    if (!matched.ok()) {
      return absl::Status(matched.status().code(),
                          absl::StrCat(what, ": ", matched.status().message()));
    }
  }
  return CheckPhases();
}

// Every phase's global batch splits into whole micro-batches on every rank; the model is sized
// for the largest phase.
absl::Status Trainer::CheckPhases() {
  for (const SchedulePhase& p : schedule_->phases()) {
    if (p.global_batch_size % ranks_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the global batch ", p.global_batch_size, " of a phase is not a multiple of ", ranks_,
          " ranks; change the number of ranks or train.global_batch_size"));
    }
    if ((p.global_batch_size / ranks_) % MicroBatch(p) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "train.micro_batch_size ", MicroBatch(p), " does not divide the per-rank batch ",
          p.global_batch_size / ranks_, " (global batch ", p.global_batch_size, " over ", ranks_,
          " ranks) of a phase"));
    }
    limits_.max_batch = std::max(limits_.max_batch, MicroBatch(p));
    limits_.max_seq = std::max(limits_.max_seq, p.seq_length);
    limits_.max_predictions = std::max(limits_.max_predictions, p.max_predictions_per_seq);
  }
  return absl::OkStatus();
}

absl::Status Trainer::SetUp() {
  HR_ASSIGN_OR_RETURN(backend_, TrainingBackend::Create(options_.device, tc_, options_.wrap_ops));
  ops_ = backend_->ops();
  if (console_) {
    for (const std::string& line : IgnoredSettings(config_, options_.device)) {
      std::fprintf(console_, "note: %s\n", line.c_str());
    }
    // Evaluation asked for, without the data to evaluate on: said, not skipped silently.
    const std::vector<SchedulePhase>& phases = schedule_->phases();
    for (size_t i = 0; i < phases.size() && tc_.eval_every() > 0; ++i) {
      if (!EvalFiles(phases[i]).empty()) continue;
      std::fprintf(console_,
                   "note: train.eval_every=%lld, but %s has no evaluation data (--eval_data, "
                   "data.eval_files%s): it trains without evaluation\n",
                   static_cast<long long>(tc_.eval_every()),
                   phases.size() > 1 ? absl::StrCat("train.phases[", i, "]").c_str() : "the run",
                   phases.size() > 1 ? " or the phase's eval_files" : "");
    }
  }
  // Before the model allocates: a model that cannot fit stops here with both numbers.
  HR_RETURN_IF_ERROR(
      CheckTrainingMemory(config_, limits_, *ops_, comm_.local_size(), comm_.size()));
  HR_ASSIGN_OR_RETURN(model_,
                      backend_->CreateModel(config_.model(), limits_, ModelOptionsFromConfig(tc_)));
  DataParallelOptions dpo;
  dpo.bucket_bytes = BucketBytesFromMb(tc_.comm_bucket_mb());
  dpo.zero_stage = tc_.zero_stage();
  HR_ASSIGN_OR_RETURN(data_parallel_, DataParallel::Create(&comm_, ops_, model_.get(), dpo));
  // ZeRO-1: the optimizer of the rank's shard only (trainer/data_parallel.h).
  optimizer_ = std::make_unique<Optimizer<float>>(*ops_, model_->layout(), tc_.optimizer(),
                                                  data_parallel_->optimizer_shard(),
                                                  model_->mirrored_update());
  HR_RETURN_IF_ERROR(CheckBackend("setting up the model and optimizer", 0));
  google::protobuf::TextFormat::PrintToString(config_, &config_text_);
  if (ranks_ > 1) {
    HR_RETURN_IF_ERROR(CheckSameOnAllRanks(HostComm(), config_text_, model_->layout().total()));
  }
  return absl::OkStatus();
}

// Rank 0 decides where training starts: refuse to overwrite another run's checkpoints, find
// ours when resuming, load it; then it broadcasts the weights, moments and position, and every
// rank checks that it holds the same weights.
absl::Status Trainer::RestoreOrInitialise() {
  std::vector<float> params(static_cast<size_t>(model_->layout().total()));
  std::vector<float> m, v;
  bool resumed = false;
  if (lead_) HR_RETURN_IF_ERROR(LoadOrInitialiseOnLead(&params, &m, &v, &resumed));
  if (ranks_ > 1) HR_RETURN_IF_ERROR(BroadcastStart(&params, &m, &v, &resumed));
  model_->CopyParametersToDevice(params.data());
  if (resumed) {
    // The full moments of any checkpoint (any R, either stage); ZeRO-1 keeps its shard.
    m = data_parallel_->ShardOf(std::move(m));
    v = data_parallel_->ShardOf(std::move(v));
    optimizer_->ImportState(m.data(), v.data(), result_.first_step);
  }
  HR_RETURN_IF_ERROR(CheckBackend("copying the start weights to the device", result_.first_step));
  if (ranks_ > 1) {
    // What the ranks will train from, read back from each rank's device: the broadcast and the
    // copies are checked, not assumed.
    model_->CopyParametersToHost(params.data());
    HR_RETURN_IF_ERROR(CheckSameWeights(HostComm(), params));
  }
  return absl::OkStatus();
}

absl::Status Trainer::LoadOrInitialiseOnLead(std::vector<float>* params, std::vector<float>* m,
                                             std::vector<float>* v, bool* resumed) {
  if (ListCheckpoints(options_.run_dir).empty()) {
    // --resume on a run not yet started (a requeued job's first attempt) starts it, and says so.
    if (options_.resume && console_) {
      std::fprintf(console_, "note: --resume: no checkpoint in %s yet; starting from step 0\n",
                   options_.run_dir.c_str());
    }
    model_->InitParameters(tc_.seed());
    model_->CopyParametersToHost(params->data());
    return CheckBackend("initialising the parameters", 0);
  }
  if (!options_.resume) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.run_dir,
                     " already holds checkpoints; pass --resume to continue that run or "
                     "choose another --run_dir"));
  }
  // The newest intact checkpoint: damaged newer ones are skipped, each with a warning.
  std::vector<std::string> warnings;
  absl::StatusOr<Checkpoint> loaded =
      LoadLatestIntactCheckpoint(options_.run_dir, &config_.model(), &warnings);
  for (const std::string& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  HR_RETURN_IF_ERROR(loaded.status());
  Checkpoint& ck = *loaded;
  const std::string& resume_from = ck.dir;
  *params = std::move(ck.params);
  *m = std::move(ck.m);
  *v = std::move(ck.v);
  result_.first_step = ck.state.step;
  loader_position_ = ck.state.loader_state;
  *resumed = true;
  if (console_) {
    std::fprintf(console_, "resuming from %s (step %lld)%s\n", resume_from.c_str(),
                 static_cast<long long>(ck.state.step),
                 ranks_ > 1 ? absl::StrCat(" on ", ranks_, " ranks").c_str() : "");
  }
  return absl::OkStatus();
}

// Rank 0's start (resumed or not, step, loader position, weights and, resuming, the moments)
// to every rank.
absl::Status Trainer::BroadcastStart(std::vector<float>* params, std::vector<float>* m,
                                     std::vector<float>* v, bool* resumed) {
  int32_t header[4] = {*resumed ? 1 : 0, static_cast<int32_t>(result_.first_step >> 32),
                       static_cast<int32_t>(result_.first_step & 0xffffffff),
                       static_cast<int32_t>(loader_position_.size())};
  HR_RETURN_IF_ERROR(HostComm().Broadcast(header, 4, DataType::kInt32, 0));
  *resumed = header[0] != 0;
  result_.first_step = (static_cast<int64_t>(header[1]) << 32) | static_cast<uint32_t>(header[2]);
  HR_RETURN_IF_ERROR(
      BroadcastString(HostComm(), static_cast<size_t>(header[3]), &loader_position_));
  HR_RETURN_IF_ERROR(HostComm().Broadcast(params->data(), params->size(), DataType::kFloat32, 0));
  if (*resumed) {
    m->resize(params->size());
    v->resize(params->size());
    HR_RETURN_IF_ERROR(HostComm().Broadcast(m->data(), m->size(), DataType::kFloat32, 0));
    HR_RETURN_IF_ERROR(HostComm().Broadcast(v->data(), v->size(), DataType::kFloat32, 0));
  }
  return absl::OkStatus();
}

absl::Status Trainer::OpenMetrics() {
  if (!lead_) return absl::OkStatus();
  MetricsOptions mo;
  mo.run_dir = options_.run_dir;
  mo.total_steps = end_;
  mo.flops_per_token = TrainingFlopsPerToken(config_.model(), FirstPhase().seq_length,
                                             FirstPhase().max_predictions_per_seq);
  mo.peak_flops = options_.peak_flops;
#if defined(HEADROOM_HAVE_CUDA)
  // On the GPU, MFU is shown over a bf16 GEMM measured now (as headroom bench does), for all
  // ranks together, unless the caller gave the peak.
  if (mo.peak_flops <= 0) {
    if (auto* cuda_ops = dynamic_cast<CudaOps*>(backend_->backend())) {
      mo.peak_flops = cuda_ops->MeasureBf16GemmFlops() * ranks_;
    }
  }
#endif
  mo.console = console_;
  HR_ASSIGN_OR_RETURN(metrics_, MetricsLogger::Open(mo));
  return absl::OkStatus();
}

// The later phases' data is checked before the first step (a BERT phase 2 reading 128-token
// shards at 512 must fail now, not at step 450,000): OpenBatchSource checks the first records of
// every shard. The current phase's shards are opened by EnterPhase before its first step.
absl::Status Trainer::CheckPhaseData() {
  const int first = schedule_->PhaseIndex(result_.first_step);
  for (int i = first + 1; i < static_cast<int>(schedule_->phases().size()); ++i) {
    const SchedulePhase& p = schedule_->phases()[static_cast<size_t>(i)];
    std::vector<std::string> files = {TrainFiles(p)};
    if (tc_.eval_every() > 0 && !EvalFiles(p).empty()) files.push_back(EvalFiles(p));
    for (const std::string& f : files) {
      absl::StatusOr<std::unique_ptr<BatchSource>> src = OpenBatchSource(
          config_.model(), f, p.seq_length, p.max_predictions_per_seq, 1, tc_.seed(),
          /*shuffle=*/false);
      if (!src.ok()) {
        return absl::Status(src.status().code(),
                            absl::StrCat("train.phases[", i, "] (sequence length ", p.seq_length,
                                         "): ", src.status().message()));
      }
    }
  }
  return absl::OkStatus();
}

// Evaluation data of `phase` (its eval_files and shape): in order, from the start each time; the
// batches of one rank (whose size the R = 1 run would use, when the ranks divide it) are split
// over the ranks. Reopened when a phase of another shape or other shards starts.
absl::Status Trainer::OpenEvaluation(const SchedulePhase& phase) {
  if (EvalFiles(phase).empty() || tc_.eval_every() <= 0) return absl::OkStatus();
  if (eval_phase_ != nullptr && EvalFiles(*eval_phase_) == EvalFiles(phase) &&
      eval_phase_->seq_length == phase.seq_length &&
      eval_phase_->max_predictions_per_seq == phase.max_predictions_per_seq &&
      eval_phase_->global_batch_size == phase.global_batch_size) {
    return absl::OkStatus();
  }
  eval_global_ = tc_.micro_batch_size() > 0
                     ? std::min(tc_.micro_batch_size(), phase.global_batch_size)
                     : phase.global_batch_size;
  if (eval_global_ % ranks_ != 0) eval_global_ = MicroBatch(phase) * ranks_;
  HR_ASSIGN_OR_RETURN(eval_source_,
                      OpenBatchSource(config_.model(), EvalFiles(phase), phase.seq_length,
                                      phase.max_predictions_per_seq, eval_global_, tc_.seed(),
                                      /*shuffle=*/false, rank_, ranks_));
  eval_start_ = eval_source_->Position();
  eval_phase_ = &phase;
  return absl::OkStatus();
}

// Attention rank diagnostics (train.attention_rank_every, analysis/attention_rank.h): rank 0
// alone, on a probe batch read once (the first sequences of the validation data, else of the
// training data, in file order), after an optimizer step, never inside a forward/backward.
absl::Status Trainer::OpenRankProbe() {
  rank_diagnostics_ = lead_ && tc_.attention_rank_every() > 0;
  if (!rank_diagnostics_) return absl::OkStatus();
  const SchedulePhase& first = FirstPhase();
  const int rows = std::clamp(tc_.attention_rank_sequences(), 1, MicroBatch(first));
  HR_ASSIGN_OR_RETURN(
      std::unique_ptr<BatchSource> probe_source,
      OpenBatchSource(config_.model(),
                      EvalFiles(first).empty() ? TrainFiles(first) : EvalFiles(first),
                      first.seq_length, first.max_predictions_per_seq, rows, tc_.seed(),
                      /*shuffle=*/false));
  HR_ASSIGN_OR_RETURN(FeatureBatch f, probe_source->Next());
  probe_ = SliceBatch(f, bert_, 0, rows, first.seq_length, first.max_predictions_per_seq);
  if (result_.first_step == 0) HR_RETURN_IF_ERROR(LogAttentionRank(0));
  return absl::OkStatus();
}

absl::Status Trainer::EnterPhase() {
  const int pi = schedule_->PhaseIndex(step_);
  if (pi == phase_index_) return absl::OkStatus();
  const SchedulePhase& phase = schedule_->phases()[pi];
  HR_ASSIGN_OR_RETURN(
      source_, OpenBatchSource(config_.model(), TrainFiles(phase), phase.seq_length,
                               phase.max_predictions_per_seq, phase.global_batch_size, tc_.seed(),
                               /*shuffle=*/true, rank_, ranks_));
  HR_RETURN_IF_ERROR(OpenEvaluation(phase));
  // A resumed run's position belongs to the phase its checkpoint was written in. A phase that
  // starts at this very step reads its shards from the start: the checkpoint then came from a
  // run that had no such phase yet (a finished run extended by one, as BERT's phase 2 is added
  // once phase 1 is done), and its position is the previous phase's data.
  if (!loader_position_.empty() && phase.begin < step_) {
    HR_RETURN_IF_ERROR(source_->Restore(loader_position_));
  }
  loader_position_.clear();
  phase_index_ = pi;
  return absl::OkStatus();
}

// One optimizer step (Megatron's train_step): the rank's share of the global batch in k
// micro-batches, the gradient reduced over the ranks, then the update.
absl::StatusOr<StepResult> Trainer::TrainStep() {
  HR_RETURN_IF_ERROR(EnterPhase());
  StepResult r;
  r.phase = &schedule_->phases()[phase_index_];
  const int k = r.phase->global_batch_size / ranks_ / MicroBatch(*r.phase);
  HR_ASSIGN_OR_RETURN(FeatureBatch local, source_->Next());
  const Clock::time_point compute_start = Clock::now();
  HR_ASSIGN_OR_RETURN(r.loss, ForwardBackward(local, *r.phase, k));
  HR_ASSIGN_OR_RETURN(DataParallelStepStats dp, data_parallel_->Finish(compute_start));
  HR_RETURN_IF_ERROR(CheckBackend("reducing the gradients", step_ + 1));
  if (dp.reduced) {
    // The step's loss over every rank's micro-batches.
    HR_RETURN_IF_ERROR(
        HostComm().AllReduce(&r.loss, &r.loss, 1, DataType::kFloat64, ReduceOp::kAverage));
  }
  log_.compute += dp.compute_seconds;
  log_.wait += dp.wait_seconds;
  log_.bytes += dp.bytes_reduced;
  result_.compute_seconds += dp.compute_seconds;
  result_.comm_wait_seconds += dp.wait_seconds;
  result_.bytes_reduced += dp.bytes_reduced;
  HR_RETURN_IF_ERROR(ApplyUpdate(k, &r));
  ++step_;
  return r;
}

// Forward and backward of the k micro-batches of `local`, the gradients accumulating; the mean
// loss. Only the last backward marks tensors for the reduction (the sum of all micro-batches).
absl::StatusOr<double> Trainer::ForwardBackward(const FeatureBatch& local,
                                                const SchedulePhase& phase, int k) {
  const int micro = MicroBatch(phase);
  model_->ZeroGrads();
  double loss = 0, targets = 0;
  for (int j = 0; j < k; ++j) {
    Batch b = SliceBatch(local, bert_, static_cast<int64_t>(j) * micro, micro, phase.seq_length,
                         phase.max_predictions_per_seq);
    // The global micro-batch index (trainer.h): R ranks draw the masks one rank would.
    const uint64_t micro_index = static_cast<uint64_t>((step_ * ranks_ + rank_) * k + j);
    const DropoutKey key{tc_.seed(), micro_index, 0, 0};
    // Forward and backward are enqueued before the loss is read back: one wait per
    // micro-batch, when its work is all on the device.
    absl::Status s = model_->ForwardAsync(b, /*training=*/true, key);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("step ", step_ + 1, ": ", s.message()));
    }
    model_->Backward(1.0f,
                     j == k - 1 ? data_parallel_->hook() : TrainableModel<float>::BackwardHook());
    HR_RETURN_IF_ERROR(data_parallel_->hook_status());
    absl::StatusOr<LossStats> stats = model_->ReadLossStatsOrError();
    if (!stats.ok()) {
      return BackendFailureAtStep(stats.status(), step_ + 1);
    }
    loss += stats->loss / k;
    targets += bert_ ? stats->mlm_weight_sum : static_cast<double>(stats->lm_tokens);
  }
  if (targets <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step ", step_ + 1, ": the batch from ", train_files_, " has no ",
        bert_ ? "masked positions (zero masked_lm_weights)" : "target tokens",
        "; nothing to learn from: check the shards (headroom inspect) or prepare them again"));
  }
  return loss;
}

// The optimizer update of the reduced gradient, or (train.skip_nonfinite_steps) a skipped step;
// a non-finite loss or gradient norm stops training otherwise.
absl::Status Trainer::ApplyUpdate(int k, StepResult* r) {
  if (!std::isfinite(r->loss) && !tc_.skip_nonfinite_steps()) {
    return absl::InternalError(absl::StrCat(
        "step ", step_ + 1, ": the loss is ", r->loss,
        "; training stopped (no checkpoint of this "
        "step was written; lower train.schedule.learning_rate or resume from the last one)"));
  }
  r->lr = schedule_->LearningRate(step_);
  if (std::isfinite(r->loss)) {
    HR_ASSIGN_OR_RETURN(
        r->stats,
        optimizer_->Step(model_->params(), data_parallel_->optimizer_grads(), r->lr, 1.0 / k));
    HR_RETURN_IF_ERROR(CheckBackend("the optimizer step", step_ + 1));
    // ZeRO-1: every rank's updated shard to every rank (all agree on applying: the loss and the
    // grad norm are global).
    if (r->stats.applied) HR_RETURN_IF_ERROR(data_parallel_->GatherParameters());
    // The bf16 model's weight mirror, unless the update wrote it (a no-op in fp32).
    if (!optimizer_->writes_mirror()) model_->ParametersUpdated();
  }
  if (!r->stats.applied && !tc_.skip_nonfinite_steps()) {
    return absl::InternalError(absl::StrCat("step ", step_ + 1, ": the gradient norm is ",
                                            r->stats.grad_norm,
                                            "; training stopped before the update"));
  }
  if (r->stats.applied) consecutive_skips_ = 0;
  if (!r->stats.applied) {  // train.skip_nonfinite_steps, on every rank alike (the loss is reduced)
    ++result_.skipped_steps;
    ++consecutive_skips_;
    if (console_) {
      const bool finite = std::isfinite(r->loss);
      std::fprintf(console_, "step %lld: the %s is %g; skipped (train.skip_nonfinite_steps)\n",
                   static_cast<long long>(step_ + 1), finite ? "gradient norm" : "loss",
                   finite ? r->stats.grad_norm : r->loss);
    }
    if (consecutive_skips_ >= tc_.max_consecutive_skips()) {
      return absl::InternalError(
          absl::StrCat("step ", step_ + 1, ": ", consecutive_skips_,
                       " steps in a row were skipped for a non-finite loss or gradient "
                       "(train.max_consecutive_skips); training stopped: lower "
                       "train.schedule.learning_rate or check the data"));
    }
  }
  return absl::OkStatus();
}

// After step_ is done: the result, then every train.log_every steps a metrics line, every
// train.eval_every an evaluation, every train.attention_rank_every the rank diagnostics and
// every train.checkpoint_every a checkpoint (*saved tells whether this step was saved).
absl::Status Trainer::AfterStep(const StepResult& s, bool* saved) {
  *saved = false;
  result_.losses.push_back(s.loss);
  log_.tokens += static_cast<int64_t>(s.phase->global_batch_size) * s.phase->seq_length;
  ++log_.steps;
  if (options_.on_step) options_.on_step(step_, s.loss);
  if (tc_.log_every() > 0 && (step_ % tc_.log_every() == 0 || step_ == end_)) {
    HR_RETURN_IF_ERROR(LogTrain(s));
  }
  if (eval_source_ && (step_ % tc_.eval_every() == 0 || step_ == end_)) {
    HR_RETURN_IF_ERROR(Evaluate());
  }
  if (rank_diagnostics_ && (step_ % tc_.attention_rank_every() == 0 || step_ == end_)) {
    HR_RETURN_IF_ERROR(LogAttentionRank(step_));
  }
  if (tc_.checkpoint_every() > 0 && step_ % tc_.checkpoint_every() == 0) {
    HR_RETURN_IF_ERROR(Save(s.loss));
    *saved = true;
  }
  return absl::OkStatus();
}

absl::Status Trainer::LogTrain(const StepResult& s) {
  TrainRecord r;
  r.step = step_;
  r.loss = s.loss;
  r.lr = s.lr;
  r.grad_norm = s.stats.grad_norm;
  r.tokens = log_.tokens;
  r.seconds = Seconds(log_.start, Clock::now());
  r.steps = log_.steps;
  // Device memory on CUDA (peak: nothing is allocated inside a step), host RSS on the CPU.
  const int64_t device_bytes = ops_->DeviceMemoryInUse();
  r.memory_bytes = device_bytes >= 0 ? device_bytes : ProcessResidentBytes();
  const double n = static_cast<double>(log_.steps);
  if (ranks_ > 1) {
    // Rank 0's breakdown per step: forward+backward, all-reduce wait backward did not hide,
    // gradient bytes all-reduced.
    r.extra = {{"ranks", ranks_},
               {"compute_seconds", log_.compute / n},
               {"comm_wait_seconds", log_.wait / n},
               {"bytes_reduced", static_cast<double>(log_.bytes) / n}};
  }
  // Rank 0's buffers by purpose (trainer/memory_report.h), with the stage that shaped them.
  r.extra.emplace_back("zero_stage", tc_.zero_stage());
  for (const auto& kv : MemoryMetrics(memory_)) r.extra.push_back(kv);
  if (metrics_) HR_RETURN_IF_ERROR(metrics_->LogTrain(r));
  if (console_ && ranks_ > 1) {
    std::fprintf(console_,
                 "  step %lld | %d ranks | compute %.1f ms | comm wait %.1f ms | "
                 "reduced %.3g MB per step\n",
                 static_cast<long long>(step_), ranks_, 1e3 * log_.compute / log_.steps,
                 1e3 * log_.wait / log_.steps, log_.bytes / 1e6 / log_.steps);
    std::fflush(console_);
  }
  log_ = LogWindow();
  return absl::OkStatus();
}

absl::Status Trainer::Evaluate() {
  HR_RETURN_IF_ERROR(eval_source_->Restore(eval_start_));
  absl::StatusOr<EvalResult> e =
      RunEval(*model_, *eval_source_, tc_.eval_batches(), eval_global_, eval_phase_->seq_length,
              eval_phase_->max_predictions_per_seq, &HostComm());
  if (!e.ok()) {
    return absl::Status(e.status().code(),
                        absl::StrCat("step ", step_, ": evaluation data ", EvalFiles(*eval_phase_),
                                     ": ", e.status().message()));
  }
  if (metrics_) HR_RETURN_IF_ERROR(metrics_->LogEval(step_, e->Values()));
  return absl::OkStatus();
}

absl::Status Trainer::LogAttentionRank(int64_t at) {
  HR_ASSIGN_OR_RETURN(std::vector<HeadRankStats> st,
                      AttentionRankDiagnostics(model_.get(), probe_));
  HR_RETURN_IF_ERROR(CheckBackend("the attention rank diagnostics", at));
  return metrics_->LogEval(at, AttentionRankMetrics(st, tc_.attention_rank_per_head()));
}

// Rank 0 writes the checkpoint of step_ (train.keep_checkpoints kept). With ZeRO-1 every rank
// first contributes its shard of the moments, so the checkpoint holds the full state.
absl::Status Trainer::Save(double loss) {
  std::vector<float> m, v;
  optimizer_->ExportState(&m, &v);
  // Moments or weights read back from a failed device are not the model: write nothing. Every
  // rank checks its moments before the shards are gathered, rank 0 its weights.
  HR_RETURN_IF_ERROR(CheckBackend("reading the moments back for the checkpoint", step_));
  HR_ASSIGN_OR_RETURN(m, data_parallel_->GatherShards(std::move(m)));
  HR_ASSIGN_OR_RETURN(v, data_parallel_->GatherShards(std::move(v)));
  if (!lead_) return absl::OkStatus();
  std::vector<float> params(static_cast<size_t>(model_->layout().total()));
  model_->CopyParametersToHost(params.data());
  HR_RETURN_IF_ERROR(CheckBackend("reading the weights back for the checkpoint", step_));
  TrainerState st;
  st.step = step_;
  st.seed = tc_.seed();
  // The position is the next step's data, unless the next step starts a new phase (whose
  // loader starts afresh). It does not depend on the number of ranks.
  st.loader_state =
      schedule_->PhaseIndex(step_) == phase_index_ ? source_->Position() : std::string();
  st.loss = loss;
  st.config_text = config_text_;
  HR_ASSIGN_OR_RETURN(result_.last_checkpoint,
                      SaveCheckpoint(options_.run_dir, model_->layout(), params.data(), m.data(),
                                     v.data(), st, tc_.keep_checkpoints()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainResult> Train(const TrainOptions& options) {
  // One rank's error (a corrupt shard it alone reads, a full disk on rank 0) ends the job.
  return RunOnDataParallelRanks(options.comm, options.config.train(), options.device,
                                [&](Communicator& comm) { return Trainer(options, comm).Run(); });
}

}  // namespace headroom
