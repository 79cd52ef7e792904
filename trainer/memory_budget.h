// The memory check a training run makes before it allocates its model: what the run will need
// (model/memory_estimate.h, per rank, plus the lead rank's host copies for checkpoints) against
// what the machine has (host RAM under any cgroup limit, base/host_memory.h, for the CPU backend;
// the GPU's free memory, cudaMemGetInfo, for CUDA). A model that does not fit stops at once with
// one line giving both numbers and the settings that lower the need, instead of allocating for a
// minute and swapping, or being killed without a word by the kernel's OOM killer.
//
// The trainer calls it in setup, after MakeOps and before Model::Create:
//   HR_RETURN_IF_ERROR(CheckTrainingMemory(config, limits, *ops, comm.local_size()));
#ifndef HEADROOM_TRAINER_MEMORY_BUDGET_H_
#define HEADROOM_TRAINER_MEMORY_BUDGET_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "model/memory_estimate.h"
#include "model/transformer.h"

namespace headroom {

// What is available to this process on a backend, and where the number comes from.
struct AvailableMemory {
  int64_t bytes = 0;
  std::string source;  // e.g. "MemAvailable in /proc/meminfo", "free memory of the GPU"
};

// The CPU: AvailableHostMemory(); CUDA: the current GPU's free memory (CudaMemoryInfo).
[[nodiscard]] absl::StatusOr<AvailableMemory> AvailableMemoryFor(DeviceKind device);

// What one rank of a run needs on its backend: the model and optimizer (EstimateTrainingMemory)
// and, on the CPU, where the backend's memory is host memory, the host copies of the
// parameters and both moments that saving or resuming a checkpoint makes (3 x parameters;
// counted once, for the lead rank, by CheckMemoryFits).
struct RunMemory {
  MemoryEstimate model;
  int64_t checkpoint_copies = 0;  // bytes; 0 on CUDA (host memory, not the GPU's)
};
RunMemory EstimateRunMemory(const ExperimentConfig& config, const ModelLimits& limits,
                            const Ops<float>& ops);

// OK when `ranks_here` ranks of `need` fit `available` (on the CPU all ranks of a host share its
// memory; on CUDA each rank has its own GPU, so pass 1). Otherwise ResourceExhausted, one line:
//   "the run needs 37.25 GiB of host memory (1 rank: parameters 9.31 GiB, ...) but 21.03 GiB
//    are available (MemAvailable in /proc/meminfo); to need less: train.micro_batch_size=... "
// listing the settings that lower the need and are not already in use: train.micro_batch_size
// (the micro-batch now `limits.max_batch`), train.recompute_gelu, train.layernorm_from_output,
// a smaller model, and train.zero_stage (sharding the optimizer state over ranks, coming). When
// parameters, gradients and optimizer state alone do not fit, it says so: then only a smaller
// model (or sharding) helps.
[[nodiscard]] absl::Status CheckMemoryFits(const RunMemory& need, int ranks_here,
                                           const AvailableMemory& available,
                                           const TrainConfig& train, const ModelLimits& limits,
                                           DeviceKind device);

// EstimateRunMemory, AvailableMemoryFor(ops.device()) and CheckMemoryFits together, as the
// trainer calls them. `ranks_on_this_host`: the communicator's local_size() (used on the CPU).
// An unreadable "available" (no /proc/meminfo) skips the check rather than failing the run.
[[nodiscard]] absl::Status CheckTrainingMemory(const ExperimentConfig& config,
                                               const ModelLimits& limits, const Ops<float>& ops,
                                               int ranks_on_this_host);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_MEMORY_BUDGET_H_
