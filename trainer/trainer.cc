// The training loop and evaluation; see trainer.h for the step and the resume contract.
#include "trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/attention_rank.h"
#include "base/status_macros.h"
#include "comm/communicator.h"
#include "comm/create_communicator.h"
#include "comm/gradient_buckets.h"
#include "comm/mpi_runtime.h"
#include "config/load.h"
#include "data/sharded_loader.h"
#include "google/protobuf/text_format.h"
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_source.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"
#ifdef HEADROOM_HAVE_CUDA
#include "comm/nccl_communicator.h"
#include "kernels/cuda/cuda_ops.h"
#endif

namespace headroom {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The communicator of train.comm for `device`: "auto" asks for NCCL when CUDA tensors are
// trained under a launcher (create_communicator.h never guesses NCCL itself).
absl::StatusOr<std::unique_ptr<Communicator>> CreateTrainCommunicator(const std::string& name,
                                                                      DeviceKind device) {
  absl::StatusOr<CommBackend> backend = ParseCommBackend(name);
  if (!backend.ok())
    return absl::InvalidArgumentError(absl::StrCat("train.comm: ", backend.status().message()));
  CommunicatorOptions o;
  o.backend = *backend;
  if (o.backend == CommBackend::kAuto && device == DeviceKind::kCuda && LaunchedByMpi()) {
    o.backend = CommBackend::kNccl;
  }
  return CreateCommunicator(o);
}

// FNV-1a, 64 bits: a checksum that sees every byte and its position.
uint64_t Fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Gathers `values` (the same count on every rank) from all ranks: result[r * n + i].
absl::StatusOr<std::vector<int32_t>> GatherInts(Communicator& comm,
                                                const std::vector<int32_t>& values) {
  std::vector<int32_t> all(values.size() * static_cast<size_t>(comm.size()));
  HR_RETURN_IF_ERROR(comm.AllGather(values.data(), all.data(), values.size(), DataType::kInt32));
  return all;
}

// The ranks whose `n` gathered words differ from rank 0's, as "1, 3".
std::string RanksDiffering(const std::vector<int32_t>& all, size_t n, int ranks) {
  std::string out;
  for (int r = 1; r < ranks; ++r) {
    if (!std::equal(all.begin() + r * n, all.begin() + (r + 1) * n, all.begin())) {
      absl::StrAppend(&out, out.empty() ? "" : ", ", r);
    }
  }
  return out;
}

std::vector<int32_t> Words(uint64_t x) {
  return {static_cast<int32_t>(x >> 32), static_cast<int32_t>(x & 0xffffffffu)};
}

// Before anything is broadcast: every rank must train the same config (so the same parameter
// count, or the broadcast sizes would not match).
absl::Status CheckSameOnAllRanks(Communicator& comm, const std::string& config_text,
                                 int64_t parameters) {
  std::vector<int32_t> mine = Words(Fnv1a(config_text.data(), config_text.size()));
  for (int32_t w : Words(static_cast<uint64_t>(parameters))) mine.push_back(w);
  HR_ASSIGN_OR_RETURN(std::vector<int32_t> all, GatherInts(comm, mine));
  const std::string differ = RanksDiffering(all, mine.size(), comm.size());
  if (!differ.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rank(s) ", differ, " of ", comm.size(),
        " were started with another config than rank 0 (config checksums differ); start every "
        "rank with the same config file and --set flags"));
  }
  return absl::OkStatus();
}

// After the broadcast from rank 0: every rank must start from the same weights.
absl::Status CheckSameWeights(Communicator& comm, const std::vector<float>& params) {
  const uint64_t h = Fnv1a(params.data(), sizeof(float) * params.size());
  HR_ASSIGN_OR_RETURN(std::vector<int32_t> all, GatherInts(comm, Words(h)));
  const std::string differ = RanksDiffering(all, 2, comm.size());
  if (!differ.empty()) {
    return absl::InternalError(
        absl::StrCat("the initial weights of rank(s) ", differ,
                     " differ from rank 0's after broadcasting them "
                     "(checksum ",
                     absl::Hex(h),
                     " on this rank); the communicator or the device copy is "
                     "broken, so training would diverge between ranks"));
  }
  return absl::OkStatus();
}

// Broadcasts rank 0's `*text` (of `size` bytes, known to every rank) as int32 words.
absl::Status BroadcastString(Communicator& comm, size_t size, std::string* text) {
  std::vector<int32_t> words((size + 3) / 4, 0);
  if (comm.rank() == 0) std::memcpy(words.data(), text->data(), size);
  HR_RETURN_IF_ERROR(comm.Broadcast(words.data(), words.size(), DataType::kInt32, 0));
  text->assign(reinterpret_cast<const char*>(words.data()), size);
  return absl::OkStatus();
}

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
      r.tokens = lm_tokens;
    }
    return r;
  }
};

// Evaluates `model` on up to `batches` batches of `batch_size` sequences (over all ranks of
// `comm`; nullptr: one rank) of `source` from its current position; each rank evaluates its
// share of every batch and the sums are added over ranks.
absl::StatusOr<EvalResult> RunEval(Model<float>& model, BatchSource& source, int64_t batches,
                                   int batch_size, int seq, int max_pred,
                                   Communicator* comm = nullptr) {
  const bool bert = model.config().objective() == ModelConfig::BERT;
  const int ranks = comm != nullptr ? comm->size() : 1;
  const int rows = batch_size / ranks;
  EvalAccumulator acc;
  acc.bert = bert;
  batches = std::min<int64_t>(batches, source.num_examples() / batch_size);
  for (int64_t i = 0; i < batches; ++i) {
    HR_ASSIGN_OR_RETURN(FeatureBatch f, source.Next());
    Batch b = Slice(f, bert, 0, rows, seq, max_pred);
    HR_ASSIGN_OR_RETURN(LossStats s, model.Forward(b, /*training=*/false, DropoutKey{},
                                                   /*count_correct=*/true));
    acc.Add(s, rows);
  }
  if (ranks > 1) {
    // Counts are exact in float64 below 2^53.
    double sums[] = {static_cast<double>(acc.sequences),
                     acc.mlm_loss_sum,
                     acc.mlm_weight_sum,
                     acc.nsp_loss_sum,
                     acc.lm_loss_sum,
                     static_cast<double>(acc.mlm_count),
                     static_cast<double>(acc.mlm_correct),
                     static_cast<double>(acc.nsp_count),
                     static_cast<double>(acc.nsp_correct),
                     static_cast<double>(acc.lm_tokens),
                     static_cast<double>(acc.lm_correct)};
    constexpr size_t kSums = sizeof(sums) / sizeof(sums[0]);
    HR_RETURN_IF_ERROR(comm->AllReduce(sums, sums, kSums, DataType::kFloat64, ReduceOp::kSum));
    acc.sequences = std::llround(sums[0]);
    acc.mlm_loss_sum = sums[1];
    acc.mlm_weight_sum = sums[2];
    acc.nsp_loss_sum = sums[3];
    acc.lm_loss_sum = sums[4];
    acc.mlm_count = std::llround(sums[5]);
    acc.mlm_correct = std::llround(sums[6]);
    acc.nsp_count = std::llround(sums[7]);
    acc.nsp_correct = std::llround(sums[8]);
    acc.lm_tokens = std::llround(sums[9]);
    acc.lm_correct = std::llround(sums[10]);
  }
  return acc.Result();
}

// Train() on the ranks of `comm` (see trainer.h). Errors are this rank's; Train() aborts the job
// on them when there are several ranks.
absl::StatusOr<TrainResult> TrainOnRanks(const TrainOptions& options, Communicator& comm) {
  const ExperimentConfig& config = options.config;
  const TrainConfig& tc = config.train();
  const bool bert = config.model().objective() == ModelConfig::BERT;
  const int rank = comm.rank(), ranks = comm.size();
  const bool lead = rank == 0;
  FILE* console = lead ? options.console : nullptr;
  HR_ASSIGN_OR_RETURN(LearningRateSchedule schedule, LearningRateSchedule::Create(config));
  const std::string train_files =
      options.train_files.empty() ? config.data().train_files() : options.train_files;
  const std::string eval_files =
      options.eval_files.empty() ? config.data().eval_files() : options.eval_files;
  if (train_files.empty()) {
    return absl::InvalidArgumentError("no training data: pass --data GLOB or set data.train_files");
  }
  if (options.run_dir.empty()) return absl::InvalidArgumentError("--run_dir is required");
  // The data globs before anything is written to the run directory: a typo must leave no empty
  // metrics.jsonl or tb/ behind.
  for (const auto& [files, what] :
       {std::pair<const std::string&, const char*>{train_files,
                                                   "training data (--data, data.train_files)"},
        {eval_files, "evaluation data (--eval_data, data.eval_files)"}}) {
    if (files.empty()) continue;
    absl::StatusOr<std::vector<std::string>> matched = ExpandFileGlobs(files);
    if (!matched.ok()) {
      return absl::Status(matched.status().code(),
                          absl::StrCat(what, ": ", matched.status().message()));
    }
  }

  // Micro-batch size per phase on each rank: train.micro_batch_size, or the rank's whole share
  // of the global batch.
  auto micro_of = [&](const SchedulePhase& p) {
    const int local = p.global_batch_size / ranks;
    return tc.micro_batch_size() > 0 ? std::min(tc.micro_batch_size(), local) : local;
  };
  ModelLimits limits;
  for (const SchedulePhase& p : schedule.phases()) {
    if (p.global_batch_size % ranks != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the global batch ", p.global_batch_size, " of a phase is not a multiple of ", ranks,
          " ranks; change the number of ranks or train.global_batch_size"));
    }
    if ((p.global_batch_size / ranks) % micro_of(p) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "train.micro_batch_size ", micro_of(p), " does not divide the per-rank batch ",
          p.global_batch_size / ranks, " (global batch ", p.global_batch_size, " over ", ranks,
          " ranks) of a phase"));
    }
    limits.max_batch = std::max(limits.max_batch, micro_of(p));
    limits.max_seq = std::max(limits.max_seq, p.seq_length);
    limits.max_predictions = std::max(limits.max_predictions, p.max_predictions_per_seq);
  }

  HR_ASSIGN_OR_RETURN(std::unique_ptr<Ops<float>> ops,
                      MakeOps(options.device, {config.train().precision()}));
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> model,
                      Model<float>::Create(config.model(), ops.get(), limits,
                                           ModelOptionsFromConfig(config.train())));
  const ParameterLayout& layout = model->layout();
  Optimizer<float> optimizer(*ops, layout, tc.optimizer());
  const int64_t total = layout.total();
#ifdef HEADROOM_HAVE_CUDA
  // NCCL orders its collectives after the work of the stream the ops enqueue on.
  if (auto* nccl = dynamic_cast<NcclCommunicator*>(&comm); nccl != nullptr) {
    if (auto* cuda = dynamic_cast<CudaOps*>(ops.get()); cuda != nullptr) {
      nccl->set_caller_stream(cuda->stream());
    }
  }
#endif
  if (comm.device_buffers() && ops->device() == DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.comm=", comm.backend_name(),
                     " reduces device buffers, but --device=cpu; use train.comm=mpi (or auto)"));
  }

  std::string config_text;
  google::protobuf::TextFormat::PrintToString(config, &config_text);
  if (ranks > 1) HR_RETURN_IF_ERROR(CheckSameOnAllRanks(comm, config_text, total));

  // Rank 0 decides where training starts: refuse to overwrite another run's checkpoints, find
  // ours when resuming, load it; then it broadcasts the weights, moments and position.
  TrainResult result;
  result.rank = rank;
  result.num_ranks = ranks;
  std::string loader_position;
  std::vector<float> params(static_cast<size_t>(total));
  std::vector<float> m, v;
  bool resumed = false;
  if (lead) {
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
    if (!resume_from.empty()) {
      HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(resume_from, &config.model()));
      params = std::move(ck.params);
      m = std::move(ck.m);
      v = std::move(ck.v);
      result.first_step = ck.state.step;
      loader_position = ck.state.loader_state;
      resumed = true;
      if (console) {
        std::fprintf(console, "resuming from %s (step %lld)%s\n", resume_from.c_str(),
                     static_cast<long long>(ck.state.step),
                     ranks > 1 ? absl::StrCat(" on ", ranks, " ranks").c_str() : "");
      }
    } else {
      model->InitParameters(tc.seed());
      model->CopyParametersToHost(params.data());
    }
  }
  if (ranks > 1) {
    int32_t header[4] = {resumed ? 1 : 0, static_cast<int32_t>(result.first_step >> 32),
                         static_cast<int32_t>(result.first_step & 0xffffffff),
                         static_cast<int32_t>(loader_position.size())};
    HR_RETURN_IF_ERROR(comm.Broadcast(header, 4, DataType::kInt32, 0));
    resumed = header[0] != 0;
    result.first_step = (static_cast<int64_t>(header[1]) << 32) | static_cast<uint32_t>(header[2]);
    HR_RETURN_IF_ERROR(BroadcastString(comm, static_cast<size_t>(header[3]), &loader_position));
    HR_RETURN_IF_ERROR(comm.Broadcast(params.data(), params.size(), DataType::kFloat32, 0));
    if (resumed) {
      m.resize(params.size());
      v.resize(params.size());
      HR_RETURN_IF_ERROR(comm.Broadcast(m.data(), m.size(), DataType::kFloat32, 0));
      HR_RETURN_IF_ERROR(comm.Broadcast(v.data(), v.size(), DataType::kFloat32, 0));
    }
  }
  model->CopyParametersToDevice(params.data());
  if (resumed) optimizer.ImportState(m.data(), v.data(), result.first_step);
  if (ranks > 1) {
    // What the ranks will train from, read back from each rank's device: the broadcast and the
    // copies are checked, not assumed.
    model->CopyParametersToHost(params.data());
    HR_RETURN_IF_ERROR(CheckSameWeights(comm, params));
  }
  std::vector<float>().swap(params);
  std::vector<float>().swap(m);
  std::vector<float>().swap(v);

  // Gradient all-reduce in buckets, launched from backward's hook (several ranks only).
  std::unique_ptr<GradientBuckets> buckets;
  std::vector<float> staged;  // host copy of the gradients (device tensors over MPI)
  std::vector<std::vector<int>> hook_tensors;  // Backward hook layer + 1 -> tensor indices
  float* comm_grads = model->grads();
  const bool staging = ops->device() != DeviceKind::kCpu && !comm.device_buffers();
  if (ranks > 1) {
    if (staging) {
      staged.assign(static_cast<size_t>(total), 0.0f);
      comm_grads = staged.data();
    }
    std::vector<GradientTensor> tensors;
    for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.numel, t.layer});
    hook_tensors = BackwardHookTensors(layout, config.model().num_layers());
    GradientBucketsOptions bo;
    bo.bucket_bytes = static_cast<int64_t>(
        std::min(tc.comm_bucket_mb() * 1024.0 * 1024.0, static_cast<double>(INT64_MAX / 2)));
    bo.op = ReduceOp::kAverage;
    HR_ASSIGN_OR_RETURN(buckets, GradientBuckets::Create(&comm, comm_grads, tensors, bo));
    if (console) {
      std::fprintf(console,
                   "data parallel: %d ranks (%s%s), %zu gradient buckets of <= %g MiB, "
                   "%.3g MB per step\n",
                   ranks, comm.backend_name(), staging ? ", host-staged" : "",
                   buckets->buckets().size(), tc.comm_bucket_mb(), total * 4.0 / 1e6);
    }
  }
  absl::Status hook_status;
  const Model<float>::BackwardHook hook = [&](int layer) {
    if (!hook_status.ok()) return;
    for (int i : hook_tensors[static_cast<size_t>(layer + 1)]) {
      if (staging) {
        const TensorSpec& t = layout.tensors()[static_cast<size_t>(i)];
        ops->CopyToHost(staged.data() + t.offset, model->grads() + t.offset,
                        sizeof(float) * static_cast<size_t>(t.numel));
      }
      hook_status = buckets->MarkReady(i);
      if (!hook_status.ok()) return;
    }
  };

  const int64_t end = options.max_steps > 0 ? std::min(options.max_steps, schedule.total_steps())
                                            : schedule.total_steps();
  const SchedulePhase& first_phase = schedule.PhaseAt(result.first_step);
  std::unique_ptr<MetricsLogger> metrics;
  if (lead) {
    MetricsOptions mo;
    mo.run_dir = options.run_dir;
    mo.total_steps = end;
    mo.flops_per_token = TrainingFlopsPerToken(config.model(), first_phase.seq_length,
                                               first_phase.max_predictions_per_seq);
    mo.peak_flops = options.peak_flops;
#if defined(HEADROOM_HAVE_CUDA)
    // On the GPU, MFU is shown over a bf16 GEMM measured now (as headroom bench does), for all
    // ranks together, unless the caller gave the peak.
    if (mo.peak_flops <= 0) {
      if (auto* cuda_ops = dynamic_cast<CudaOps*>(ops.get())) {
        mo.peak_flops = cuda_ops->MeasureBf16GemmFlops() * ranks;
      }
    }
#endif
    mo.console = console;
    HR_ASSIGN_OR_RETURN(metrics, MetricsLogger::Open(mo));
  }

  // Evaluation data: in order, from the start each time; the batches of one rank (whose size
  // the R = 1 run would use, when the ranks divide it) are split over the ranks.
  std::unique_ptr<BatchSource> eval_source;
  std::string eval_start;
  int eval_global = tc.micro_batch_size() > 0
                        ? std::min(tc.micro_batch_size(), first_phase.global_batch_size)
                        : first_phase.global_batch_size;
  if (eval_global % ranks != 0) eval_global = micro_of(first_phase) * ranks;
  if (!eval_files.empty() && tc.eval_every() > 0) {
    HR_ASSIGN_OR_RETURN(eval_source,
                        OpenBatchSource(config.model(), eval_files, first_phase.seq_length,
                                        first_phase.max_predictions_per_seq, eval_global, tc.seed(),
                                        /*shuffle=*/false, rank, ranks));
    eval_start = eval_source->Position();
  }

  // Attention rank diagnostics (train.attention_rank_every, analysis/attention_rank.h): rank 0
  // alone, on a probe batch read once (the first sequences of the validation data, else of the
  // training data, in file order), after an optimizer step, never inside a forward/backward.
  Batch probe;
  const bool rank_diagnostics = lead && tc.attention_rank_every() > 0;
  if (rank_diagnostics) {
    const int rows = std::clamp(tc.attention_rank_sequences(), 1, micro_of(first_phase));
    HR_ASSIGN_OR_RETURN(
        std::unique_ptr<BatchSource> probe_source,
        OpenBatchSource(config.model(), eval_files.empty() ? train_files : eval_files,
                        first_phase.seq_length, first_phase.max_predictions_per_seq, rows,
                        tc.seed(), /*shuffle=*/false));
    HR_ASSIGN_OR_RETURN(FeatureBatch f, probe_source->Next());
    probe = Slice(f, bert, 0, rows, first_phase.seq_length, first_phase.max_predictions_per_seq);
  }
  auto log_attention_rank = [&](int64_t at) -> absl::Status {
    HR_ASSIGN_OR_RETURN(std::vector<HeadRankStats> st,
                        AttentionRankDiagnostics(model.get(), ops.get(), probe));
    return metrics->LogEval(at, AttentionRankMetrics(st, tc.attention_rank_per_head()));
  };
  if (rank_diagnostics && result.first_step == 0) HR_RETURN_IF_ERROR(log_attention_rank(0));

  int64_t step = result.first_step;
  int phase_index = -1;
  std::unique_ptr<BatchSource> source;
  auto save = [&](double loss) -> absl::Status {
    if (!lead) return absl::OkStatus();
    std::vector<float> params(static_cast<size_t>(layout.total())), m, v;
    model->CopyParametersToHost(params.data());
    optimizer.ExportState(&m, &v);
    TrainerState st;
    st.step = step;
    st.seed = tc.seed();
    // The position is the next step's data, unless the next step starts a new phase (whose
    // loader starts afresh). It does not depend on the number of ranks.
    st.loader_state = schedule.PhaseIndex(step) == phase_index ? source->Position() : std::string();
    st.loss = loss;
    st.config_text = config_text;
    HR_ASSIGN_OR_RETURN(result.last_checkpoint,
                        SaveCheckpoint(options.run_dir, layout, params.data(), m.data(), v.data(),
                                       st, tc.keep_checkpoints()));
    return absl::OkStatus();
  };

  Clock::time_point log_start = Clock::now();
  int64_t log_tokens = 0, log_steps = 0, log_bytes = 0;
  double log_compute = 0, log_wait = 0;
  double last_loss = 0;
  bool saved_last = false;
  while (step < end) {
    const int pi = schedule.PhaseIndex(step);
    const SchedulePhase& phase = schedule.phases()[pi];
    if (pi != phase_index) {
      HR_ASSIGN_OR_RETURN(
          source, OpenBatchSource(config.model(), train_files, phase.seq_length,
                                  phase.max_predictions_per_seq, phase.global_batch_size, tc.seed(),
                                  /*shuffle=*/true, rank, ranks));
      if (!loader_position.empty()) {
        HR_RETURN_IF_ERROR(source->Restore(loader_position));
        loader_position.clear();
      }
      phase_index = pi;
    }
    const int micro = micro_of(phase);
    const int k = phase.global_batch_size / ranks / micro;
    HR_ASSIGN_OR_RETURN(FeatureBatch local, source->Next());
    const Clock::time_point compute_start = Clock::now();
    model->ZeroGrads();
    double loss = 0;
    for (int j = 0; j < k; ++j) {
      Batch b = Slice(local, bert, static_cast<int64_t>(j) * micro, micro, phase.seq_length,
                      phase.max_predictions_per_seq);
      // The global micro-batch index (trainer.h): R ranks draw the masks one rank would.
      const uint64_t micro_index = static_cast<uint64_t>((step * ranks + rank) * k + j);
      const DropoutKey key{tc.seed(), micro_index, 0, 0};
      // Forward and backward are enqueued before the loss is read back: one wait per
      // micro-batch, when its work is all on the device.
      absl::Status s = model->ForwardAsync(b, /*training=*/true, key);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("step ", step + 1, ": ", s.message()));
      }
      // Reduce only the sum of all micro-batches: mark tensors in the last backward alone.
      model->Backward(1.0f, buckets && j == k - 1 ? hook : Model<float>::BackwardHook());
      HR_RETURN_IF_ERROR(hook_status);
      loss += model->ReadLossStats().loss / k;
    }
    double step_wait = 0;
    int64_t step_bytes = 0;
    if (buckets) {
      ops->Synchronize();  // backward's work is done: what follows is waiting on the network
      const double compute = Seconds(compute_start, Clock::now());
      const int64_t before = buckets->stats().bytes_reduced;
      HR_RETURN_IF_ERROR(buckets->WaitAll());
      step_wait = buckets->stats().last_wait_seconds;
      step_bytes = buckets->stats().bytes_reduced - before;
      if (staging) {
        ops->CopyToDevice(model->grads(), staged.data(), sizeof(float) * staged.size());
      }
      // The step's loss over every rank's micro-batches.
      HR_RETURN_IF_ERROR(comm.AllReduce(&loss, &loss, 1, DataType::kFloat64, ReduceOp::kAverage));
      log_compute += compute;
      result.compute_seconds += compute;
    }
    log_wait += step_wait;
    log_bytes += step_bytes;
    result.comm_wait_seconds += step_wait;
    result.bytes_reduced += step_bytes;
    if (!std::isfinite(loss) && !tc.skip_nonfinite_steps()) {
      return absl::InternalError(absl::StrCat(
          "step ", step + 1, ": the loss is ", loss,
          "; training stopped (no checkpoint of this "
          "step was written; lower train.schedule.learning_rate or resume from the last one)"));
    }
    const double lr = schedule.LearningRate(step);
    OptimizerStats st;  // not applied unless the loss is finite
    if (std::isfinite(loss)) st = optimizer.Step(model->params(), model->grads(), lr, 1.0 / k);
    if (!st.applied && !tc.skip_nonfinite_steps()) {
      return absl::InternalError(absl::StrCat("step ", step + 1, ": the gradient norm is ",
                                              st.grad_norm,
                                              "; training stopped before the update"));
    }
    if (!st.applied) {  // train.skip_nonfinite_steps, on every rank alike (the loss is reduced)
      ++result.skipped_steps;
      if (console) {
        std::fprintf(console, "step %lld: the %s is %g; skipped (train.skip_nonfinite_steps)\n",
                     static_cast<long long>(step + 1),
                     std::isfinite(loss) ? "gradient norm" : "loss",
                     std::isfinite(loss) ? st.grad_norm : loss);
      }
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
      // Device memory on CUDA (peak: nothing is allocated inside a step), host RSS on the CPU.
      const int64_t device_bytes = ops->DeviceMemoryInUse();
      r.memory_bytes = device_bytes >= 0 ? device_bytes : ProcessResidentBytes();
      if (ranks > 1) {
        // Rank 0's breakdown per step: forward+backward, all-reduce wait backward did not hide,
        // gradient bytes all-reduced.
        const double n = static_cast<double>(log_steps);
        r.extra = {{"ranks", ranks},
                   {"compute_seconds", log_compute / n},
                   {"comm_wait_seconds", log_wait / n},
                   {"bytes_reduced", static_cast<double>(log_bytes) / n}};
      }
      if (metrics) HR_RETURN_IF_ERROR(metrics->LogTrain(r));
      if (console && ranks > 1) {
        std::fprintf(console,
                     "  step %lld | %d ranks | compute %.1f ms | comm wait %.1f ms | "
                     "reduced %.3g MB per step\n",
                     static_cast<long long>(step), ranks, 1e3 * log_compute / log_steps,
                     1e3 * log_wait / log_steps, log_bytes / 1e6 / log_steps);
        std::fflush(console);
      }
      log_start = Clock::now();
      log_tokens = log_steps = log_bytes = 0;
      log_compute = log_wait = 0;
    }
    if (eval_source && (step % tc.eval_every() == 0 || step == end)) {
      HR_RETURN_IF_ERROR(eval_source->Restore(eval_start));
      HR_ASSIGN_OR_RETURN(EvalResult e, RunEval(*model, *eval_source, tc.eval_batches(),
                                                eval_global, first_phase.seq_length,
                                                first_phase.max_predictions_per_seq, &comm));
      if (metrics) HR_RETURN_IF_ERROR(metrics->LogEval(step, e.Values()));
    }
    if (rank_diagnostics && (step % tc.attention_rank_every() == 0 || step == end)) {
      HR_RETURN_IF_ERROR(log_attention_rank(step));
    }
    if (tc.checkpoint_every() > 0 && step % tc.checkpoint_every() == 0) {
      HR_RETURN_IF_ERROR(save(loss));
      saved_last = true;
    }
  }
  if (!saved_last && step > result.first_step) HR_RETURN_IF_ERROR(save(last_loss));
  if (metrics) HR_RETURN_IF_ERROR(metrics->Flush());
  result.last_step = step;
  return result;
}

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

std::vector<std::vector<int>> BackwardHookTensors(const ParameterLayout& layout, int num_layers) {
  std::vector<std::vector<int>> groups(static_cast<size_t>(num_layers) + 2);
  const std::string embeddings = layout.prefix() + "embeddings.";
  for (size_t i = 0; i < layout.tensors().size(); ++i) {
    const TensorSpec& t = layout.tensors()[i];
    // Layer -1 holds the embeddings ("bert.embeddings.*", "lm.embeddings.*") and the heads.
    int layer = t.layer;
    if (layer < 0 && !absl::StartsWith(t.name, embeddings)) layer = num_layers;
    groups[static_cast<size_t>(layer + 1)].push_back(static_cast<int>(i));
  }
  return groups;
}

absl::StatusOr<TrainResult> Train(const TrainOptions& options) {
  Communicator* comm = options.comm;
  std::unique_ptr<Communicator> owned;
  if (comm == nullptr) {
    absl::StatusOr<std::unique_ptr<Communicator>> c =
        CreateTrainCommunicator(options.config.train().comm(), options.device);
    if (!c.ok()) {
      // Every rank gets here alike (same config, same build), but a launcher's job must still
      // end on all of them.
      if (LaunchedByMpi()) AbortJob(c.status());
      return c.status();
    }
    owned = std::move(*c);
    comm = owned.get();
  }
  absl::StatusOr<TrainResult> r = TrainOnRanks(options, *comm);
  // One rank's error (a corrupt shard it alone reads, a full disk on rank 0) would leave the
  // others blocked in the next collective: end the job with this rank's message instead.
  if (!r.ok() && comm->size() > 1) comm->Abort(r.status());
  return r;
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
                      Model<float>::Create(config.model(), ops.get(), limits,
                                           ModelOptionsFromConfig(config.train())));
  model->CopyParametersToDevice(ck.params.data());
  HR_ASSIGN_OR_RETURN(
      std::unique_ptr<BatchSource> source,
      OpenBatchSource(config.model(), data, phase.seq_length, phase.max_predictions_per_seq,
                      batch_size, config.train().seed(), /*shuffle=*/false));
  return RunEval(*model, *source, batches, batch_size, phase.seq_length,
                 phase.max_predictions_per_seq);
}

}  // namespace headroom
