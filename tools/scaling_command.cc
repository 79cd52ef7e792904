// `headroom scaling CONFIG...`: the data-parallel scaling model of docs/scaling.md. For each
// config and R = 8, 16, ..., 1024 GPUs (weak scaling: a fixed per-GPU batch) it predicts the
// step time and efficiency with and without overlapping the gradient all-reduce with backward.
//
// Compute: a measured single-GPU step time (--step_ms), or model FLOPs per token (the same
// count as `headroom params`) x tokens per GPU / (peak x MFU). Backward is 2/3 of it.
// Communication: the gradient buckets GradientBuckets would build (reverse layout order,
// --bucket_mb), each a ring all-reduce costing 2(R-1)/R x bytes / bandwidth + latency, with the
// NVLink bandwidth inside a node and the nodes' summed InfiniBand bandwidth across nodes, and the
// latency 2(R-1) x alpha (ring) or 2 log2(R) x alpha (tree). With overlap, bucket k may start
// once backward has produced it (backward time taken proportional to the parameters it has
// passed) and once bucket k-1 has finished; without, all buckets run after backward.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "comm/gradient_buckets.h"
#include "config/load.h"
#include "model/parameter_layout.h"
#include "tools/command.h"
#include "tools/common_flags.h"

ABSL_FLAG(double, nvlink_gbs, 370.0,
          "all-reduce bus bandwidth inside a node, GB/s (H100 SXM NVLink 4: 450 GB/s per "
          "direction, ~370 achieved by NCCL)");
ABSL_FLAG(double, ib_gbs, 340.0,
          "all-reduce bus bandwidth across nodes, GB/s: the node's InfiniBand bandwidth summed "
          "over its NICs, since NCCL runs one ring per NIC (8 x 400 Gb/s NDR at 85%: 340)");
ABSL_FLAG(int, gpus_per_node, 8, "GPUs per node; rings beyond one node use --ib_gbs");
ABSL_FLAG(double, latency_us, 3.0, "per-step latency alpha of the all-reduce algorithm, us");
ABSL_FLAG(std::string, latency_model, "ring",
          "ring: 2(R-1) alpha per bucket; tree: 2 log2(R) alpha per bucket");
ABSL_FLAG(double, bucket_mb, 25.0, "gradient bucket size, MiB (GradientBuckets' default)");
ABSL_FLAG(int, grad_bytes, 4, "bytes per reduced gradient element (4: fp32, 2: bf16)");
ABSL_FLAG(double, step_ms, 0.0,
          "measured single-GPU step time, ms (0: from FLOPs, --peak_tflops and --mfu)");
ABSL_FLAG(double, mfu, 0.35, "model FLOP utilisation of the single-GPU step");
ABSL_FLAG(int, per_gpu_batch, 128, "sequences per GPU per step (weak scaling: constant)");
// --format and --peak_tflops are shared with other commands (tools/common_flags.h).

namespace headroom {
namespace {

struct Prediction {
  double bandwidth_gbs, comm_ms, step_no_overlap_ms, step_overlap_ms, exposed_ms;
};

Prediction Predict(const std::vector<GradientBucket>& buckets, int64_t total, double compute_ms,
                   int ranks) {
  // Beyond one node the ring's slowest links are the node's NICs (never faster than NVLink).
  const double nvlink = absl::GetFlag(FLAGS_nvlink_gbs), ib = absl::GetFlag(FLAGS_ib_gbs);
  const double bw =
      (ranks <= absl::GetFlag(FLAGS_gpus_per_node) ? nvlink : std::min(nvlink, ib)) * 1e9;
  const double alpha = absl::GetFlag(FLAGS_latency_us) * 1e-6;
  const double steps = absl::GetFlag(FLAGS_latency_model) == "tree"
                           ? 2.0 * std::ceil(std::log2(std::max(ranks, 2)))
                           : 2.0 * (ranks - 1);
  const double elem = absl::GetFlag(FLAGS_grad_bytes);
  const double backward_s = compute_ms * 1e-3 * 2.0 / 3.0;
  const double forward_s = compute_ms * 1e-3 - backward_s;
  double total_comm = 0, end = 0;
  for (const GradientBucket& b : buckets) {
    const double bytes = (b.end - b.begin) * elem;
    const double c = 2.0 * (ranks - 1) / ranks * bytes / bw + steps * alpha;
    total_comm += c;
    const double ready = backward_s * static_cast<double>(total - b.begin) / total;
    end = std::max(ready, end) + c;
  }
  Prediction p;
  p.bandwidth_gbs = bw / 1e9;
  p.comm_ms = total_comm * 1e3;
  p.step_no_overlap_ms = compute_ms + p.comm_ms;
  p.step_overlap_ms = (forward_s + std::max(backward_s, end)) * 1e3;
  p.exposed_ms = p.step_overlap_ms - compute_ms;
  return p;
}

}  // namespace

int RunScaling(const CommandArgs& args) {
  const char* kCmd = "scaling";
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "table" && format != "csv") return Fail(kCmd, "--format must be table or csv");
  const std::string model = absl::GetFlag(FLAGS_latency_model);
  if (model != "ring" && model != "tree") return Fail(kCmd, "--latency_model must be ring or tree");
  if (args.positional.empty()) {
    return Fail(kCmd,
                "no config files given; e.g. headroom scaling configs/paper/bert_*.textproto");
  }
  if (absl::GetFlag(FLAGS_bucket_mb) <= 0 || absl::GetFlag(FLAGS_mfu) <= 0 ||
      absl::GetFlag(FLAGS_peak_tflops) <= 0 || absl::GetFlag(FLAGS_per_gpu_batch) <= 0 ||
      absl::GetFlag(FLAGS_nvlink_gbs) <= 0 || absl::GetFlag(FLAGS_ib_gbs) <= 0) {
    return Fail(kCmd, "bandwidths, --bucket_mb, --mfu, --peak_tflops, --per_gpu_batch must be > 0");
  }
  if (format == "csv") {
    std::printf(
        "config,params,buckets,compute_ms,ranks,bandwidth_gbs,allreduce_ms,"
        "step_no_overlap_ms,step_overlap_ms,efficiency_no_overlap,efficiency_overlap\n");
  } else {
    std::printf(
        "# ring all-reduce 2(R-1)/R x bytes / bandwidth + %s latency (alpha %.1f us) per "
        "bucket; NVLink %.0f GB/s within %d GPUs, IB %.0f GB/s per node beyond;\n# "
        "%d-byte gradients in %.0f MiB buckets; weak scaling at %d sequences per GPU\n",
        model.c_str(), absl::GetFlag(FLAGS_latency_us), absl::GetFlag(FLAGS_nvlink_gbs),
        absl::GetFlag(FLAGS_gpus_per_node), absl::GetFlag(FLAGS_ib_gbs),
        absl::GetFlag(FLAGS_grad_bytes), absl::GetFlag(FLAGS_bucket_mb),
        absl::GetFlag(FLAGS_per_gpu_batch));
  }
  for (const std::string& path : args.positional) {
    absl::StatusOr<ExperimentConfig> c = LoadConfig(path, args.overrides);
    if (!c.ok()) return Fail(kCmd, std::string(c.status().message()));
    const ModelConfig& m = c->model();
    const ParameterLayout layout = ParameterLayout::ForModel(m);
    std::vector<GradientTensor> tensors;
    for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.numel, t.layer});
    // Buckets are planned in the reduced element size's bytes.
    const int64_t bucket_elems = static_cast<int64_t>(absl::GetFlag(FLAGS_bucket_mb) * 1048576 /
                                                      absl::GetFlag(FLAGS_grad_bytes));
    absl::StatusOr<std::vector<GradientBucket>> buckets =
        GradientBuckets::Plan(tensors, bucket_elems * static_cast<int64_t>(sizeof(float)));
    if (!buckets.ok()) return Fail(kCmd, std::string(buckets.status().message()));
    int seq = c->data().seq_length() > 0 ? c->data().seq_length() : m.max_positions();
    int masked = c->data().max_predictions_per_seq();
    if (masked == 0 && m.objective() == ModelConfig::BERT) {
      masked = static_cast<int>(std::lround(seq * c->data().masked_lm_prob()));
    }
    double compute_ms = absl::GetFlag(FLAGS_step_ms);
    if (compute_ms <= 0) {
      const double flops =
          TrainingFlopsPerToken(m, seq, masked) * seq * absl::GetFlag(FLAGS_per_gpu_batch);
      compute_ms =
          flops / (absl::GetFlag(FLAGS_peak_tflops) * 1e12 * absl::GetFlag(FLAGS_mfu)) * 1e3;
    }
    if (format == "table") {
      std::printf(
          "\n%s: %.1fM parameters, %.0f MB of gradients in %zu buckets, compute %.1f ms "
          "per step (seq %d)\n%6s %8s %12s %12s %12s %9s %9s\n",
          c->name().c_str(), layout.total() / 1e6,
          layout.total() * absl::GetFlag(FLAGS_grad_bytes) / 1e6, buckets->size(), compute_ms, seq,
          "ranks", "bw GB/s", "allreduce ms", "step ms", "overlap ms", "eff", "eff ovl");
    }
    for (int ranks = 8; ranks <= 1024; ranks *= 2) {
      Prediction p = Predict(*buckets, layout.total(), compute_ms, ranks);
      const double e1 = compute_ms / p.step_no_overlap_ms, e2 = compute_ms / p.step_overlap_ms;
      if (format == "csv") {
        std::printf("%s,%ld,%zu,%.3f,%d,%.1f,%.3f,%.3f,%.3f,%.4f,%.4f\n", c->name().c_str(),
                    static_cast<long>(layout.total()), buckets->size(), compute_ms, ranks,
                    p.bandwidth_gbs, p.comm_ms, p.step_no_overlap_ms, p.step_overlap_ms, e1, e2);
      } else {
        std::printf("%6d %8.0f %12.2f %12.2f %12.2f %8.1f%% %8.1f%%\n", ranks, p.bandwidth_gbs,
                    p.comm_ms, p.step_no_overlap_ms, p.step_overlap_ms, 100 * e1, 100 * e2);
      }
    }
  }
  return 0;
}

}  // namespace headroom
