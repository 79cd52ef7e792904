// Evaluation over held-out shards and of a checkpoint; see evaluation.h.
#include "trainer/evaluation.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/communicator.h"
#include "config/load.h"
#include "trainer/batch_slice.h"
#include "trainer/checkpoint.h"
#include "trainer/schedule.h"

namespace headroom {
namespace {

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
  // Adds every rank's sums (counts are exact in float64 below 2^53).
  absl::Status SumOverRanks(Communicator& comm) {
    double sums[] = {static_cast<double>(sequences),
                     mlm_loss_sum,
                     mlm_weight_sum,
                     nsp_loss_sum,
                     lm_loss_sum,
                     static_cast<double>(mlm_count),
                     static_cast<double>(mlm_correct),
                     static_cast<double>(nsp_count),
                     static_cast<double>(nsp_correct),
                     static_cast<double>(lm_tokens),
                     static_cast<double>(lm_correct)};
    constexpr size_t kSums = sizeof(sums) / sizeof(sums[0]);
    HR_RETURN_IF_ERROR(comm.AllReduce(sums, sums, kSums, DataType::kFloat64, ReduceOp::kSum));
    sequences = std::llround(sums[0]);
    mlm_loss_sum = sums[1];
    mlm_weight_sum = sums[2];
    nsp_loss_sum = sums[3];
    lm_loss_sum = sums[4];
    mlm_count = std::llround(sums[5]);
    mlm_correct = std::llround(sums[6]);
    nsp_count = std::llround(sums[7]);
    nsp_correct = std::llround(sums[8]);
    lm_tokens = std::llround(sums[9]);
    lm_correct = std::llround(sums[10]);
    return absl::OkStatus();
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
      r.tokens = lm_tokens;
    }
    return r;
  }
};

}  // namespace

std::string EvalResult::ToString() const {
  if (bert) {
    return absl::StrFormat("loss=%.6f mlm_accuracy=%.6f nsp_accuracy=%.6f sequences=%d", loss,
                           mlm_accuracy, nsp_accuracy, sequences);
  }
  return absl::StrFormat("loss=%.6f perplexity=%.4f accuracy=%.6f sequences=%d tokens=%d", loss,
                         perplexity, accuracy, sequences, tokens);
}

std::vector<std::pair<std::string, double>> EvalResult::Values() const {
  if (bert) return {{"loss", loss}, {"mlm_accuracy", mlm_accuracy}, {"nsp_accuracy", nsp_accuracy}};
  return {{"loss", loss}, {"perplexity", perplexity}, {"accuracy", accuracy}};
}

absl::StatusOr<EvalResult> RunEval(TrainableModel<float>& model, BatchSource& source,
                                   int64_t batches, int batch_size, int seq, int max_pred,
                                   Communicator* comm) {
  const bool bert = model.config().objective() == ModelConfig::BERT;
  const int ranks = comm != nullptr ? comm->size() : 1;
  const int rows = batch_size / ranks;
  EvalAccumulator acc;
  acc.bert = bert;
  batches = std::min<int64_t>(batches, source.num_examples() / batch_size);
  for (int64_t i = 0; i < batches; ++i) {
    HR_ASSIGN_OR_RETURN(FeatureBatch f, source.Next());
    Batch b = SliceBatch(f, bert, 0, rows, seq, max_pred);
    HR_ASSIGN_OR_RETURN(LossStats s, model.Forward(b, /*training=*/false, DropoutKey{},
                                                   /*count_correct=*/true));
    acc.Add(s, rows);
  }
  if (ranks > 1) HR_RETURN_IF_ERROR(acc.SumOverRanks(*comm));
  // Zero scored tokens is no result: a loss of 0 and perplexity 1 would read as a perfect model.
  if (bert ? acc.mlm_weight_sum <= 0 : acc.lm_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "nothing was scored: ", batches, " batch(es) of ", batch_size, " sequences (of ",
        source.num_examples(), ") held no ", bert ? "masked positions" : "target tokens",
        "; pass a positive --eval_batches (train.eval_batches) and shards with targets"));
  }
  return acc.Result();
}

absl::StatusOr<EvalResult> EvaluateCheckpoint(const std::string& checkpoint,
                                              const std::string& files, int64_t batches,
                                              int batch_size, DeviceKind device) {
  HR_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(checkpoint));
  HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(dir, nullptr, /*with_optimizer=*/false));
  const ExperimentConfig& config = ck.config;
  HR_ASSIGN_OR_RETURN(LearningRateSchedule schedule, LearningRateSchedule::Create(config));
  // The phase the checkpoint stopped in gives the sequence length evaluated, and its own
  // eval_files (when it names them) the default data.
  const SchedulePhase& phase = schedule.PhaseAt(std::max<int64_t>(ck.state.step - 1, 0));
  const std::string data = !files.empty()              ? files
                           : !phase.eval_files.empty() ? phase.eval_files
                                                       : config.data().eval_files();
  if (data.empty()) return absl::InvalidArgumentError("no evaluation data: pass --data GLOB");
  if (batch_size <= 0) {
    batch_size = config.train().micro_batch_size() > 0 ? config.train().micro_batch_size()
                                                       : phase.global_batch_size;
  }
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Ops<float>> ops, MakeOps(device));
  ModelLimits limits{batch_size, phase.seq_length, phase.max_predictions_per_seq};
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> model,
                      Model<float>::Create(config.model(), ops.get(), limits,
                                           ModelOptionsFromConfig(config.train())));
  model->CopyParametersToDevice(ck.params.data());
  HR_ASSIGN_OR_RETURN(
      std::unique_ptr<BatchSource> source,
      OpenBatchSource(config.model(), data, phase.seq_length, phase.max_predictions_per_seq,
                      batch_size, config.train().seed(), /*shuffle=*/false));
  absl::StatusOr<EvalResult> r = RunEval(*model, *source, batches, batch_size, phase.seq_length,
                                         phase.max_predictions_per_seq);
  if (!r.ok()) {
    return absl::Status(r.status().code(), absl::StrCat(data, ": ", r.status().message()));
  }
  return r;
}

}  // namespace headroom
