// Memory per data-parallel rank, split by what it holds: parameters, gradients, optimizer state
// and activations. Measured from a running trainer's objects (the console and metrics.jsonl
// report rank 0's) or predicted for a config, a number of ranks and a ZeRO stage without
// allocating anything (`headroom params --ranks --zero_stage`, `headroom scaling`).
//
// What each part counts (bytes of the buffers headroom allocates, fp32):
//   parameters   the flat parameter buffer (every rank holds all of it, either stage);
//   gradients    the flat gradient buffer, plus ZeRO-1's shard gradient (trainer/data_parallel.h)
//                and, when measured on CUDA with MPI, the host staging copies;
//   optimizer    what the optimizer allocated (trainer/optimizer.h: m and v, LAMB's scratch
//                and norms, a scalar): layout.total() elements of each moment, or with ZeRO-1
//                the rank's shard's;
//   activations  the model's activation buffers and workspace (Model::ActivationElements) for
//                the micro-batch (the batch's id buffers are not counted).
// Not counted: library workspaces (cuBLAS), the CUDA context, input batches on the host.
//
// Example:
//   HR_ASSIGN_OR_RETURN(MemoryPerRank m, PredictMemoryPerRank(config, {.ranks = 64,
//                                                                      .zero_stage = 1}));
//   std::printf("%s\n", DescribeMemory(m).c_str());
#ifndef HEADROOM_TRAINER_MEMORY_REPORT_H_
#define HEADROOM_TRAINER_MEMORY_REPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "model/transformer.h"
#include "trainer/data_parallel.h"
#include "trainer/optimizer.h"

namespace headroom {

struct MemoryPerRank {
  int64_t parameters = 0;
  int64_t gradients = 0;
  int64_t optimizer = 0;
  int64_t activations = 0;
  int64_t total() const { return parameters + gradients + optimizer + activations; }
};

// This rank's buffers, from the objects that own them.
MemoryPerRank MeasureMemoryPerRank(const TrainableModel<float>& model,
                                   const Optimizer<float>& optimizer,
                                   const DataParallel& data_parallel);

struct MemoryPrediction {
  int ranks = 1;
  int zero_stage = 0;
  int rank = 0;  // whose shard (the last rank holds the buckets' tails: R - 1 elements more each)
  // Sequences per micro-batch for the activations; 0: no activations (parameters, gradients
  // and optimizer state only).
  int micro_batch = 0;
  // The backend whose activation buffers are counted (it decides train.attention "auto").
  DeviceKind device = DeviceKind::kCuda;
};

// The same split for `config` (validated; its train.comm_bucket_mb, train.optimizer, data
// sequence length and attention options) at `p.ranks` ranks and `p.zero_stage`, as the trainer
// would allocate it on `p.device` (on the GPU with NCCL: no host staging). Parameters,
// gradients and optimizer state are the optimizer's and DataParallel's own sizing rules
// (Optimizer::AllocatedBytes, PlanZeroShard); activations model/memory_estimate.h's count,
// which equals Model::ActivationElements, with train.attention "auto" resolved as on
// `p.device`: fused in bf16 on the GPU, else materialised. InvalidArgument for ranks < 1, a
// zero stage other than 0 or 1, or a rank out of range.
[[nodiscard]] absl::StatusOr<MemoryPerRank> PredictMemoryPerRank(const ExperimentConfig& config,
                                                                 const MemoryPrediction& p);

// The metrics.jsonl / TensorBoard scalars: memory_parameters_bytes, memory_gradients_bytes,
// memory_optimizer_bytes, memory_activations_bytes, memory_total_bytes.
std::vector<std::pair<std::string, double>> MemoryMetrics(const MemoryPerRank& m);

// "parameters 1.34 GB | gradients 1.34 GB | optimizer state 0.67 GB | activations 2.1 GB |
// total 5.5 GB" (decimal GB, or MB below 1 GB).
std::string DescribeMemory(const MemoryPerRank& m);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_MEMORY_REPORT_H_
