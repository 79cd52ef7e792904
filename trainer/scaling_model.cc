// The data-parallel scaling model; see scaling_model.h for the formulas.
#include "trainer/scaling_model.h"

#include <algorithm>
#include <cmath>

namespace headroom {
namespace {

// Collective costs in seconds for one message of `bytes` over `ranks`.
struct CollectiveCosts {
  double bw = 0, alpha = 0;
  int ranks = 1;
  double all_reduce_latency = 0;
  double small_latency = 0;  // an all-reduce of a few elements: NCCL's tree, 2 ceil(log2 R)
  double AllReduce(double bytes) const {
    return 2.0 * (ranks - 1) / ranks * bytes / bw + all_reduce_latency;
  }
  // Reduce-scatter and all-gather: the ring's half of an all-reduce.
  double Half(double bytes) const {
    return (ranks - 1.0) / ranks * bytes / bw + (ranks - 1) * alpha;
  }
};

CollectiveCosts Costs(int ranks, const ScalingInputs& in) {
  CollectiveCosts c;
  c.ranks = ranks;
  // Beyond one node the ring's slowest links are the node's NICs (never faster than NVLink).
  c.bw = (ranks <= in.gpus_per_node ? in.nvlink_gbs : std::min(in.nvlink_gbs, in.ib_gbs)) * 1e9;
  c.alpha = in.latency_us * 1e-6;
  const double steps =
      in.tree_latency ? 2.0 * std::ceil(std::log2(std::max(ranks, 2))) : 2.0 * (ranks - 1);
  c.all_reduce_latency = steps * c.alpha;
  c.small_latency = 2.0 * std::ceil(std::log2(std::max(ranks, 2))) * c.alpha;
  return c;
}

}  // namespace

double OptimizerBytesPerParameter(OptimizerConfig::Type type, bool sharded) {
  if (type != OptimizerConfig::LAMB) return 28;  // AdamW: w, g, m, v in; w, m, v out
  // LAMB unsharded (one fused op per tensor): the direction (w, g, m, v in; m, v, u out: 28),
  // the two norms (w, u in: 8), the update (w, u in; w out: 12): 48. Sharded: u zero-filled (4),
  // an AdamW pass into it (u, g, m, v in; u, m, v out: 28), the decay added (w, u in; u out:
  // 12), the norms (8) and the update (12): 64.
  return sharded ? 64 : 48;
}

StepPrediction PredictStep(const std::vector<GradientBucket>& buckets, int64_t total,
                           double compute_ms, int ranks, OptimizerConfig::Type optimizer,
                           const ScalingInputs& in) {
  const CollectiveCosts c = Costs(ranks, in);
  const double backward_s = compute_ms * 1e-3 * 2.0 / 3.0;
  const double forward_s = compute_ms * 1e-3 - backward_s;
  StepPrediction p;
  p.bandwidth_gbs = c.bw / 1e9;
  const double optimizer_s =
      in.hbm_gbs > 0 ? total * OptimizerBytesPerParameter(optimizer, false) / (in.hbm_gbs * 1e9)
                     : 0.0;
  const double sharded_optimizer_s =
      in.hbm_gbs > 0 ? std::ceil(static_cast<double>(total) / ranks) *
                           OptimizerBytesPerParameter(optimizer, ranks > 1) / (in.hbm_gbs * 1e9)
                     : 0.0;
  double allreduce = 0, end0 = 0, reduce_scatter = 0, all_gather = 0, end1 = 0;
  for (const GradientBucket& b : buckets) {
    const int64_t n = b.end - b.begin;
    const double ready = backward_s * static_cast<double>(total - b.begin) / total;
    const double ar = c.AllReduce(static_cast<double>(n) * in.grad_bytes);
    allreduce += ar;
    end0 = std::max(ready, end0) + ar;
    // ZeRO-1: the R equal chunks by reduce-scatter / all-gather, the tail by all-reduce.
    const int64_t chunk = n / ranks;
    const bool tail = n % ranks != 0;
    const double rs =
        c.Half(static_cast<double>(chunk * ranks) * in.grad_bytes) + (tail ? c.small_latency : 0.0);
    reduce_scatter += rs;
    end1 = std::max(ready, end1) + rs;
    all_gather += c.Half(static_cast<double>(chunk * ranks) * in.param_bytes) +
                  (tail ? c.small_latency : 0.0);
  }
  p.optimizer_ms = optimizer_s * 1e3;
  p.allreduce_ms = allreduce * 1e3;
  p.step_no_overlap_ms = compute_ms + p.allreduce_ms + p.optimizer_ms;
  p.step_overlap_ms = (forward_s + std::max(backward_s, end0) + optimizer_s) * 1e3;
  p.reduce_scatter_ms = reduce_scatter * 1e3;
  p.all_gather_ms = all_gather * 1e3;
  p.step_zero1_ms =
      (forward_s + std::max(backward_s, end1) + sharded_optimizer_s + all_gather) * 1e3;
  return p;
}

}  // namespace headroom
