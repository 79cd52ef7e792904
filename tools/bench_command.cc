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
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "comm/create_communicator.h"
#include "comm/gradient_buckets.h"
#include "config/load.h"
#include "kernels/ops.h"
#if defined(HEADROOM_HAVE_CUDA)
#include "kernels/cuda/cuda_ops.h"
#endif
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "tools/command.h"
#include "trainer/trainer.h"

extern "C" {
// OpenBLAS's own entry points (cblas.h of OpenBLAS), declared here so this file needs no BLAS
// include path.
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
}

ABSL_FLAG(std::string, config, "", "config file (.textproto); may also be given as an argument");
ABSL_FLAG(std::string, device, "cpu", "backend: cpu or cuda");
ABSL_FLAG(int, batch, 0, "sequences per step (0: train.micro_batch_size, else global_batch_size)");
ABSL_FLAG(int, steps, 5, "timed steps");
ABSL_FLAG(int, warmup, 1, "untimed warm-up steps");
ABSL_FLAG(bool, optimizer, false,
          "include an AdamW update of every parameter in each step (as a full training step; "
          "the PyTorch peer's --optimizer)");
ABSL_FLAG(bool, profile, false,
          "also time every op of the timed steps (synchronising after each) and print the "
          "costliest");

namespace headroom {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

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

// An Ops<float> that forwards every op to another and adds up the wall time of each (op
// name, and shape for matrix products), synchronising after each op so the time is the op's
// own; used by --profile to show where a step goes.
class ProfilingOps final : public Ops<float> {
 public:
  explicit ProfilingOps(Ops<float>* inner) : inner_(inner) {}

  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
    double flops = 0;
  };
  std::map<std::string, Entry>& entries() { return entries_; }
  void Reset() { entries_.clear(); }

  DeviceKind device() const override { return inner_->device(); }
  void* AllocBytes(size_t bytes) override { return inner_->AllocBytes(bytes); }
  void Free(void* p) override { inner_->Free(p); }
  void CopyToDevice(void* dst, const void* src, size_t bytes) override {
    inner_->CopyToDevice(dst, src, bytes);
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) override {
    inner_->CopyToHost(dst, src, bytes);
  }
  void CopyDevice(void* dst, const void* src, size_t bytes) override {
    inner_->CopyDevice(dst, src, bytes);
  }
  void Synchronize() override { inner_->Synchronize(); }
  void Fill(float* x, int64_t n, float value) override {
    Timed("Fill", [&] { inner_->Fill(x, n, value); });
  }
  void Scale(float* x, int64_t n, float alpha) override {
    Timed("Scale", [&] { inner_->Scale(x, n, alpha); });
  }
  void Add(const float* a, const float* b, float* out, int64_t n) override {
    Timed("Add", [&] { inner_->Add(a, b, out, n); });
  }
  void Axpy(float alpha, const float* x, float* y, int64_t n) override {
    Timed("Axpy", [&] { inner_->Axpy(alpha, x, y, n); });
  }
  void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override {
    Timed(
        absl::StrCat("Gemm ", M, "x", N, "x", K, ta == Trans::kYes ? " T" : " N",
                     tb == Trans::kYes ? "T" : "N"),
        [&] { inner_->Gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); },
        2.0 * M * N * K);
  }
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A,
                          int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch) override {
    Timed(
        absl::StrCat("GemmStridedBatched ", batch, "x", M, "x", N, "x", K,
                     ta == Trans::kYes ? " T" : " N", tb == Trans::kYes ? "T" : "N"),
        [&] {
          inner_->GemmStridedBatched(ta, tb, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                                     beta, C, ldc, stride_c, batch);
        },
        2.0 * batch * M * N * K);
  }
  void Linear(const float* x, const float* w, const float* bias, int rows, int out, int in,
              float* y) override {
    Timed(
        absl::StrCat("Linear ", rows, "x", out, "x", in),
        [&] { inner_->Linear(x, w, bias, rows, out, in, y); }, 2.0 * rows * out * in);
  }
  void LinearBackwardWeights(const float* dy, const float* x, int rows, int out, int in, float* dw,
                             float* dbias) override {
    Timed(
        absl::StrCat("LinearBackwardWeights ", out, "x", in, "x", rows),
        [&] { inner_->LinearBackwardWeights(dy, x, rows, out, in, dw, dbias); },
        2.0 * rows * out * in);
  }
  void AddBias(float* x, const float* bias, int64_t rows, int cols) override {
    Timed("AddBias", [&] { inner_->AddBias(x, bias, rows, cols); });
  }
  void BiasBackward(const float* dy, int64_t rows, int cols, float* dbias) override {
    Timed("BiasBackward", [&] { inner_->BiasBackward(dy, rows, cols, dbias); });
  }
  void PermuteHeads(const float* x, float* y, int B, int S, int H, int D, bool inverse) override {
    Timed("PermuteHeads", [&] { inner_->PermuteHeads(x, y, B, S, H, D, inverse); });
  }
  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int cols, float eps, float* y, float* mean, float* rstd) override {
    Timed("LayerNormForward",
          [&] { inner_->LayerNormForward(x, gamma, beta, rows, cols, eps, y, mean, rstd); });
  }
  void LayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                         float* dbeta) override {
    Timed("LayerNormBackward", [&] {
      inner_->LayerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
    });
  }
  void LayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                const float* mean, const float* rstd, int64_t rows, int cols,
                                float* x) override {
    Timed("LayerNormInputFromOutput",
          [&] { inner_->LayerNormInputFromOutput(y, gamma, beta, mean, rstd, rows, cols, x); });
  }
  void ResidualLayerNormForward(const float* x, const float* sub, float rate, const DropoutKey& key,
                                const float* gamma, const float* beta, int64_t rows, int cols,
                                float eps, float* sum, float* y, float* mean,
                                float* rstd) override {
    Timed("ResidualLayerNormForward", [&] {
      inner_->ResidualLayerNormForward(x, sub, rate, key, gamma, beta, rows, cols, eps, sum, y,
                                       mean, rstd);
    });
  }
  void ResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                 const float* mean, const float* rstd, int64_t rows, int cols,
                                 float rate, const DropoutKey& key, float* dsum, float* dsub,
                                 float* dgamma, float* dbeta) override {
    Timed("ResidualLayerNormBackward", [&] {
      inner_->ResidualLayerNormBackward(dy, sum, gamma, mean, rstd, rows, cols, rate, key, dsum,
                                        dsub, dgamma, dbeta);
    });
  }
  void GeluForward(const float* x, float* y, int64_t n) override {
    Timed("GeluForward", [&] { inner_->GeluForward(x, y, n); });
  }
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override {
    Timed("GeluBackward", [&] { inner_->GeluBackward(x, dy, dx, n); });
  }
  void TanhForward(const float* x, float* y, int64_t n) override {
    Timed("TanhForward", [&] { inner_->TanhForward(x, y, n); });
  }
  void TanhBackward(const float* y, const float* dy, float* dx, int64_t n) override {
    Timed("TanhBackward", [&] { inner_->TanhBackward(y, dy, dx, n); });
  }
  void SoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk, float scale,
                      const int32_t* key_valid, bool causal) override {
    Timed("SoftmaxForward",
          [&] { inner_->SoftmaxForward(scores, probs, B, H, Sq, Sk, scale, key_valid, causal); });
  }
  void SoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                       int Sk, float scale) override {
    Timed("SoftmaxBackward",
          [&] { inner_->SoftmaxBackward(probs, dprobs, dscores, rows, Sk, scale); });
  }
  void AttentionForward(const float* q, const float* k, const float* v, int B, int S, int H, int D,
                        float scale, const int32_t* key_valid, bool causal, float dropout_rate,
                        const DropoutKey& key, float* out, float* lse) override {
    Timed(
        absl::StrCat("AttentionForward ", B * H, "x", S, "x", D),
        [&] {
          inner_->AttentionForward(q, k, v, B, S, H, D, scale, key_valid, causal, dropout_rate, key,
                                   out, lse);
        },
        4.0 * B * H * S * S * D);
  }
  void AttentionBackward(const float* q, const float* k, const float* v, const float* out,
                         const float* dout, const float* lse, int B, int S, int H, int D,
                         float scale, const int32_t* key_valid, bool causal, float dropout_rate,
                         const DropoutKey& key, float* dq, float* dk, float* dv,
                         float* delta) override {
    // The model's count: 8 S^2 D per head (dP, dV, dQ, dK), recomputation not counted.
    Timed(
        absl::StrCat("AttentionBackward ", B * H, "x", S, "x", D),
        [&] {
          inner_->AttentionBackward(q, k, v, out, dout, lse, B, S, H, D, scale, key_valid, causal,
                                    dropout_rate, key, dq, dk, dv, delta);
        },
        8.0 * B * H * S * S * D);
  }
  bool PrefersFusedAttention(int head_size) const override {
    return inner_->PrefersFusedAttention(head_size);
  }
  int64_t DeviceMemoryInUse() override { return inner_->DeviceMemoryInUse(); }
  int64_t PeakAllocatedBytes() const override { return inner_->PeakAllocatedBytes(); }
  void Dropout(const float* x, float* y, int64_t n, float rate, const DropoutKey& key) override {
    Timed("Dropout", [&] { inner_->Dropout(x, y, n, rate, key); });
  }
  void EmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                        bool accumulate) override {
    Timed("EmbeddingForward", [&] { inner_->EmbeddingForward(ids, table, n, d, out, accumulate); });
  }
  void EmbeddingBackward(const int32_t* ids, const float* dout, int64_t n, int d,
                         float* dtable) override {
    Timed("EmbeddingBackward", [&] { inner_->EmbeddingBackward(ids, dout, n, d, dtable); });
  }
  void GatherRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) override {
    Timed("GatherRows", [&] { inner_->GatherRows(src, idx, m, d, dst); });
  }
  void ScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) override {
    Timed("ScatterAddRows", [&] { inner_->ScatterAddRows(src, idx, m, d, dst); });
  }
  void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                           int64_t rows, int V, float* losses, float* dlogits,
                           float grad_scale) override {
    Timed("SoftmaxCrossEntropy", [&] {
      inner_->SoftmaxCrossEntropy(logits, labels, weights, rows, V, losses, dlogits, grad_scale);
    });
  }
  void Dot(const float* a, const float* b, int64_t n, float* out) override {
    Timed("Dot", [&] { inner_->Dot(a, b, n, out); });
  }
  void AdamW(float* w, const float* g, float* m, float* v, int64_t n,
             const OptimizerStep& s) override {
    Timed("AdamW", [&] { inner_->AdamW(w, g, m, v, n, s); });
  }
  void Lamb(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
            float* scratch) override {
    Timed("Lamb", [&] { inner_->Lamb(w, g, m, v, n, s, scratch); });
  }

 private:
  // Runs op() on the inner backend, waits for it, and adds its time (and FLOPs) to `key`.
  template <typename Op>
  void Timed(const std::string& key, Op&& op, double flops = 0) {
    const Clock::time_point t0 = Clock::now();
    op();
    inner_->Synchronize();
    Entry& e = entries_[key];
    e.seconds += Seconds(t0, Clock::now());
    e.calls += 1;
    e.flops += flops;
  }

  Ops<float>* inner_;
  std::map<std::string, Entry> entries_;
};

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

}  // namespace

int RunBench(const CommandArgs& args) {
  std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty() && !args.positional.empty()) path = args.positional[0];
  if (path.empty()) {
    return Fail("bench",
                "no config given; e.g. headroom bench --config "
                "configs/mini/bert_mini_std.textproto --device cpu");
  }
  absl::StatusOr<ExperimentConfig> config = LoadConfig(path, args.overrides);
  if (!config.ok()) return Fail("bench", std::string(config.status().message()));
  const ModelConfig& m = config->model();

  const std::string device = absl::GetFlag(FLAGS_device);
  DeviceKind kind;
  if (device == "cpu") {
    kind = DeviceKind::kCpu;
  } else if (device == "cuda") {
    kind = DeviceKind::kCuda;
  } else {
    return Fail("bench", absl::StrCat("--device=", device, ": expected cpu or cuda"));
  }
  absl::StatusOr<std::unique_ptr<Ops<float>>> ops = MakeOps(kind, {config->train().precision()});
  if (!ops.ok()) {
    return Fail("bench", absl::StrCat("--device=", device, ": ", ops.status().message()));
  }

  int batch = absl::GetFlag(FLAGS_batch);
  if (batch <= 0) batch = config->train().micro_batch_size();
  if (batch <= 0) batch = config->train().global_batch_size();
  const int steps = absl::GetFlag(FLAGS_steps), warmup = absl::GetFlag(FLAGS_warmup);
  if (batch <= 0 || steps <= 0 || warmup < 0) {
    return Fail("bench", "--batch and --steps must be > 0 and --warmup >= 0");
  }
  const int seq = config->data().seq_length() > 0 ? config->data().seq_length() : m.max_positions();
  int masked = 0;
  if (m.objective() == ModelConfig::BERT) {
    masked = config->data().max_predictions_per_seq();
    if (masked == 0) masked = static_cast<int>(std::lround(seq * config->data().masked_lm_prob()));
  }

  // Data parallel under a launcher: every rank benchmarks; rank 0 alone prints.
  absl::StatusOr<CommBackend> backend = ParseCommBackend(config->train().comm());
  if (!backend.ok()) return Fail("bench", std::string(backend.status().message()));
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateCommunicator({*backend});
  if (!comm.ok()) return Fail("bench", std::string(comm.status().message()));
  const int rank = (*comm)->rank(), ranks = (*comm)->size();
  if (ranks > 1 && (*comm)->device_buffers() != (kind == DeviceKind::kCuda)) {
    return Fail("bench", absl::StrCat("train.comm=", (*comm)->backend_name(),
                                      " with --device=", device, ": use mpi on cpu, nccl on cuda"));
  }
  if (rank != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;

  bool avx2 = false, avx512 = false;
  const std::string machine = MachineName(&avx2, &avx512);
  const std::string core = kind == DeviceKind::kCpu ? openblas_get_corename() : "n/a";
  std::printf("machine=%s\n", machine.c_str());
  if (kind == DeviceKind::kCpu) {
    std::printf("blas_core=%s blas_threads=%d\n", core.c_str(), openblas_get_num_threads());
    if (AncientCore(core)) {
      const char* fix = avx512 ? "SkylakeX" : (avx2 ? "Haswell" : "Sandybridge");
      std::fprintf(stderr,
                   "headroom bench: WARNING: OpenBLAS is running its '%s' kernels, far below "
                   "what this CPU can do (%s), so the figures below are several times too "
                   "slow. Rerun with OPENBLAS_CORETYPE=%s (e.g. `OPENBLAS_CORETYPE=%s "
                   "headroom bench ...`).\n",
                   core.c_str(), avx512 ? "AVX-512" : (avx2 ? "AVX2" : "AVX"), fix, fix);
      std::printf("blas_warning=old_core_%s_set_OPENBLAS_CORETYPE=%s\n", core.c_str(), fix);
    }
  }

  const bool profile = absl::GetFlag(FLAGS_profile);
  ProfilingOps profiler(ops->get());
  Ops<float>* model_ops = profile ? static_cast<Ops<float>*>(&profiler) : ops->get();
  absl::StatusOr<std::unique_ptr<Model<float>>> model = Model<float>::Create(
      m, model_ops, {batch, seq, masked}, ModelOptionsFromConfig(config->train()));
  if (!model.ok()) return Fail("bench", std::string(model.status().message()));
  (*model)->InitParameters(config->train().seed());
  const double flops_per_token = TrainingFlopsPerToken(m, seq, masked);
  std::printf(
      "config=%s objective=%s layers=%d d=%d heads=%d head_size=%d ffn=%d vocab=%d seq=%d "
      "batch=%d masked=%d params=%lld activation_mb=%.0f train_gflop_per_token=%.4f "
      "attention=%s recompute_gelu=%d optimizer=%d\n",
      config->name().c_str(), ModelConfig::Objective_Name(m.objective()).c_str(), m.num_layers(),
      m.d_model(), m.num_heads(), HeadSize(m), m.ffn_size(), m.vocab_size(), seq, batch, masked,
      static_cast<long long>((*model)->layout().total()),
      (*model)->ActivationElements() * 4.0 / (1 << 20), flops_per_token / 1e9,
      (*model)->fused_attention() ? "fused" : "materialized",
      config->train().recompute_gelu() ? 1 : 0, absl::GetFlag(FLAGS_optimizer) ? 1 : 0);
  std::fflush(stdout);

  // Adam moments for --optimizer (fp32, as the trainer's).
  const int64_t n_params = (*model)->layout().total();
  float* adam_m = nullptr;
  float* adam_v = nullptr;
  if (absl::GetFlag(FLAGS_optimizer)) {
    adam_m = (*ops)->Alloc(n_params);
    adam_v = (*ops)->Alloc(n_params);
  }

  // A few distinct random batches, cycled, so the timing does not depend on one draw.
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 3; ++i) {
    batches.push_back(RandomBatch(m, batch, seq, masked, 100 + i + 1000 * rank));
  }
  // Data parallel: the gradient buckets and Backward's hook marking them, as in the trainer.
  std::unique_ptr<GradientBuckets> buckets;
  std::vector<std::vector<int>> hook_tensors;
  absl::Status hook_status;
  Model<float>::BackwardHook hook;
  if (ranks > 1) {
    const ParameterLayout& layout = (*model)->layout();
    std::vector<GradientTensor> tensors;
    for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.numel, t.layer});
    hook_tensors = BackwardHookTensors(layout, m.num_layers());
    GradientBucketsOptions bo;
    bo.bucket_bytes =
        static_cast<int64_t>(std::min(config->train().comm_bucket_mb() * 1048576.0, 1e18));
    absl::StatusOr<std::unique_ptr<GradientBuckets>> b =
        GradientBuckets::Create(comm->get(), (*model)->grads(), tensors, bo);
    if (!b.ok()) return Fail("bench", std::string(b.status().message()));
    buckets = std::move(*b);
    hook = [&](int layer) {
      for (int t : hook_tensors[static_cast<size_t>(layer + 1)]) {
        if (hook_status.ok()) hook_status = buckets->MarkReady(t);
      }
    };
  }
  std::vector<double> compute_times, wait_times;  // per timed step (data parallel)
  std::vector<double> enqueue_times;              // per timed step: host time to enqueue
  int64_t reduced_bytes = 0;
  double first_loss = 0;
  std::vector<double> times;
  for (int i = 0; i < warmup + steps; ++i) {
    const Clock::time_point t0 = Clock::now();
    (*model)->ZeroGrads();
    absl::Status s =
        (*model)->ForwardAsync(batches[i % batches.size()], /*training=*/true,
                               {config->train().seed(), static_cast<uint64_t>(i), 0, 0});
    if (!s.ok()) return Fail("bench", std::string(s.message()));
    (*model)->Backward(1.0f, hook);
    // The host's share: enqueueing forward and backward, which returns long before the GPU is
    // done when nothing inside the step waits (then a CUDA graph of the step would save little).
    if (i >= warmup) enqueue_times.push_back(Seconds(t0, Clock::now()));
    const LossStats stats = (*model)->ReadLossStats();  // waits for the step's work
    (*ops)->Synchronize();
    if (buckets) {
      const Clock::time_point t1 = Clock::now();
      const int64_t before = buckets->stats().bytes_reduced;
      absl::Status w = hook_status.ok() ? buckets->WaitAll() : hook_status;
      if (!w.ok()) (*comm)->Abort(w);
      if (i >= warmup) {
        compute_times.push_back(Seconds(t0, t1));
        wait_times.push_back(buckets->stats().last_wait_seconds);
        reduced_bytes += buckets->stats().bytes_reduced - before;
      }
    }
    if (adam_m != nullptr) {  // after the gradient all-reduce, as the trainer
      OptimizerStep step;
      step.lr = 1e-5f;
      step.weight_decay = 0.01f;
      step.step = i + 1;
      (*ops)->AdamW((*model)->params(), (*model)->grads(), adam_m, adam_v, n_params, step);
      (*ops)->Synchronize();
    }
    if (i == 0) first_loss = stats.loss;
    if (i + 1 == warmup) profiler.Reset();
    if (i >= warmup) times.push_back(Seconds(t0, Clock::now()));
  }
  double mean = 0;
  for (double t : times) mean += t;
  mean /= times.size();
  const double best = *std::min_element(times.begin(), times.end());
  const double tokens = static_cast<double>(batch) * seq;
  const double gflops = flops_per_token * tokens / mean / 1e9;
  // Memory of the steps, before the GEMM measurements below allocate their own matrices.
  const int64_t peak_allocated = (*ops)->PeakAllocatedBytes();
  const int64_t device_in_use = (*ops)->DeviceMemoryInUse();

  // The machine's GEMM rates, measured after the steps: the backend's own fp32-in/fp32-out
  // product in its configured precision, and on CUDA the bf16 tensor-core peak, the
  // denominator of mfu (on the CPU, mfu is over sgemm).
  const int gemm_n = kind == DeviceKind::kCpu ? 2048 : 8192;
  const double sgemm = MeasureGemm(**ops, gemm_n);
  double peak_gflops = sgemm;
#if defined(HEADROOM_HAVE_CUDA)
  if (auto* cuda_ops = dynamic_cast<CudaOps*>(ops->get())) {
    const double bf16 = cuda_ops->MeasureBf16GemmFlops() / 1e9;
    if (bf16 > 0) {
      peak_gflops = bf16;
      std::printf("bf16_gemm_tflops=%.1f\n", bf16 / 1e3);
    } else {
      std::printf("bf16_gemm_tflops=unmeasured (no room for the matrices): mfu is over sgemm\n");
    }
  }
#endif

  // Uniform predictions: log V for the MLM/LM loss, plus log 2 for NSP.
  const double uniform = std::log(static_cast<double>(m.vocab_size())) +
                         (m.objective() == ModelConfig::BERT ? std::log(2.0) : 0.0);
  const bool loss_ok = std::isfinite(first_loss) && std::fabs(first_loss - uniform) < 1.0;
  std::printf("loss_first_step=%.4f uniform_loss=%.4f loss_check=%s\n", first_loss, uniform,
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
                          peak_gflops, Median(enqueue_times) * 1e3, steps)
                          .c_str());
  if (buckets) {
    // The same gradient all-reduced alone, blocking, after a barrier: the communication the
    // overlap can hide.
    const int reps = 5;
    std::vector<double> alone;
    for (int i = 0; i < reps; ++i) {
      absl::Status st = (*comm)->Barrier();
      const Clock::time_point a0 = Clock::now();
      if (st.ok()) {
        st = (*comm)->AllReduce((*model)->grads(), (*model)->grads(),
                                static_cast<size_t>((*model)->layout().total()), DataType::kFloat32,
                                ReduceOp::kAverage);
      }
      if (!st.ok()) (*comm)->Abort(st);
      alone.push_back(Seconds(a0, Clock::now()));
    }
    // A rank that finishes backward first also waits for the slowest one, which is skew, not
    // communication; the rank arriving last waits only for what the overlap did not hide. So per
    // step (and per all-reduce) the minimum over ranks, then the median over steps (a shared
    // machine has outlier steps); compute and step time are medians averaged over ranks.
    auto min_over_ranks = [&](const std::vector<double>& mine) {
      std::vector<double> all(mine.size() * ranks);
      absl::Status st =
          (*comm)->AllGather(mine.data(), all.data(), mine.size(), DataType::kFloat64);
      if (!st.ok()) (*comm)->Abort(st);
      std::vector<double> out(mine.size(), 1e30);
      for (int r = 0; r < ranks; ++r) {
        for (size_t i = 0; i < mine.size(); ++i)
          out[i] = std::min(out[i], all[r * mine.size() + i]);
      }
      return Median(out);
    };
    const double wait_mean_local = Median(wait_times);
    double v[6] = {Median(compute_times),
                   min_over_ranks(wait_times),
                   min_over_ranks(alone),
                   Median(times),
                   static_cast<double>(reduced_bytes) / steps,
                   wait_mean_local};
    absl::Status st = (*comm)->AllReduce(v, v, 6, DataType::kFloat64, ReduceOp::kAverage);
    if (!st.ok()) (*comm)->Abort(st);
    const double hidden = std::max(0.0, v[2] - v[1]);
    std::printf(
        "%s\n",
        absl::StrFormat("data_parallel ranks=%d comm=%s buckets=%d bucket_mb=%g "
                        "compute_ms=%.1f comm_wait_ms=%.1f step_ms=%.1f allreduce_ms=%.1f "
                        "hidden_ms=%.1f hidden_fraction=%.2f reduced_mb_per_step=%.1f "
                        "comm_wait_rank_mean_ms=%.1f",
                        ranks, (*comm)->backend_name(), static_cast<int>(buckets->buckets().size()),
                        config->train().comm_bucket_mb(), v[0] * 1e3, v[1] * 1e3, v[3] * 1e3,
                        v[2] * 1e3, hidden * 1e3, v[2] > 0 ? hidden / v[2] : 0.0, v[4] / 1e6,
                        v[5] * 1e3)
            .c_str());
  }
  if (profile) {
    std::vector<std::pair<std::string, ProfilingOps::Entry>> rows(profiler.entries().begin(),
                                                                  profiler.entries().end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (const auto& r : rows) total += r.second.seconds;
    std::printf("profile: %.1f ms of ops per step (%.1f ms step)\n", total * 1e3 / steps,
                mean * 1e3);
    for (const auto& [name, e] : rows) {
      if (e.seconds < 0.002 * total) break;
      std::printf("  %-44s %8.2f ms/step %5.1f%% %6lld calls", name.c_str(),
                  e.seconds * 1e3 / steps, 100 * e.seconds / total,
                  static_cast<long long>(e.calls / steps));
      if (e.flops > 0) std::printf(" %7.1f GFLOP/s", e.flops / e.seconds / 1e9);
      std::printf("\n");
    }
  }
  if (!loss_ok) return Fail("bench", "the first step's loss is not near the uniform loss");
  return 0;
}

}  // namespace headroom
