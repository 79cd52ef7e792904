// Memory per rank, measured or predicted; see memory_report.h.
#include "trainer/memory_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/bf16.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "model/memory_estimate.h"
#include "model/parameter_layout.h"
#include "trainer/training_backend.h"
#include "trainer/zero_shard.h"

namespace headroom {
namespace {

std::string Bytes(int64_t b) {
  return b >= 1000000000 ? absl::StrFormat("%.2f GB", b / 1e9)
                         : absl::StrFormat("%.3g MB", b / 1e6);
}

}  // namespace

MemoryPerRank MeasureMemoryPerRank(const TrainableModel<float>& model,
                                   const Optimizer<float>& optimizer,
                                   const DataParallel& data_parallel) {
  MemoryPerRank m;
  const int64_t flat = model.layout().total() * static_cast<int64_t>(sizeof(float));
  m.parameters = flat + model.MirrorBytes();
  m.gradients = flat + data_parallel.allocated_bytes();
  m.optimizer = optimizer.allocated_bytes();
  m.activations = model.ActivationBytes();
  return m;
}

absl::StatusOr<MemoryPerRank> PredictMemoryPerRank(const ExperimentConfig& config,
                                                   const MemoryPrediction& p) {
  if (p.ranks < 1 || p.rank < 0 || p.rank >= p.ranks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ranks must be >= 1 and rank in [0, ranks) (got ", p.ranks, ", ", p.rank, ")"));
  }
  if (p.zero_stage != 0 && p.zero_stage != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("zero stage must be 0 or 1 (got ", p.zero_stage, ")"));
  }
  const ParameterLayout layout = ParameterLayout::ForModel(config.model());
  MemoryPerRank m;
  const int64_t flat = layout.total() * static_cast<int64_t>(sizeof(float));
  m.parameters = flat;
  if (UsesBf16Activations(config.train(), p.device)) {  // the bf16 weight mirror
    m.parameters += layout.total() * static_cast<int64_t>(sizeof(Bf16));
  }
  m.gradients = flat;
  std::vector<ShardRange> ranges;
  if (p.zero_stage == 1 && p.ranks > 1) {
    std::vector<GradientTensor> tensors;
    for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.reserved, t.layer});
    HR_ASSIGN_OR_RETURN(
        std::vector<GradientBucket> buckets,
        GradientBuckets::Plan(tensors, BucketBytesFromMb(config.train().comm_bucket_mb())));
    const ZeroShard shard = PlanZeroShard(buckets, p.rank, p.ranks);
    ranges = shard.ranges;
    m.gradients += shard.numel * static_cast<int64_t>(sizeof(float));
  }
  m.optimizer = Optimizer<float>::AllocatedBytes(layout, config.train().optimizer(), ranges,
                                                 /*workspace_given=*/!ranges.empty());
  if (p.micro_batch > 0) {
    const SequenceShape shape = TrainingSequenceShape(config);
    ModelLimits limits;
    limits.max_batch = p.micro_batch;
    limits.max_seq = shape.seq;
    limits.max_predictions = shape.masked;
    // "auto" attention as the backend resolves it (Ops::PrefersFusedAttention): in bf16 the
    // fused kernels (the GPU's, and the CPU's bf16 twin, which follows the GPU), in fp32 the
    // materialised products, on the CPU with the dropped probabilities kept when there is
    // attention dropout. Activations in bf16 storage where the run trains that model.
    const bool gpu = p.device == DeviceKind::kCuda;
    const ModelOptions options = ModelOptionsFromConfig(config.train());
    const bool fused = options.attention == AttentionPath::kAuto
                           ? config.train().precision() == "bf16"
                           : options.attention == AttentionPath::kFused;
    const bool keep_dropped = !gpu && !fused && config.model().attention_dropout() > 0;
    const bool bf16 = UsesBf16Activations(config.train(), p.device);
    m.activations = ActivationBytes(config.model(), limits, options, fused, keep_dropped, bf16);
  }
  return m;
}

std::vector<std::pair<std::string, double>> MemoryMetrics(const MemoryPerRank& m) {
  return {{"memory_parameters_bytes", static_cast<double>(m.parameters)},
          {"memory_gradients_bytes", static_cast<double>(m.gradients)},
          {"memory_optimizer_bytes", static_cast<double>(m.optimizer)},
          {"memory_activations_bytes", static_cast<double>(m.activations)},
          {"memory_total_bytes", static_cast<double>(m.total())}};
}

std::string DescribeMemory(const MemoryPerRank& m) {
  return absl::StrCat("parameters ", Bytes(m.parameters), " | gradients ", Bytes(m.gradients),
                      " | optimizer state ", Bytes(m.optimizer), " | activations ",
                      Bytes(m.activations), " | total ", Bytes(m.total()));
}

}  // namespace headroom
