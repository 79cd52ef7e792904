// attention_bench: one attention layer's training step (FixedHeadAttention Forward + Backward,
// with attention dropout) on the CPU backend, in each of the materialised path's head layouts
// (model/attention.h: sequence-major, the CPU's, and qkv-major, the GPU's, which is also what the
// CPU ran before), alternated in one process so that both see the same machine.
//
// Prints per layout the best and the median over --reps of the wall time and of the process CPU
// time (getrusage, all threads) per step. On a shared machine the CPU time is the steadier
// figure, and --threads=1 makes it nearly independent of what else runs (no waiting on a
// descheduled pool thread); the wall time of a near-idle machine is what `headroom bench` sees.
// The shapes default to configs/mini/bert_mini_fixed (d 256, 8 heads of 128, 32 x 128 tokens).
//
// Usage: build/bench/attention_bench [--d=256] [--heads=8] [--head_size=128] [--batch=32]
//          [--seq=128] [--dropout=0.1] [--causal] [--threads=0 (all cores)] [--reps=10]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/attention.h"

ABSL_FLAG(int, d, 256, "model width d");
ABSL_FLAG(int, heads, 8, "attention heads h");
ABSL_FLAG(int, head_size, 128, "head size d_p");
ABSL_FLAG(int, batch, 32, "sequences B");
ABSL_FLAG(int, seq, 128, "tokens per sequence S");
ABSL_FLAG(double, dropout, 0.1, "attention dropout rate");
ABSL_FLAG(bool, causal, false, "causal mask (the LM's)");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all cores)");
ABSL_FLAG(int, reps, 10, "timed steps per layout (after one untimed)");

namespace headroom {
namespace {

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// A buffer of n elements drawn from N(0, scale^2).
float* Random(CpuOps<float>* ops, int64_t n, float scale, std::mt19937_64* rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = normal(*rng);
  float* p = ops->Alloc(n);
  ops->CopyToDevice(p, v.data(), sizeof(float) * static_cast<size_t>(n));
  return p;
}

struct Timings {
  std::vector<double> wall_ms, cpu_ms;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run() {
  const int d = absl::GetFlag(FLAGS_d), h = absl::GetFlag(FLAGS_heads);
  const int dp = absl::GetFlag(FLAGS_head_size), B = absl::GetFlag(FLAGS_batch);
  const int S = absl::GetFlag(FLAGS_seq), reps = absl::GetFlag(FLAGS_reps);
  const float rate = static_cast<float>(absl::GetFlag(FLAGS_dropout));
  const bool causal = absl::GetFlag(FLAGS_causal);
  if (d <= 0 || h <= 0 || dp <= 0 || B <= 0 || S <= 0 || reps <= 0 || rate < 0 || rate >= 1) {
    std::fprintf(stderr,
                 "attention_bench: --d, --heads, --head_size, --batch, --seq and --reps must be "
                 "positive and --dropout in [0, 1)\n");
    return 1;
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads > 0) openblas_set_num_threads(threads);  // OpenBLAS's own threads too
  CpuOps<float> ops(threads);
  const int64_t I = static_cast<int64_t>(h) * dp, N = static_cast<int64_t>(B) * S;
  std::mt19937_64 rng(1);
  const float w_scale = 0.02f;
  AttentionParams<float> p{Random(&ops, 3 * I * d, w_scale, &rng), Random(&ops, 3 * I, 0, &rng),
                           Random(&ops, d * I, w_scale, &rng), Random(&ops, d, 0, &rng)};
  float* grads = ops.Alloc(4 * I * d + 3 * I + d);
  AttentionGrads<float> g{grads, grads + 3 * I * d, grads + 3 * I * d + 3 * I,
                          grads + 4 * I * d + 3 * I};
  const float* x = Random(&ops, N * d, 1, &rng);
  const float* dout = Random(&ops, N * d, 1, &rng);
  float* out = ops.Alloc(N * d);
  float* dx = ops.Alloc(N * d);
  float* scratch = ops.Alloc(FixedHeadAttention<float>::ScratchElements(h, dp, B, S, false));

  const HeadLayout layouts[] = {HeadLayout::kSequenceMajor, HeadLayout::kQkvMajor};
  const char* names[] = {"sequence-major (CPU)", "qkv-major (GPU)"};
  std::vector<std::unique_ptr<FixedHeadAttention<float>>> attn;
  for (HeadLayout l : layouts) {
    attn.push_back(std::make_unique<FixedHeadAttention<float>>(
        &ops, d, h, dp, B, S, /*keep_dropped_probs=*/rate > 0, /*fused=*/false, l));
  }
  Timings t[2];
  for (int r = -1; r < reps; ++r) {
    for (int i = 0; i < 2; ++i) {
      const DropoutKey key{1, static_cast<uint64_t>(r + 1), 0, 0};
      const auto w0 = std::chrono::steady_clock::now();
      const double c0 = CpuSeconds();
      attn[i]->Forward(p, x, B, S, nullptr, causal, rate, key, out, scratch);
      ops.Fill(dx, N * d, 0.0f);
      attn[i]->Backward(p, g, x, dout, dx, scratch);
      ops.Synchronize();
      const double cpu = CpuSeconds() - c0;
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      if (r < 0) continue;  // warm-up
      t[i].wall_ms.push_back(1e3 * wall);
      t[i].cpu_ms.push_back(1e3 * cpu);
    }
  }
  std::printf("d=%d heads=%d head_size=%d batch=%d seq=%d dropout=%.2f causal=%d threads=%d\n", d,
              h, dp, B, S, rate, causal ? 1 : 0, ops.pool().num_threads());
  for (int i = 0; i < 2; ++i) {
    std::printf("%-22s wall ms best %7.2f median %7.2f   cpu ms best %7.2f median %7.2f\n",
                names[i], *std::min_element(t[i].wall_ms.begin(), t[i].wall_ms.end()),
                Median(t[i].wall_ms), *std::min_element(t[i].cpu_ms.begin(), t[i].cpu_ms.end()),
                Median(t[i].cpu_ms));
  }
  return 0;
}

}  // namespace
}  // namespace headroom

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "one attention layer's Forward + Backward per head layout on the CPU: "
      "attention_bench [--d=256] [--heads=8] [--head_size=128] [--batch=32] [--seq=128] "
      "[--dropout=0.1] [--causal] [--threads=0] [--reps=10]");
  absl::ParseCommandLine(argc, argv);
  return headroom::Run();
}
