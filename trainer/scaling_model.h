// The data-parallel scaling model of docs/scaling.md (`headroom scaling`): the step time of R
// GPUs from a single-GPU forward+backward time and cost models of the collectives, for stage 0
// (a bucketed all-reduce overlapped with backward) and ZeRO-1 (trainer/data_parallel.h: a
// bucketed reduce-scatter overlapped with backward, the update of 1/R of the parameters, then
// an all-gather after the step).
//
// Collectives on B bytes over R ranks with bus bandwidth bw (NVLink within --gpus_per_node
// GPUs, InfiniBand beyond) and per-step latency alpha:
//   all-reduce      2 (R-1)/R B / bw + L(R),  L = 2 alpha (ring) or 2 ceil(log2 R) alpha
//                                             (tree, NCCL's choice for small messages / large R)
//   reduce-scatter  (R-1)/R B / bw + (R-1) alpha      (ring: NCCL has no tree for these two)
//   all-gather      (R-1)/R B / bw + (R-1) alpha
// ZeRO-1 adds, per bucket whose size is not a multiple of R, two all-reduces of fewer than R
// elements for the tail (zero_shard.h): latency only, 2 ceil(log2 R) alpha each (NCCL runs
// small all-reduces as a tree whatever the large-message algorithm).
//
// Overlap: bucket k is ready when backward has passed its tensors (backward taken as
// proportional to the parameters behind it) and starts once bucket k-1 has finished.
//   stage 0 no overlap:  compute + sum of all-reduces + optimizer
//   stage 0 overlap:     forward + max(backward, end of the last all-reduce) + optimizer
//   ZeRO-1:              forward + max(backward, end of the last reduce-scatter)
//                        + optimizer / R + all-gathers (not overlapped, as the trainer)
// The optimizer step is memory-bound: bytes moved per parameter (AdamW 28: w, g, m, v read, w,
// m, v written; LAMB 48 unsharded, 64 sharded: see OptimizerBytesPerParameter) over the HBM
// bandwidth. Efficiency = single-GPU step (compute + optimizer) / R-GPU step.
//
// Example:
//   ScalingInputs in;  // H100 SXM defaults
//   StepPrediction p = PredictStep(buckets, layout.total(), /*compute_ms=*/111.4,
//                                  /*ranks=*/64, OptimizerConfig::ADAMW, in);
#ifndef HEADROOM_TRAINER_SCALING_MODEL_H_
#define HEADROOM_TRAINER_SCALING_MODEL_H_

#include <cstdint>
#include <vector>

#include "comm/gradient_buckets.h"
#include "config/config.pb.h"

namespace headroom {

struct ScalingInputs {
  double nvlink_gbs = 370;  // all-reduce bus bandwidth inside a node, GB/s
  double ib_gbs = 340;      // across nodes (the node's NICs together), GB/s
  int gpus_per_node = 8;
  double latency_us = 3;      // alpha
  bool tree_latency = false;  // all-reduce latency 2 ceil(log2 R) alpha instead of 2 alpha
  int grad_bytes = 4;         // bytes per reduced gradient element (buckets are cut in these)
  int param_bytes = 4;        // bytes per all-gathered parameter (ZeRO-1)
  double hbm_gbs = 2600;      // device memory bandwidth the optimizer step reaches; 0: no step
};

struct StepPrediction {
  double bandwidth_gbs = 0;
  double optimizer_ms = 0;  // the whole buffer's update (stage 0; ZeRO-1 does 1/R of it)
  double allreduce_ms = 0;  // stage 0: every bucket's all-reduce
  double step_no_overlap_ms = 0;
  double step_overlap_ms = 0;
  double reduce_scatter_ms = 0;  // ZeRO-1: every bucket's reduce-scatter (and tail)
  double all_gather_ms = 0;      // ZeRO-1: every bucket's all-gather (and tail)
  double step_zero1_ms = 0;
};

// Bytes the optimizer moves per parameter it updates (see the file comment).
double OptimizerBytesPerParameter(OptimizerConfig::Type type, bool sharded);

// The step on `ranks` GPUs of a model with `total` parameters in `buckets` (GradientBuckets::
// Plan, cut in `in.grad_bytes` elements) and a single-GPU forward+backward of `compute_ms`
// (backward 2/3 of it).
StepPrediction PredictStep(const std::vector<GradientBucket>& buckets, int64_t total,
                           double compute_ms, int ranks, OptimizerConfig::Type optimizer,
                           const ScalingInputs& in);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_SCALING_MODEL_H_
