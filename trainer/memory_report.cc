// Memory per rank, measured or predicted; see memory_report.h.
#include "trainer/memory_report.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/forwarding_ops.h"
#include "model/parameter_layout.h"
#include "trainer/zero_shard.h"

namespace headroom {
namespace {

// CPU ops whose allocations are reserved anonymous pages (zero, as Ops requires) that nothing
// touches unless an op writes them: a model created on it costs its address space, not its
// memory, so the activation count of BERT-large at batch 128 can be read on any machine. It
// overrides AllocBytes and Free instead of forwarding them (the only ops it must not run).
class ReservedPagesOps : public ForwardingOps<float> {
 public:
  explicit ReservedPagesOps(Ops<float>* inner) : ForwardingOps<float>(inner) {}
  ~ReservedPagesOps() override {
    for (const auto& [p, bytes] : sizes_) munmap(p, bytes);
  }
  void* AllocBytes(size_t bytes) override {
    const size_t size = bytes == 0 ? 1 : bytes;
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();  // out of address space: nothing sensible to return
    sizes_[p] = size;
    return p;
  }
  void Free(void* p) override {
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    munmap(p, it->second);
    sizes_.erase(it);
  }

 private:
  std::map<void*, size_t> sizes_;
};

std::string Bytes(int64_t b) {
  return b >= 1000000000 ? absl::StrFormat("%.2f GB", b / 1e9)
                         : absl::StrFormat("%.3g MB", b / 1e6);
}

}  // namespace

MemoryPerRank MeasureMemoryPerRank(const Model<float>& model, const Optimizer<float>& optimizer,
                                   const DataParallel& data_parallel) {
  MemoryPerRank m;
  const int64_t flat = model.layout().total() * static_cast<int64_t>(sizeof(float));
  m.parameters = flat;
  m.gradients = flat + data_parallel.allocated_bytes();
  m.optimizer = optimizer.allocated_bytes();
  m.activations = model.ActivationElements() * static_cast<int64_t>(sizeof(float));
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
  m.gradients = flat;
  std::vector<ShardRange> ranges;
  if (p.zero_stage == 1 && p.ranks > 1) {
    std::vector<GradientTensor> tensors;
    for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.numel, t.layer});
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
    CpuOps<float> cpu(1);
    ReservedPagesOps ops(&cpu);
    const SequenceShape shape = TrainingSequenceShape(config);
    ModelLimits limits;
    limits.max_batch = p.micro_batch;
    limits.max_seq = shape.seq;
    limits.max_predictions = shape.masked;
    // "auto" attention as the GPU resolves it (CudaOps::PrefersFusedAttention): the fused
    // kernels in bf16, the materialised products in fp32.
    ModelOptions options = ModelOptionsFromConfig(config.train());
    if (options.attention == AttentionPath::kAuto) {
      options.attention = config.train().precision() == "bf16" ? AttentionPath::kFused
                                                               : AttentionPath::kMaterialized;
    }
    HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> model,
                        Model<float>::Create(config.model(), &ops, limits, options));
    m.activations = model->ActivationElements() * static_cast<int64_t>(sizeof(float));
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
