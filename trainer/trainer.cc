// The training loop and evaluation; see trainer.h for the step and the resume contract.
#include "trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "google/protobuf/text_format.h"
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_source.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"

namespace headroom {
namespace {

using Clock = std::chrono::steady_clock;

// Rows [row, row + rows) of a global batch as the model's Batch.
Batch Slice(const FeatureBatch& f, bool bert, int64_t row, int rows, int seq, int max_pred) {
  Batch b;
  b.batch_size = rows;
  b.seq_length = seq;
  b.max_predictions = bert ? max_pred : 0;
  auto ints = [&](const char* name, int width) {
    const std::vector<int32_t>& v = f.ints.at(name);
    return std::vector<int32_t>(v.begin() + row * width, v.begin() + (row + rows) * width);
  };
  if (bert) {
    b.input_ids = ints("input_ids", seq);
    b.input_mask = ints("input_mask", seq);
    b.segment_ids = ints("segment_ids", seq);
    b.masked_lm_positions = ints("masked_lm_positions", max_pred);
    b.masked_lm_ids = ints("masked_lm_ids", max_pred);
    const std::vector<float>& w = f.floats.at("masked_lm_weights");
    b.masked_lm_weights.assign(w.begin() + row * max_pred, w.begin() + (row + rows) * max_pred);
    b.next_sentence_labels = ints("next_sentence_labels", 1);
  } else {
    b.targets = ints("targets", seq);
  }
  return b;
}

// Sums LossStats over batches and turns them into the reported metrics.
struct EvalAccumulator {
  bool bert = false;
  int64_t sequences = 0;
  double mlm_loss_sum = 0, mlm_weight_sum = 0, nsp_loss_sum = 0, lm_loss_sum = 0;
  int64_t mlm_count = 0, mlm_correct = 0, nsp_count = 0, nsp_correct = 0, lm_tokens = 0,
          lm_correct = 0;

  void Add(const LossStats& s, int rows) {
    sequences += rows;
    mlm_loss_sum += s.mlm_loss_sum;
    mlm_weight_sum += s.mlm_weight_sum;
    mlm_count += s.mlm_count;
    mlm_correct += std::max<int64_t>(s.mlm_correct, 0);
    nsp_loss_sum += s.nsp_loss * static_cast<double>(s.nsp_count);
    nsp_count += s.nsp_count;
    nsp_correct += s.nsp_correct;
    lm_loss_sum += s.lm_loss_sum;
    lm_tokens += s.lm_tokens;
    lm_correct += std::max<int64_t>(s.lm_correct, 0);
  }
  EvalResult Result() const {
    EvalResult r;
    r.bert = bert;
    r.sequences = sequences;
    if (bert) {
      // Google BERT's definition over the whole evaluation set: the weighted masked-LM mean plus
      // the mean next-sentence loss.
      const double mlm = mlm_loss_sum / (mlm_weight_sum + 1e-5);
      const double nsp = nsp_count > 0 ? nsp_loss_sum / static_cast<double>(nsp_count) : 0.0;
      r.loss = mlm + nsp;
      r.mlm_accuracy = mlm_count > 0 ? static_cast<double>(mlm_correct) / mlm_count : 0.0;
      r.nsp_accuracy = nsp_count > 0 ? static_cast<double>(nsp_correct) / nsp_count : 0.0;
    } else {
      r.loss = lm_tokens > 0 ? lm_loss_sum / static_cast<double>(lm_tokens) : 0.0;
      r.perplexity = std::exp(r.loss);
      r.accuracy = lm_tokens > 0 ? static_cast<double>(lm_correct) / lm_tokens : 0.0;
    }
    return r;
  }
};

// Evaluates `model` on up to `batches` batches of `source` from its current position.
absl::StatusOr<EvalResult> RunEval(Model<float>& model, BatchSource& source, int64_t batches,
                                   int batch_size, int seq, int max_pred) {
  const bool bert = model.config().objective() == ModelConfig::BERT;
  EvalAccumulator acc;
  acc.bert = bert;
  batches = std::min<int64_t>(batches, source.num_examples() / batch_size);
  for (int64_t i = 0; i < batches; ++i) {
    HR_ASSIGN_OR_RETURN(FeatureBatch f, source.Next());
    Batch b = Slice(f, bert, 0, batch_size, seq, max_pred);
    HR_ASSIGN_OR_RETURN(LossStats s, model.Forward(b, /*training=*/false, DropoutKey{},
                                                   /*count_correct=*/true));
    acc.Add(s, batch_size);
  }
  return acc.Result();
}

}  // namespace

std::string EvalResult::ToString() const {
  if (bert) {
    return absl::StrFormat("loss=%.6f mlm_accuracy=%.6f nsp_accuracy=%.6f sequences=%d", loss,
                           mlm_accuracy, nsp_accuracy, sequences);
  }
  return absl::StrFormat("loss=%.6f perplexity=%.4f accuracy=%.6f sequences=%d", loss, perplexity,
                         accuracy, sequences);
}

std::vector<std::pair<std::string, double>> EvalResult::Values() const {
  if (bert) return {{"loss", loss}, {"mlm_accuracy", mlm_accuracy}, {"nsp_accuracy", nsp_accuracy}};
  return {{"loss", loss}, {"perplexity", perplexity}, {"accuracy", accuracy}};
}

absl::StatusOr<TrainResult> Train(const TrainOptions& options) {
  const ExperimentConfig& config = options.config;
  const TrainConfig& tc = config.train();
  const bool bert = config.model().objective() == ModelConfig::BERT;
  HR_ASSIGN_OR_RETURN(LearningRateSchedule schedule, LearningRateSchedule::Create(config));
  const std::string train_files =
      options.train_files.empty() ? config.data().train_files() : options.train_files;
  const std::string eval_files =
      options.eval_files.empty() ? config.data().eval_files() : options.eval_files;
  if (train_files.empty()) {
    return absl::InvalidArgumentError("no training data: pass --data GLOB or set data.train_files");
  }
  if (options.run_dir.empty()) return absl::InvalidArgumentError("--run_dir is required");

  // Micro-batch size per phase: train.micro_batch_size, or the whole global batch (one rank).
  auto micro_of = [&](const SchedulePhase& p) {
    return tc.micro_batch_size() > 0 ? std::min(tc.micro_batch_size(), p.global_batch_size)
                                     : p.global_batch_size;
  };
  ModelLimits limits;
  for (const SchedulePhase& p : schedule.phases()) {
    if (p.global_batch_size % micro_of(p) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("train.micro_batch_size ", micro_of(p),
                                                     " does not divide the global batch ",
                                                     p.global_batch_size, " of a phase"));
    }
    limits.max_batch = std::max(limits.max_batch, micro_of(p));
    limits.max_seq = std::max(limits.max_seq, p.seq_length);
    limits.max_predictions = std::max(limits.max_predictions, p.max_predictions_per_seq);
  }

  // Refuse to overwrite another run's checkpoints; find ours when resuming.
  std::string resume_from;
  if (!ListCheckpoints(options.run_dir).empty()) {
    if (!options.resume) {
      return absl::FailedPreconditionError(
          absl::StrCat(options.run_dir,
                       " already holds checkpoints; pass --resume to continue that run or "
                       "choose another --run_dir"));
    }
    HR_ASSIGN_OR_RETURN(resume_from, LatestCheckpoint(options.run_dir));
  }

  HR_ASSIGN_OR_RETURN(std::unique_ptr<Ops<float>> ops, MakeOps(options.device));
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> model,
                      Model<float>::Create(config.model(), ops.get(), limits));
  const ParameterLayout& layout = model->layout();
  Optimizer<float> optimizer(*ops, layout, tc.optimizer());

  TrainResult result;
  std::string loader_position;
  if (!resume_from.empty()) {
    HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(resume_from, &config.model()));
    model->CopyParametersToDevice(ck.params.data());
    optimizer.ImportState(ck.m.data(), ck.v.data(), ck.state.step);
    result.first_step = ck.state.step;
    loader_position = ck.state.loader_state;
    if (options.console) {
      std::fprintf(options.console, "resuming from %s (step %lld)\n", resume_from.c_str(),
                   static_cast<long long>(ck.state.step));
    }
  } else {
    model->InitParameters(tc.seed());
  }

  std::string config_text;
  google::protobuf::TextFormat::PrintToString(config, &config_text);
  const int64_t end = options.max_steps > 0 ? std::min(options.max_steps, schedule.total_steps())
                                            : schedule.total_steps();
  const SchedulePhase& first_phase = schedule.PhaseAt(result.first_step);
  MetricsOptions mo;
  mo.run_dir = options.run_dir;
  mo.total_steps = end;
  mo.flops_per_token = TrainingFlopsPerToken(config.model(), first_phase.seq_length,
                                             first_phase.max_predictions_per_seq);
  mo.peak_flops = options.peak_flops;
  mo.console = options.console;
  HR_ASSIGN_OR_RETURN(std::unique_ptr<MetricsLogger> metrics, MetricsLogger::Open(mo));

  // Evaluation data: in order, from the start each time.
  std::unique_ptr<BatchSource> eval_source;
  std::string eval_start;
  const int eval_batch = micro_of(first_phase);
  if (!eval_files.empty() && tc.eval_every() > 0) {
    HR_ASSIGN_OR_RETURN(eval_source,
                        OpenBatchSource(config.model(), eval_files, first_phase.seq_length,
                                        first_phase.max_predictions_per_seq, eval_batch, tc.seed(),
                                        /*shuffle=*/false));
    eval_start = eval_source->Position();
  }

  int64_t step = result.first_step;
  int phase_index = -1;
  std::unique_ptr<BatchSource> source;
  auto save = [&](double loss) -> absl::Status {
    std::vector<float> params(static_cast<size_t>(layout.total())), m, v;
    model->CopyParametersToHost(params.data());
    optimizer.ExportState(&m, &v);
    TrainerState st;
    st.step = step;
    st.seed = tc.seed();
    // The position is the next step's data, unless the next step starts a new phase (whose
    // loader starts afresh).
    st.loader_state = schedule.PhaseIndex(step) == phase_index ? source->Position() : std::string();
    st.loss = loss;
    st.config_text = config_text;
    HR_ASSIGN_OR_RETURN(result.last_checkpoint,
                        SaveCheckpoint(options.run_dir, layout, params.data(), m.data(), v.data(),
                                       st, tc.keep_checkpoints()));
    return absl::OkStatus();
  };

  Clock::time_point log_start = Clock::now();
  int64_t log_tokens = 0, log_steps = 0;
  double last_loss = 0;
  bool saved_last = false;
  while (step < end) {
    const int pi = schedule.PhaseIndex(step);
    const SchedulePhase& phase = schedule.phases()[pi];
    if (pi != phase_index) {
      HR_ASSIGN_OR_RETURN(
          source, OpenBatchSource(config.model(), train_files, phase.seq_length,
                                  phase.max_predictions_per_seq, phase.global_batch_size, tc.seed(),
                                  /*shuffle=*/true));
      if (!loader_position.empty()) {
        HR_RETURN_IF_ERROR(source->Restore(loader_position));
        loader_position.clear();
      }
      phase_index = pi;
    }
    const int micro = micro_of(phase);
    const int k = phase.global_batch_size / micro;
    HR_ASSIGN_OR_RETURN(FeatureBatch global, source->Next());
    model->ZeroGrads();
    double loss = 0;
    for (int j = 0; j < k; ++j) {
      Batch b = Slice(global, bert, static_cast<int64_t>(j) * micro, micro, phase.seq_length,
                      phase.max_predictions_per_seq);
      const DropoutKey key{tc.seed(), static_cast<uint64_t>(step * k + j), 0, 0};
      absl::StatusOr<LossStats> s = model->Forward(b, /*training=*/true, key);
      if (!s.ok()) {
        return absl::Status(s.status().code(),
                            absl::StrCat("step ", step + 1, ": ", s.status().message()));
      }
      loss += s->loss / k;
      model->Backward(1.0f);
    }
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrCat(
          "step ", step + 1, ": the loss is ", loss,
          "; training stopped (no checkpoint of this "
          "step was written; lower train.schedule.learning_rate or resume from the last one)"));
    }
    const double lr = schedule.LearningRate(step);
    OptimizerStats st = optimizer.Step(model->params(), model->grads(), lr, 1.0 / k);
    if (!st.applied) {
      return absl::InternalError(absl::StrCat("step ", step + 1, ": the gradient norm is ",
                                              st.grad_norm,
                                              "; training stopped before the update"));
    }
    ++step;
    saved_last = false;
    last_loss = loss;
    result.losses.push_back(loss);
    log_tokens += static_cast<int64_t>(phase.global_batch_size) * phase.seq_length;
    ++log_steps;
    if (options.on_step) options.on_step(step, loss);

    if (tc.log_every() > 0 && (step % tc.log_every() == 0 || step == end)) {
      TrainRecord r;
      r.step = step;
      r.loss = loss;
      r.lr = lr;
      r.grad_norm = st.grad_norm;
      r.tokens = log_tokens;
      r.seconds = std::chrono::duration<double>(Clock::now() - log_start).count();
      r.steps = log_steps;
      r.memory_bytes = ProcessResidentBytes();
      HR_RETURN_IF_ERROR(metrics->LogTrain(r));
      log_start = Clock::now();
      log_tokens = log_steps = 0;
    }
    if (eval_source && (step % tc.eval_every() == 0 || step == end)) {
      HR_RETURN_IF_ERROR(eval_source->Restore(eval_start));
      HR_ASSIGN_OR_RETURN(EvalResult e,
                          RunEval(*model, *eval_source, tc.eval_batches(), eval_batch,
                                  first_phase.seq_length, first_phase.max_predictions_per_seq));
      HR_RETURN_IF_ERROR(metrics->LogEval(step, e.Values()));
    }
    if (tc.checkpoint_every() > 0 && step % tc.checkpoint_every() == 0) {
      HR_RETURN_IF_ERROR(save(loss));
      saved_last = true;
    }
  }
  if (!saved_last && step > result.first_step) HR_RETURN_IF_ERROR(save(last_loss));
  HR_RETURN_IF_ERROR(metrics->Flush());
  result.last_step = step;
  return result;
}

absl::StatusOr<EvalResult> EvaluateCheckpoint(const std::string& checkpoint,
                                              const std::string& files, int64_t batches,
                                              int batch_size, DeviceKind device) {
  HR_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(checkpoint));
  HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(dir, nullptr, /*with_optimizer=*/false));
  const ExperimentConfig& config = ck.config;
  const std::string data = files.empty() ? config.data().eval_files() : files;
  if (data.empty()) return absl::InvalidArgumentError("no evaluation data: pass --data GLOB");
  HR_ASSIGN_OR_RETURN(LearningRateSchedule schedule, LearningRateSchedule::Create(config));
  // The phase the checkpoint stopped in gives the sequence length evaluated.
  const SchedulePhase& phase = schedule.PhaseAt(std::max<int64_t>(ck.state.step - 1, 0));
  if (batch_size <= 0) {
    batch_size = config.train().micro_batch_size() > 0 ? config.train().micro_batch_size()
                                                       : phase.global_batch_size;
  }
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Ops<float>> ops, MakeOps(device));
  ModelLimits limits{batch_size, phase.seq_length, phase.max_predictions_per_seq};
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> model,
                      Model<float>::Create(config.model(), ops.get(), limits));
  model->CopyParametersToDevice(ck.params.data());
  HR_ASSIGN_OR_RETURN(
      std::unique_ptr<BatchSource> source,
      OpenBatchSource(config.model(), data, phase.seq_length, phase.max_predictions_per_seq,
                      batch_size, config.train().seed(), /*shuffle=*/false));
  return RunEval(*model, *source, batches, batch_size, phase.seq_length,
                 phase.max_predictions_per_seq);
}

}  // namespace headroom
