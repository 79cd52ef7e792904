// `headroom bench --config FILE [--device cpu|cuda] [--batch N] [--steps N] [--warmup N]`:
// training-step throughput of a config's model on random tokens.
//
// Each step is ZeroGrads + Forward(training) + Backward (no optimizer), the work a training
// step spends in the model. Model FLOPs are TrainingFlopsPerToken (model/parameter_layout.h,
// the count `headroom params` prints) times tokens, so gflops= is comparable with any other
// implementation of the same model (bench/torch_peer.py). Beside it the command measures the
// machine's own GEMM rate (one large square product on the same backend), so the fraction of
// the BLAS peak the model reaches is printed from the same run, and it reports the OpenBLAS
// kernel in use: OpenBLAS sometimes detects a modern CPU as an old core ("Prescott") and runs
// several times slower; the command says so and how to fix it (OPENBLAS_CORETYPE) instead of
// printing a silently slow figure. A correctness check from the same run compares the first
// step's loss with the loss of uniform predictions, which a freshly initialised model is close
// to.
//
// Output: a few `key=value` lines (machine, blas_core, config) then one result line:
//   tokens_per_s=12345 mfu=0.412 step_ms=321.0 peak_mem_gib=12.34 gflops=123.4 ...
//       sgemm_gflops=220.0 fraction_of_sgemm=0.56 peak_gemm_gflops=...
// mfu is model FLOPs per second over the machine's measured peak GEMM rate: on CUDA a bf16
// tensor-core GEMM (bf16 operands, fp32 accumulation, n = 8192), on the CPU sgemm. --optimizer
// adds an AdamW update to every step. The config's train.attention and train.recompute_gelu
// apply (e.g. `--set train.attention=materialized` for the before/after of the fused kernels).
//
// Under mpirun (train.comm, as `headroom train`), every rank runs the steps on its own random
// batches and all-reduces the gradient in train.comm_bucket_mb buckets launched from backward's
// hook, as the trainer does; rank 0 prints one more line, averaged over the ranks:
//   data_parallel ranks=2 comm=mpi buckets=3 bucket_mb=25 compute_ms=.. comm_wait_ms=..
//   allreduce_ms=.. hidden_ms=.. hidden_fraction=.. reduced_mb_per_step=..
//   comm_wait_rank_mean_ms=..
// Medians over the timed steps (details at the code). compute is forward+backward, comm_wait the
// time blocked after backward for the buckets still in flight (not hidden), allreduce the same
// gradient all-reduced alone after the steps (blocking, one bucket): hidden = allreduce -
// comm_wait. --set train.comm_bucket_mb=1e6 gives one bucket launched after backward, the
// no-overlap baseline.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/clock.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "kernels/mixed_ops.h"
#include "kernels/ops.h"
#include "kernels/profiling_ops.h"
#if defined(HEADROOM_HAVE_CUDA)
#include "kernels/cuda/cuda_ops.h"
#endif
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/data_parallel.h"
#include "trainer/ignored_settings.h"
#include "trainer/memory_budget.h"
#include "trainer/training_backend.h"

extern "C" {
// OpenBLAS's own entry points (cblas.h of OpenBLAS), declared here so this file needs no BLAS
// include path.
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
}

// --config, --device, --batch and --steps are shared with other commands (tools/common_flags.h).
ABSL_FLAG(int, warmup, 1, "untimed warm-up steps");
ABSL_FLAG(bool, optimizer, false,
          "include an AdamW update of every parameter in each step (as a full training step; "
          "the PyTorch peer's --optimizer)");
ABSL_FLAG(bool, profile, false,
          "also time every op of the timed steps (synchronising after each) and print the "
          "costliest");

namespace headroom {
namespace {

// "AMD EPYC (2 cores)" from /proc/cpuinfo; "unknown" elsewhere.
std::string MachineName(bool* avx2, bool* avx512) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown";
  int cores = 0;
  *avx2 = *avx512 = false;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name") && model == "unknown") {
      model = line.substr(line.find(':') + 2);
    }
    if (absl::StartsWith(line, "processor")) ++cores;
    if (absl::StartsWith(line, "flags")) {
      *avx2 = *avx2 || absl::StrContains(line, " avx2");
      *avx512 = *avx512 || absl::StrContains(line, " avx512f");
    }
  }
  return absl::StrCat(model, " (", cores, " logical cores)");
}

// OpenBLAS kernels that predate AVX2/FMA: on any machine this project targets, OpenBLAS picking
// one of them means its CPU detection failed and sgemm runs several times below the hardware.
bool AncientCore(const std::string& core) {
  static const char* kOld[] = {
      "Prescott",   "Core2",       "Penryn",    "Dunnington", "Nehalem",      "Atom",      "Katmai",
      "Coppermine", "Northwood",   "Banias",    "Opteron",    "Opteron_SSE3", "Barcelona", "Bobcat",
      "Athlon",     "Sandybridge", "Bulldozer", "generic",    "Generic",      "unknown"};
  for (const char* c : kOld) {
    if (absl::EqualsIgnoreCase(core, c)) return true;
  }
  return false;
}

double Mean(const std::vector<double>& x) {
  double sum = 0;
  for (double v : x) sum += v;
  return x.empty() ? 0 : sum / x.size();
}

double Median(std::vector<double> x) {
  if (x.empty()) return 0;
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

// GFLOP/s of the best of a few n x n x n products on `ops` (2 n^3 FLOPs each).
double MeasureGemm(Ops<float>& ops, int n) {
  const int64_t nn = static_cast<int64_t>(n) * n;
  float* a = ops.Alloc(nn);
  float* b = ops.Alloc(nn);
  float* c = ops.Alloc(nn);
  ops.Fill(a, nn, 0.5f);
  ops.Fill(b, nn, 0.25f);
  ops.Gemm(Trans::kNo, Trans::kNo, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);  // warm-up
  ops.Synchronize();
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const Clock::time_point t0 = Clock::now();
    ops.Gemm(Trans::kNo, Trans::kNo, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    ops.Synchronize();
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  for (float* p : {a, b, c}) ops.Free(p);
  return 2.0 * n * nn / best / 1e9;
}

// The benchmark's settings from the flags and the config.
struct BenchSetup {
  ExperimentConfig config;
  DeviceKind kind = DeviceKind::kCpu;
  int batch = 0, steps = 0, warmup = 0, seq = 0, masked = 0;
  bool optimizer = false, profile = false;
};

absl::StatusOr<BenchSetup> ReadSetup(const CommandArgs& args) {
  BenchSetup b;
  std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty() && !args.positional.empty()) path = args.positional[0];
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "no config given; e.g. headroom bench --config configs/mini/bert_mini_std.textproto "
        "--device cpu");
  }
  HR_ASSIGN_OR_RETURN(b.config, LoadConfig(path, args.overrides));
  HR_ASSIGN_OR_RETURN(b.kind, ParseDevice(absl::GetFlag(FLAGS_device)));
  const TrainConfig& tc = b.config.train();
  const ModelConfig& m = b.config.model();
  b.seq = b.config.data().seq_length() > 0 ? b.config.data().seq_length() : m.max_positions();
  b.batch = absl::GetFlag(FLAGS_batch);
  if (b.batch < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch ", b.batch, " is negative; pass a positive batch or 0 for the config's"));
  }
  if (b.batch == 0) b.batch = tc.micro_batch_size();
  if (b.batch <= 0) b.batch = tc.global_batch_size();
  // A batch given in tokens (train.global_batch_tokens): that many sequences of b.seq.
  if (b.batch <= 0 && tc.global_batch_tokens() > 0) {
    b.batch = static_cast<int>(tc.global_batch_tokens() / b.seq);
  }
  b.steps = absl::GetFlag(FLAGS_steps);
  b.warmup = absl::GetFlag(FLAGS_warmup);
  if (b.batch <= 0 || b.steps <= 0 || b.warmup < 0) {
    return absl::InvalidArgumentError("--batch and --steps must be > 0 and --warmup >= 0");
  }
  if (m.objective() == ModelConfig::BERT) {
    b.masked = b.config.data().max_predictions_per_seq();
    if (b.masked == 0) {
      b.masked = static_cast<int>(std::lround(b.seq * b.config.data().masked_lm_prob()));
    }
  }
  b.optimizer = absl::GetFlag(FLAGS_optimizer);
  b.profile = absl::GetFlag(FLAGS_profile);
  return b;
}

// The machine line, and on the CPU the BLAS kernel with a warning when it is an old one.
void PrintMachine(DeviceKind kind) {
  bool avx2 = false, avx512 = false;
  const std::string machine = MachineName(&avx2, &avx512);
  std::printf("machine=%s\n", machine.c_str());
  if (kind != DeviceKind::kCpu) return;
  const std::string core = openblas_get_corename();
  std::printf("blas_core=%s blas_threads=%d\n", core.c_str(), openblas_get_num_threads());
  if (!AncientCore(core)) return;
  const char* fix = avx512 ? "SkylakeX" : (avx2 ? "Haswell" : "Sandybridge");
  std::fprintf(stderr,
               "headroom bench: WARNING: OpenBLAS is running its '%s' kernels, far below "
               "what this CPU can do (%s), so the figures below are several times too "
               "slow. Rerun with OPENBLAS_CORETYPE=%s (e.g. `OPENBLAS_CORETYPE=%s "
               "headroom bench ...`).\n",
               core.c_str(), avx512 ? "AVX-512" : (avx2 ? "AVX2" : "AVX"), fix, fix);
  std::printf("blas_warning=old_core_%s_set_OPENBLAS_CORETYPE=%s\n", core.c_str(), fix);
}

void PrintConfig(const BenchSetup& b, const TrainableModel<float>& model) {
  const ModelConfig& m = b.config.model();
  std::printf(
      "config=%s objective=%s layers=%d d=%d heads=%d head_size=%d ffn=%d vocab=%d seq=%d "
      "batch=%d masked=%d params=%lld activation_mb=%.0f train_gflop_per_token=%.4f "
      "attention=%s recompute_gelu=%d optimizer=%d\n",
      b.config.name().c_str(), ModelConfig::Objective_Name(m.objective()).c_str(), m.num_layers(),
      m.d_model(), m.num_heads(), HeadSize(m), m.ffn_size(), m.vocab_size(), b.seq, b.batch,
      b.masked, static_cast<long long>(model.layout().num_parameters()),
      static_cast<double>(model.ActivationBytes()) / (1 << 20),
      TrainingFlopsPerToken(m, b.seq, b.masked) / 1e9,
      model.fused_attention() ? "fused" : "materialized", b.config.train().recompute_gelu() ? 1 : 0,
      b.optimizer ? 1 : 0);
  std::fflush(stdout);
}

// Per timed step: the step, the host's enqueueing, and with several ranks forward+backward and
// the wait for the gradient buckets.
struct StepTimes {
  std::vector<double> times, enqueue, compute, wait;
  int64_t reduced_bytes = 0;
  double first_loss = 0;
};

// Runs the warm-up and timed steps: ZeroGrads, Forward, Backward (reducing the gradient over
// the ranks), and with --optimizer an AdamW update.
absl::StatusOr<StepTimes> RunSteps(const BenchSetup& b, Ops<float>& ops,
                                   TrainableModel<float>& model, DataParallel& dp,
                                   ProfilingOps& profiler) {
  const int64_t n_params = model.layout().total();
  // Adam moments for --optimizer (fp32, as the trainer's).
  float* adam_m = b.optimizer ? ops.Alloc(n_params) : nullptr;
  float* adam_v = b.optimizer ? ops.Alloc(n_params) : nullptr;
  // A few distinct random batches, cycled, so the timing does not depend on one draw.
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 3; ++i) {
    batches.push_back(
        RandomBatch(b.config.model(), b.batch, b.seq, b.masked, 100 + i + 1000 * dp.comm().rank()));
  }
  StepTimes t;
  for (int i = 0; i < b.warmup + b.steps; ++i) {
    const bool timed = i >= b.warmup;
    const Clock::time_point t0 = Clock::now();
    model.ZeroGrads();
    HR_RETURN_IF_ERROR(
        model.ForwardAsync(batches[i % batches.size()], /*training=*/true,
                           {b.config.train().seed(), static_cast<uint64_t>(i), 0, 0}));
    model.Backward(1.0f, dp.hook());
    // The host's share: enqueueing forward and backward, which returns long before the GPU is
    // done when nothing inside the step waits (then a CUDA graph of the step would save little).
    if (timed) t.enqueue.push_back(Seconds(t0, Clock::now()));
    const LossStats stats = model.ReadLossStats();  // waits for the step's work
    ops.Synchronize();
    HR_ASSIGN_OR_RETURN(DataParallelStepStats reduced, dp.Finish(t0));
    if (timed && reduced.reduced) {
      t.compute.push_back(reduced.compute_seconds);
      t.wait.push_back(reduced.wait_seconds);
      t.reduced_bytes += reduced.bytes_reduced;
    }
    if (adam_m != nullptr) {  // after the gradient all-reduce, as the trainer
      OptimizerStep step;
      step.lr = 1e-5f;
      step.weight_decay = 0.01f;
      step.step = i + 1;
      if (MirroredUpdate<float>* mirrored = model.mirrored_update()) {  // as the trainer's
        mirrored->AdamW(model.params(), model.grads(), adam_m, adam_v, n_params, step);
      } else {
        ops.AdamW(model.params(), model.grads(), adam_m, adam_v, n_params, step);
      }
      ops.Synchronize();
    }
    if (i == 0) t.first_loss = stats.loss;
    if (i + 1 == b.warmup) profiler.Reset();
    if (timed) t.times.push_back(Seconds(t0, Clock::now()));
  }
  return t;
}

// The machine's GEMM rates, measured after the steps: the backend's own fp32-in/fp32-out
// product in its configured precision (first), and the peak, the denominator of mfu: on CUDA
// the bf16 tensor-core GEMM, on the CPU sgemm (second).
std::pair<double, double> MeasureGemmRates(Ops<float>& ops, DeviceKind kind) {
  const double sgemm = MeasureGemm(ops, kind == DeviceKind::kCpu ? 2048 : 8192);
  double peak = sgemm;
#if defined(HEADROOM_HAVE_CUDA)
  if (auto* cuda_ops = dynamic_cast<CudaOps*>(&ops)) {
    const double bf16 = cuda_ops->MeasureBf16GemmFlops() / 1e9;
    if (bf16 > 0) {
      peak = bf16;
      std::printf("bf16_gemm_tflops=%.1f\n", bf16 / 1e3);
    } else {
      std::printf("bf16_gemm_tflops=unmeasured (no room for the matrices): mfu is over sgemm\n");
    }
  }
#endif
  return {sgemm, peak};
}

// The loss check and the result line; false when the first loss is not near uniform.
bool PrintResult(const BenchSetup& b, Ops<float>& ops, const StepTimes& t) {
  const double mean = Mean(t.times);
  const double best = *std::min_element(t.times.begin(), t.times.end());
  const double tokens = static_cast<double>(b.batch) * b.seq;
  const double gflops =
      TrainingFlopsPerToken(b.config.model(), b.seq, b.masked) * tokens / mean / 1e9;
  // Memory of the steps, before the GEMM measurements below allocate their own matrices.
  const int64_t peak_allocated = ops.PeakAllocatedBytes();
  const int64_t device_in_use = ops.DeviceMemoryInUse();
  const auto [sgemm, peak_gflops] = MeasureGemmRates(ops, b.kind);
  // Uniform predictions: log V for the MLM/LM loss (less the smoothed target's entropy with
  // train.label_smoothing eps: H = -(1 - eps) log(1 - eps) - eps log(eps / (V - 1)), as
  // Ops::LabelSmoothedCrossEntropy subtracts it), plus log 2 for NSP.
  const ModelConfig& m = b.config.model();
  const double V = static_cast<double>(m.vocab_size());
  const double eps = b.config.train().label_smoothing();
  const double entropy =
      eps > 0 ? -(1 - eps) * std::log(1 - eps) - eps * std::log(eps / (V - 1)) : 0.0;
  const double uniform =
      std::log(V) - entropy + (m.objective() == ModelConfig::BERT ? std::log(2.0) : 0.0);
  const bool loss_ok = std::isfinite(t.first_loss) && std::fabs(t.first_loss - uniform) < 1.0;
  std::printf("loss_first_step=%.4f uniform_loss=%.4f loss_check=%s\n", t.first_loss, uniform,
              loss_ok ? "ok" : "FAILED");
  // Memory: peak_mem_gib is the largest total of live buffers (PyTorch's max_memory_allocated
  // counts the same); device_mem_gib everything in use on the device after the steps (context
  // and library workspaces included). Both -1 on the CPU.
  auto gib = [](int64_t bytes) { return bytes < 0 ? -1.0 : bytes / 1073741824.0; };
  std::printf("%s\n", absl::StrFormat(
                          "tokens_per_s=%.0f mfu=%.3f step_ms=%.1f peak_mem_gib=%.2f "
                          "gflops=%.1f step_ms_min=%.1f device_mem_gib=%.2f sgemm_gflops=%.1f "
                          "fraction_of_sgemm=%.2f peak_gemm_gflops=%.1f enqueue_ms=%.1f steps=%d",
                          tokens / mean, gflops / peak_gflops, mean * 1e3, gib(peak_allocated),
                          gflops, best * 1e3, gib(device_in_use), sgemm, gflops / sgemm,
                          peak_gflops, Median(t.enqueue) * 1e3, b.steps)
                          .c_str());
  return loss_ok;
}

// Per element the minimum over the ranks of `mine` (the same length on every rank), then the
// median: a rank that finishes backward first also waits for the slowest one, which is skew,
// not communication; the rank arriving last waits only for what the overlap did not hide.
absl::StatusOr<double> MedianOfMinOverRanks(Communicator& comm, const std::vector<double>& mine) {
  std::vector<double> all(mine.size() * comm.size());
  HR_RETURN_IF_ERROR(comm.AllGather(mine.data(), all.data(), mine.size(), DataType::kFloat64));
  std::vector<double> out(mine.size(), 1e30);
  for (int r = 0; r < comm.size(); ++r) {
    for (size_t i = 0; i < mine.size(); ++i) out[i] = std::min(out[i], all[r * mine.size() + i]);
  }
  return Median(out);
}

// The same gradient all-reduced alone, blocking, after a barrier, a few times: the
// communication the overlap can hide.
absl::StatusOr<std::vector<double>> TimeAllReduceAlone(DataParallel& dp) {
  std::vector<double> alone;
  for (int i = 0; i < 5; ++i) {
    HR_RETURN_IF_ERROR(dp.host_comm().Barrier());
    const Clock::time_point a0 = Clock::now();
    HR_RETURN_IF_ERROR(dp.comm().AllReduce(dp.reduce_buffer(), dp.reduce_buffer(),
                                           static_cast<size_t>(dp.num_elements()),
                                           DataType::kFloat32, ReduceOp::kAverage));
    alone.push_back(Seconds(a0, Clock::now()));
  }
  return alone;
}

// The data_parallel line (see the top): per step (and per all-reduce) the minimum over ranks,
// then the median over steps (a shared machine has outlier steps); compute and step time are
// medians averaged over ranks.
absl::Status PrintDataParallel(const BenchSetup& b, DataParallel& dp, const StepTimes& t) {
  Communicator& host = dp.host_comm();
  HR_ASSIGN_OR_RETURN(std::vector<double> alone, TimeAllReduceAlone(dp));
  HR_ASSIGN_OR_RETURN(const double wait_min, MedianOfMinOverRanks(host, t.wait));
  HR_ASSIGN_OR_RETURN(const double alone_min, MedianOfMinOverRanks(host, alone));
  double v[6] = {Median(t.compute),
                 wait_min,
                 alone_min,
                 Median(t.times),
                 static_cast<double>(t.reduced_bytes) / b.steps,
                 Median(t.wait)};
  HR_RETURN_IF_ERROR(host.AllReduce(v, v, 6, DataType::kFloat64, ReduceOp::kAverage));
  const double hidden = std::max(0.0, v[2] - v[1]);
  std::printf("%s\n",
              absl::StrFormat(
                  "data_parallel ranks=%d comm=%s buckets=%d bucket_mb=%g "
                  "compute_ms=%.1f comm_wait_ms=%.1f step_ms=%.1f allreduce_ms=%.1f "
                  "hidden_ms=%.1f hidden_fraction=%.2f reduced_mb_per_step=%.1f "
                  "comm_wait_rank_mean_ms=%.1f",
                  host.size(), dp.comm().backend_name(), static_cast<int>(dp.buckets().size()),
                  b.config.train().comm_bucket_mb(), v[0] * 1e3, v[1] * 1e3, v[3] * 1e3, v[2] * 1e3,
                  hidden * 1e3, v[2] > 0 ? hidden / v[2] : 0.0, v[4] / 1e6, v[5] * 1e3)
                  .c_str());
  return absl::OkStatus();
}

// --profile: the costliest ops of the timed steps.
void PrintProfile(const ProfilingOps& profiler, int steps, double step_seconds) {
  std::vector<std::pair<std::string, ProfilingOps::Entry>> rows(profiler.entries().begin(),
                                                                profiler.entries().end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (const auto& r : rows) total += r.second.seconds;
  std::printf("profile: %.1f ms of ops per step (%.1f ms step)\n", total * 1e3 / steps,
              step_seconds * 1e3);
  for (const auto& [name, e] : rows) {
    if (e.seconds < 0.002 * total) break;
    std::printf("  %-44s %8.2f ms/step %5.1f%% %6lld calls", name.c_str(), e.seconds * 1e3 / steps,
                100 * e.seconds / total, static_cast<long long>(e.calls / steps));
    if (e.flops > 0) std::printf(" %7.1f GFLOP/s", e.flops / e.seconds / 1e9);
    std::printf("\n");
  }
}

// The benchmark on the ranks of `comm` (one without a launcher); rank 0 alone prints. The
// status of a failure; false in *loss_ok when the loss check failed.
absl::Status Bench(const BenchSetup& b, Communicator& comm, const TrainingBackend& backend,
                   bool* loss_ok) {
  Ops<float>& ops = *backend.ops();
  ProfilingOps profiler(backend.model_ops());
  Ops<float>* model_ops = b.profile ? &profiler : backend.model_ops();
  for (const std::string& line : IgnoredSettings(b.config, b.kind)) {
    std::printf("note: %s\n", line.c_str());
  }
  // Before the model allocates: a model that cannot fit stops here with both numbers.
  HR_RETURN_IF_ERROR(CheckTrainingMemory(b.config, {b.batch, b.seq, b.masked}, ops,
                                         comm.local_size(), comm.size()));
  // The model `headroom train` would train (bf16 activation storage where the backend has it);
  // --profile times every op through a wrapper of the fp32-storage op set (the same numbers on
  // the CPU, the fp32-storage step on CUDA).
  const ModelLimits limits{b.batch, b.seq, b.masked};
  const ModelOptions options = ModelOptionsFromConfig(b.config.train());
  std::unique_ptr<TrainableModel<float>> model;
  if (b.profile) {
    HR_ASSIGN_OR_RETURN(model, Model<float>::Create(b.config.model(), model_ops, limits, options));
  } else {
    HR_ASSIGN_OR_RETURN(model, backend.CreateModel(b.config.model(), limits, options));
  }
  model->InitParameters(b.config.train().seed());
  PrintConfig(b, *model);
  // Data parallel: the gradient buckets and Backward's hook marking them, as in the trainer.
  DataParallelOptions dpo;
  dpo.bucket_bytes = BucketBytesFromMb(b.config.train().comm_bucket_mb());
  HR_ASSIGN_OR_RETURN(std::unique_ptr<DataParallel> dp,
                      DataParallel::Create(&comm, &ops, model.get(), dpo));
  HR_ASSIGN_OR_RETURN(StepTimes t, RunSteps(b, ops, *model, *dp, profiler));
  *loss_ok = PrintResult(b, ops, t);
  if (dp->active()) HR_RETURN_IF_ERROR(PrintDataParallel(b, *dp, t));
  if (b.profile) PrintProfile(profiler, b.steps, Mean(t.times));
  return absl::OkStatus();
}

}  // namespace

int RunBench(const CommandArgs& args) {
  absl::StatusOr<BenchSetup> b = ReadSetup(args);
  if (!b.ok()) return Fail("bench", std::string(b.status().message()));
  absl::StatusOr<std::unique_ptr<TrainingBackend>> backend =
      TrainingBackend::Create(b->kind, b->config.train());
  if (!backend.ok()) {
    return Fail("bench", absl::StrCat("--device=", absl::GetFlag(FLAGS_device), ": ",
                                      backend.status().message()));
  }
  // Data parallel under a launcher (train.comm, chosen as `headroom train` does): every rank
  // benchmarks; rank 0 alone prints.
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateDataParallelCommunicator(b->config.train(), b->kind);
  if (!comm.ok()) return Fail("bench", std::string(comm.status().message()));
  if ((*comm)->rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
  PrintMachine(b->kind);
  bool loss_ok = false;
  const absl::Status s = Bench(*b, **comm, **backend, &loss_ok);
  if (!s.ok() && (*comm)->size() > 1) (*comm)->Abort(s);
  if (!s.ok()) return Fail("bench", std::string(s.message()));
  if (!loss_ok) return Fail("bench", "the first step's loss is not near the uniform loss");
  return 0;
}

}  // namespace headroom
