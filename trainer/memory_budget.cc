// The memory check before a run allocates (see memory_budget.h).
#include "trainer/memory_budget.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/host_memory.h"
#include "base/status_macros.h"
#include "trainer/memory_report.h"
#include "trainer/training_backend.h"

namespace headroom {

absl::StatusOr<AvailableMemory> AvailableMemoryFor(DeviceKind device) {
  if (device == DeviceKind::kCuda) {
    HR_ASSIGN_OR_RETURN(CudaMemory gpu, CudaMemoryInfo());
    return AvailableMemory{gpu.free_bytes,
                           absl::StrCat("free memory of the GPU, of ", FormatGiB(gpu.total_bytes))};
  }
  HR_ASSIGN_OR_RETURN(HostMemory host, AvailableHostMemory());
  return AvailableMemory{host.available_bytes, host.source};
}

RunMemory EstimateRunMemory(const ExperimentConfig& config, const ModelLimits& limits,
                            const Ops<float>& ops, int data_parallel_ranks) {
  RunMemory need;
  need.model = EstimateTrainingMemory(
      config.model(), limits, ModelOptionsFromConfig(config.train()), ops,
      config.train().optimizer(), UsesBf16Activations(config.train(), ops.device()));
  if (config.train().zero_stage() == 1 && data_parallel_ranks > 1) {
    // ZeRO-1: the largest shard (the last rank's, which holds the buckets' tails) of the
    // optimizer state, and the shard gradient beside the full one (trainer/memory_report.h).
    MemoryPrediction p;
    p.ranks = data_parallel_ranks;
    p.zero_stage = 1;
    p.rank = data_parallel_ranks - 1;
    absl::StatusOr<MemoryPerRank> shard = PredictMemoryPerRank(config, p);
    if (shard.ok()) {
      need.model.gradients = shard->gradients;
      need.model.optimizer = shard->optimizer;
    }
  }
  if (ops.device() == DeviceKind::kCpu) need.checkpoint_copies = 3 * need.model.parameters;
  return need;
}

absl::Status CheckMemoryFits(const RunMemory& need, int ranks_here,
                             const AvailableMemory& available, const TrainConfig& train,
                             const ModelLimits& limits, DeviceKind device) {
  const int ranks = std::max(ranks_here, 1);
  const int64_t total = ranks * need.model.total() + need.checkpoint_copies;
  if (total <= available.bytes) return absl::OkStatus();

  const MemoryEstimate& m = need.model;
  const int64_t fixed = ranks * (m.parameters + m.gradients + m.optimizer) + need.checkpoint_copies;
  std::vector<std::string> lower;
  if (fixed > available.bytes) {
    lower.push_back(absl::StrCat("parameters, gradients and optimizer state alone need ",
                                 FormatGiB(fixed),
                                 ", so only a smaller model helps (model.d_model, "
                                 "model.num_layers, model.ffn_size, model.vocab_size)"));
  } else {
    if (limits.max_batch > 1) {
      lower.push_back(absl::StrCat("a smaller train.micro_batch_size (now ", limits.max_batch,
                                   ") with more accumulation"));
    }
    if (!train.recompute_gelu()) lower.push_back("train.recompute_gelu=true");
    if (!train.layernorm_from_output()) lower.push_back("train.layernorm_from_output=true");
    lower.push_back("a smaller model");
  }
  if (train.zero_stage() == 0) {
    lower.push_back(
        "train.zero_stage=1 over several ranks (each keeps 1/R of the optimizer state)");
  }
  const char* memory = device == DeviceKind::kCuda ? "GPU memory" : "host memory";
  return absl::ResourceExhaustedError(absl::StrCat(
      "the run needs ", FormatGiB(total), " of ", memory, " (", ranks,
      ranks == 1 ? " rank: " : " ranks, each: ", m.ToString(),
      need.checkpoint_copies > 0
          ? absl::StrCat("; host copies for checkpoints ", FormatGiB(need.checkpoint_copies))
          : "",
      ") but ", FormatGiB(available.bytes), " are available (", available.source,
      "); to need less: ", absl::StrJoin(lower, "; ")));
}

absl::Status CheckTrainingMemory(const ExperimentConfig& config, const ModelLimits& limits,
                                 const Ops<float>& ops, int ranks_on_this_host,
                                 int data_parallel_ranks) {
  absl::StatusOr<AvailableMemory> available = AvailableMemoryFor(ops.device());
  if (!available.ok()) return absl::OkStatus();  // nothing to compare with: allocate and see
  const int ranks = ops.device() == DeviceKind::kCpu ? ranks_on_this_host : 1;
  return CheckMemoryFits(EstimateRunMemory(config, limits, ops, data_parallel_ranks), ranks,
                         *available, config.train(), limits, ops.device());
}

}  // namespace headroom
