// `headroom scaling CONFIG...`: the data-parallel scaling model of docs/scaling.md
// (trainer/scaling_model.h). For each config and R = 8, 16, ..., 1024 GPUs (weak scaling: a
// fixed per-GPU batch) it predicts the step time and efficiency of stage 0 with and without
// overlapping the gradient all-reduce with backward, and of ZeRO-1 (reduce-scatter overlapped,
// 1/R of the optimizer step, all-gather after it), with the memory per GPU of both
// (trainer/memory_report.h).
//
// Compute: a measured single-GPU forward+backward time (--step_ms), or model FLOPs per token
// (the count of `headroom params`) x tokens per GPU / (peak x MFU). Backward is 2/3 of it.
// Communication: the gradient buckets GradientBuckets would build (reverse layout order,
// --bucket_mb) with the collective costs of scaling_model.h; the optimizer step from the bytes
// it moves over --hbm_gbs.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/gradient_buckets.h"
#include "config/load.h"
#include "model/parameter_layout.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/memory_report.h"
#include "trainer/scaling_model.h"

ABSL_FLAG(double, nvlink_gbs, 370.0,
          "all-reduce bus bandwidth inside a node, GB/s (H100 SXM NVLink 4: 450 GB/s per "
          "direction, ~370 achieved by NCCL)");
ABSL_FLAG(double, ib_gbs, 340.0,
          "all-reduce bus bandwidth across nodes, GB/s: the node's InfiniBand bandwidth summed "
          "over its NICs, since NCCL runs one ring per NIC (8 x 400 Gb/s NDR at 85%: 340)");
ABSL_FLAG(int, gpus_per_node, 8, "GPUs per node; rings beyond one node use --ib_gbs");
ABSL_FLAG(double, latency_us, 3.0, "per-step latency alpha of the collective algorithms, us");
ABSL_FLAG(std::string, latency_model, "ring",
          "all-reduce latency: ring (2(R-1) alpha per bucket) or tree (2 log2(R) alpha); "
          "reduce-scatter and all-gather are rings either way ((R-1) alpha)");
ABSL_FLAG(double, bucket_mb, 25.0, "gradient bucket size, MiB (GradientBuckets' default)");
ABSL_FLAG(int, grad_bytes, 4, "bytes per reduced gradient element (4: fp32, 2: bf16)");
ABSL_FLAG(int, param_bytes, 4,
          "bytes per parameter ZeRO-1 all-gathers (4: fp32; 2: a bf16 copy of the weights)");
ABSL_FLAG(double, hbm_gbs, 2600.0,
          "device memory bandwidth of the optimizer step, GB/s (H100 SXM: 3350 peak; 0 leaves "
          "the optimizer out)");
ABSL_FLAG(double, step_ms, 0.0,
          "measured single-GPU forward+backward time, ms (0: from FLOPs, --peak_tflops and --mfu)");
ABSL_FLAG(double, mfu, 0.35, "model FLOP utilisation of the single-GPU forward+backward");
ABSL_FLAG(int, per_gpu_batch, 128,
          "sequences per GPU per step (weak scaling: constant; also the micro-batch whose "
          "activations the memory columns count)");
// --format and --peak_tflops are shared with other commands (tools/common_flags.h).

namespace headroom {
namespace {

// One config's fixed inputs.
struct ConfigModel {
  ExperimentConfig config;  // train.comm_bucket_mb set to --bucket_mb
  int64_t params = 0;
  std::vector<GradientBucket> buckets;
  double compute_ms = 0;
  int seq = 0;
  MemoryPerRank memory0;  // stage 0, the same at every R
};

ScalingInputs InputsFromFlags() {
  ScalingInputs in;
  in.nvlink_gbs = absl::GetFlag(FLAGS_nvlink_gbs);
  in.ib_gbs = absl::GetFlag(FLAGS_ib_gbs);
  in.gpus_per_node = absl::GetFlag(FLAGS_gpus_per_node);
  in.latency_us = absl::GetFlag(FLAGS_latency_us);
  in.tree_latency = absl::GetFlag(FLAGS_latency_model) == "tree";
  in.grad_bytes = absl::GetFlag(FLAGS_grad_bytes);
  in.param_bytes = absl::GetFlag(FLAGS_param_bytes);
  in.hbm_gbs = absl::GetFlag(FLAGS_hbm_gbs);
  return in;
}

absl::StatusOr<ConfigModel> LoadModel(const std::string& path, const CommandArgs& args) {
  ConfigModel m;
  HR_ASSIGN_OR_RETURN(m.config, LoadConfig(path, args.overrides));
  const ExperimentConfig& c = m.config;
  const ParameterLayout layout = ParameterLayout::ForModel(c.model());
  m.params = layout.total();
  std::vector<GradientTensor> tensors;
  for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.reserved, t.layer});
  // Buckets are planned in the reduced element size's bytes.
  const int64_t bucket_elems = static_cast<int64_t>(absl::GetFlag(FLAGS_bucket_mb) * 1048576 /
                                                    absl::GetFlag(FLAGS_grad_bytes));
  HR_ASSIGN_OR_RETURN(m.buckets,
                      GradientBuckets::Plan(tensors, bucket_elems * int64_t{sizeof(float)}));
  const SequenceShape shape = TrainingSequenceShape(c);
  m.seq = shape.seq;
  m.compute_ms = absl::GetFlag(FLAGS_step_ms);
  if (m.compute_ms <= 0) {
    const double flops = TrainingFlopsPerToken(c.model(), shape.seq, shape.masked) * shape.seq *
                         absl::GetFlag(FLAGS_per_gpu_batch);
    m.compute_ms =
        flops / (absl::GetFlag(FLAGS_peak_tflops) * 1e12 * absl::GetFlag(FLAGS_mfu)) * 1e3;
  }
  // The memory model's shards follow the trainer's buckets: train.comm_bucket_mb.
  m.config.mutable_train()->set_comm_bucket_mb(absl::GetFlag(FLAGS_bucket_mb));
  MemoryPrediction p;
  p.micro_batch = absl::GetFlag(FLAGS_per_gpu_batch);
  HR_ASSIGN_OR_RETURN(m.memory0, PredictMemoryPerRank(m.config, p));
  return m;
}

// Flags that must be positive, else the message for Fail.
std::string CheckFlags() {
  const std::string model = absl::GetFlag(FLAGS_latency_model);
  if (model != "ring" && model != "tree") return "--latency_model must be ring or tree";
  if (absl::GetFlag(FLAGS_bucket_mb) <= 0 || absl::GetFlag(FLAGS_mfu) <= 0 ||
      absl::GetFlag(FLAGS_peak_tflops) <= 0 || absl::GetFlag(FLAGS_per_gpu_batch) <= 0 ||
      absl::GetFlag(FLAGS_nvlink_gbs) <= 0 || absl::GetFlag(FLAGS_ib_gbs) <= 0 ||
      absl::GetFlag(FLAGS_grad_bytes) <= 0 || absl::GetFlag(FLAGS_param_bytes) <= 0 ||
      absl::GetFlag(FLAGS_hbm_gbs) < 0) {
    return "bandwidths, --bucket_mb, --mfu, --peak_tflops, --per_gpu_batch, --grad_bytes, "
           "--param_bytes must be > 0 (--hbm_gbs >= 0)";
  }
  return "";
}

void PrintHeader(const std::string& format) {
  if (format == "csv") {
    std::printf(
        "config,params,buckets,compute_ms,ranks,bandwidth_gbs,allreduce_ms,optimizer_ms,"
        "step_no_overlap_ms,step_overlap_ms,efficiency_no_overlap,efficiency_overlap,"
        "zero1_reduce_scatter_ms,zero1_all_gather_ms,zero1_step_ms,efficiency_zero1,"
        "param_bytes,grad_bytes,optimizer_bytes,activation_bytes,zero1_grad_bytes,"
        "zero1_optimizer_bytes,memory_bytes,zero1_memory_bytes\n");
    return;
  }
  std::printf(
      "# all-reduce 2(R-1)/R x bytes / bandwidth + %s latency (alpha %.1f us) per bucket; "
      "reduce-scatter and all-gather (R-1)/R x bytes / bandwidth + (R-1) alpha; NVLink %.0f "
      "GB/s within %d GPUs, IB %.0f GB/s per node beyond;\n# %d-byte gradients in %.0f MiB "
      "buckets, %d-byte parameters gathered; optimizer over %.0f GB/s of HBM; weak scaling at "
      "%d sequences per GPU\n",
      absl::GetFlag(FLAGS_latency_model).c_str(), absl::GetFlag(FLAGS_latency_us),
      absl::GetFlag(FLAGS_nvlink_gbs), absl::GetFlag(FLAGS_gpus_per_node),
      absl::GetFlag(FLAGS_ib_gbs), absl::GetFlag(FLAGS_grad_bytes), absl::GetFlag(FLAGS_bucket_mb),
      absl::GetFlag(FLAGS_param_bytes), absl::GetFlag(FLAGS_hbm_gbs),
      absl::GetFlag(FLAGS_per_gpu_batch));
}

void PrintConfigHeader(const ConfigModel& m, const StepPrediction& one) {
  const MemoryPerRank& mem = m.memory0;
  std::printf(
      "\n%s: %.1fM parameters, %.0f MB of gradients in %zu buckets, compute %.1f ms per step "
      "(seq %d), optimizer %.2f ms\n  memory per GPU, stage 0: parameters %.2f GB, gradients "
      "%.2f GB, optimizer %.2f GB, activations %.2f GB = %.2f GB (ZeRO-1: gradients + 1/R, "
      "optimizer / R)\n%6s %8s %9s %9s %9s %7s %7s %9s %9s %7s %8s %8s\n",
      m.config.name().c_str(), m.params / 1e6, m.params * absl::GetFlag(FLAGS_grad_bytes) / 1e6,
      m.buckets.size(), m.compute_ms, m.seq, one.optimizer_ms, mem.parameters / 1e9,
      mem.gradients / 1e9, mem.optimizer / 1e9, mem.activations / 1e9, mem.total() / 1e9, "ranks",
      "bw GB/s", "allred ms", "step ms", "ovl ms", "eff", "eff ovl", "z1 comm", "z1 step", "eff z1",
      "mem GB", "z1 GB");
}

// One row: R GPUs of config `m`.
absl::Status PrintRow(const ConfigModel& m, int ranks, const ScalingInputs& in, bool csv) {
  const OptimizerConfig::Type type = m.config.train().optimizer().type();
  const StepPrediction p = PredictStep(m.buckets, m.params, m.compute_ms, ranks, type, in);
  MemoryPrediction mp;
  mp.ranks = ranks;
  mp.zero_stage = 1;
  HR_ASSIGN_OR_RETURN(MemoryPerRank z1, PredictMemoryPerRank(m.config, mp));
  z1.activations = m.memory0.activations;
  const double single = m.compute_ms + p.optimizer_ms;
  const double e1 = single / p.step_no_overlap_ms, e2 = single / p.step_overlap_ms,
               e3 = single / p.step_zero1_ms;
  if (csv) {
    std::printf(
        "%s\n",
        absl::StrFormat("%s,%d,%d,%.3f,%d,%.1f,%.3f,%.3f,%.3f,%.3f,%.4f,%.4f,%.3f,%.3f,%.3f,%.4f,"
                        "%d,%d,%d,%d,%d,%d,%d,%d",
                        m.config.name(), m.params, m.buckets.size(), m.compute_ms, ranks,
                        p.bandwidth_gbs, p.allreduce_ms, p.optimizer_ms, p.step_no_overlap_ms,
                        p.step_overlap_ms, e1, e2, p.reduce_scatter_ms, p.all_gather_ms,
                        p.step_zero1_ms, e3, m.memory0.parameters, m.memory0.gradients,
                        m.memory0.optimizer, m.memory0.activations, z1.gradients, z1.optimizer,
                        m.memory0.total(), z1.total())
            .c_str());
    return absl::OkStatus();
  }
  std::printf("%6d %8.0f %9.2f %9.2f %9.2f %6.1f%% %6.1f%% %9.2f %9.2f %6.1f%% %8.2f %8.2f\n",
              ranks, p.bandwidth_gbs, p.allreduce_ms, p.step_no_overlap_ms, p.step_overlap_ms,
              100 * e1, 100 * e2, p.reduce_scatter_ms + p.all_gather_ms, p.step_zero1_ms, 100 * e3,
              m.memory0.total() / 1e9, z1.total() / 1e9);
  return absl::OkStatus();
}

}  // namespace

int RunScaling(const CommandArgs& args) {
  const char* kCmd = "scaling";
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "table" && format != "csv") return Fail(kCmd, "--format must be table or csv");
  if (const std::string bad = CheckFlags(); !bad.empty()) return Fail(kCmd, bad);
  if (args.positional.empty()) {
    return Fail(kCmd,
                "no config files given; e.g. headroom scaling configs/paper/bert_*.textproto");
  }
  const ScalingInputs in = InputsFromFlags();
  PrintHeader(format);
  for (const std::string& path : args.positional) {
    absl::StatusOr<ConfigModel> m = LoadModel(path, args);
    if (!m.ok()) return Fail(kCmd, absl::StrCat(path, ": ", m.status().message()));
    if (format == "table") {
      PrintConfigHeader(*m, PredictStep(m->buckets, m->params, m->compute_ms, 1,
                                        m->config.train().optimizer().type(), in));
    }
    for (int ranks = 8; ranks <= 1024; ranks *= 2) {
      absl::Status s = PrintRow(*m, ranks, in, format == "csv");
      if (!s.ok()) return Fail(kCmd, absl::StrCat(path, ": ", s.message()));
    }
  }
  return 0;
}

}  // namespace headroom
