// DataParallel: buckets, backward hook, host staging and stream ordering; see the header.
#include "trainer/data_parallel.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/create_communicator.h"
#include "comm/mpi_runtime.h"
#ifdef HEADROOM_HAVE_CUDA
#include "comm/nccl_communicator.h"
#include "kernels/cuda/cuda_ops.h"
#endif

namespace headroom {
namespace {

// Several collectives in flight as one: Wait waits for all (the first error wins), Test is true
// when all are done.
class HandleGroup : public CommRequest {
 public:
  explicit HandleGroup(std::vector<CommHandle> handles) : handles_(std::move(handles)) {}
  absl::Status Wait() override {
    absl::Status status;
    for (CommHandle& h : handles_) status.Update(h->Wait());
    return status;
  }
  absl::StatusOr<bool> Test() override {
    bool all = true;
    for (CommHandle& h : handles_) {
      HR_ASSIGN_OR_RETURN(bool done, h->Test());
      all = all && done;
    }
    return all;
  }

 private:
  std::vector<CommHandle> handles_;
};

// NCCL orders its collectives after the work of the stream the ops enqueue on.
void OrderCommAfterCompute(Communicator* comm, Ops<float>* ops) {
#ifdef HEADROOM_HAVE_CUDA
  if (auto* nccl = dynamic_cast<NcclCommunicator*>(comm); nccl != nullptr) {
    if (auto* cuda = dynamic_cast<CudaOps*>(ops); cuda != nullptr) {
      nccl->set_caller_stream(cuda->stream());
    }
  }
#else
  (void)comm;
  (void)ops;
#endif
}

// The communicator for host buffers: NCCL's bootstrap MPI communicator, else `comm` itself.
Communicator* HostCommunicator(Communicator* comm) {
#ifdef HEADROOM_HAVE_CUDA
  if (auto* nccl = dynamic_cast<NcclCommunicator*>(comm); nccl != nullptr) return &nccl->mpi();
#endif
  return comm;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateDataParallelCommunicator(
    const TrainConfig& train, DeviceKind device) {
  absl::StatusOr<CommBackend> parsed = ParseCommBackend(train.comm());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("train.comm: ", parsed.status().message()));
  }
  if (train.has_comm_timeout_s() && !(train.comm_timeout_s() > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.comm_timeout_s must be > 0 (got ", train.comm_timeout_s(), ")"));
  }
  CommunicatorOptions o;
  o.backend = *parsed;
  if (train.has_comm_timeout_s()) o.timeout = absl::Seconds(train.comm_timeout_s());
  // create_communicator.h never guesses NCCL itself: only the owner of the tensors knows
  // they live on the GPU.
  if (o.backend == CommBackend::kAuto && device == DeviceKind::kCuda && LaunchedByMpi()) {
    o.backend = CommBackend::kNccl;
  }
  return CreateCommunicator(o);
}

absl::StatusOr<Communicator*> DataParallelCommunicatorOrCreate(
    Communicator* comm, const TrainConfig& train, DeviceKind device,
    std::unique_ptr<Communicator>* owned) {
  if (comm != nullptr) return comm;
  absl::StatusOr<std::unique_ptr<Communicator>> c = CreateDataParallelCommunicator(train, device);
  if (!c.ok()) {
    if (LaunchedByMpi()) AbortJob(c.status());  // every rank gets here alike
    return c.status();
  }
  *owned = std::move(*c);
  return owned->get();
}

std::vector<std::vector<int>> BackwardHookTensors(const ParameterLayout& layout, int num_layers) {
  std::vector<std::vector<int>> groups(static_cast<size_t>(num_layers) + 2);
  const std::string embeddings = layout.prefix() + "embeddings.";
  for (size_t i = 0; i < layout.tensors().size(); ++i) {
    const TensorSpec& t = layout.tensors()[i];
    // Layer -1 holds the embeddings ("bert.embeddings.*", "lm.embeddings.*") and the heads.
    int layer = t.layer;
    if (layer < 0 && !absl::StartsWith(t.name, embeddings)) layer = num_layers;
    groups[static_cast<size_t>(layer + 1)].push_back(static_cast<int>(i));
  }
  return groups;
}

int64_t BucketBytesFromMb(double mb) {
  return static_cast<int64_t>(std::min(mb * 1024.0 * 1024.0, static_cast<double>(INT64_MAX / 2)));
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    Communicator* comm, Ops<float>* ops, TrainableModel<float>* model,
    const DataParallelOptions& options) {
  if (comm->device_buffers() && ops->device() == DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.comm=", comm->backend_name(),
                     " reduces device buffers, but --device=cpu; use train.comm=mpi (or auto)"));
  }
  if (options.zero_stage != 0 && options.zero_stage != 1) {
    return absl::InvalidArgumentError(absl::StrCat("train.zero_stage: ", options.zero_stage,
                                                   " is not supported; use 0 or 1 (ZeRO-1)"));
  }
  OrderCommAfterCompute(comm, ops);
  std::unique_ptr<DataParallel> dp(new DataParallel());
  dp->comm_ = comm;
  dp->host_comm_ = HostCommunicator(comm);
  dp->ops_ = ops;
  dp->model_ = model;
  dp->reduce_buffer_ = model->grads();
  if (comm->size() == 1) return dp;

  const ParameterLayout& layout = model->layout();
  dp->staging_ = ops->device() != DeviceKind::kCpu && !comm->device_buffers();
  if (dp->staging_) {
    dp->staged_.assign(static_cast<size_t>(layout.total()), 0.0f);
    dp->reduce_buffer_ = dp->staged_.data();
  }
  std::vector<GradientTensor> tensors;
  for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.reserved, t.layer});
  dp->hook_tensors_ = BackwardHookTensors(layout, model->config().num_layers());
  GradientBucketsOptions bo;
  bo.bucket_bytes = options.bucket_bytes;
  bo.op = ReduceOp::kAverage;
  DataParallel* self = dp.get();
  dp->sharded_ = options.zero_stage == 1;
  if (dp->sharded_) bo.launch = [self](int k) { return self->LaunchReduceScatter(k); };
  HR_ASSIGN_OR_RETURN(dp->buckets_, GradientBuckets::Create(comm, dp->reduce_buffer_, tensors, bo));
  HR_RETURN_IF_ERROR(dp->SetUpShard());
  dp->hook_ = [self](int layer) { self->MarkLayer(layer); };
  return dp;
}

DataParallel::~DataParallel() {
  buckets_.reset();  // waits for collectives still in flight into the shard buffers
  if (shard_grads_ != nullptr) ops_->Free(shard_grads_);
}

absl::Status DataParallel::SetUpShard() {
  shard_ = PlanZeroShard(buckets_->buckets(), comm_->rank(), comm_->size());
  if (!sharded_) return absl::OkStatus();
  shard_grads_ = ops_->Alloc(std::max<int64_t>(shard_.numel, 1));
  shard_reduce_ = shard_grads_;
  if (staging_) {
    shard_staged_.assign(static_cast<size_t>(shard_.numel), 0.0f);
    shard_reduce_ = shard_staged_.data();
  }
  return absl::OkStatus();
}

absl::StatusOr<CommHandle> DataParallel::LaunchReduceScatter(int k) {
  const GradientBucket& bucket = buckets_->buckets()[static_cast<size_t>(k)];
  const int ranks = comm_->size();
  const BucketSplit split = SplitBucket(bucket, ranks);
  float* send = reduce_buffer_ + bucket.begin;
  float* recv = shard_reduce_ + shard_.bucket_offset[static_cast<size_t>(k)];
  std::vector<CommHandle> handles;
  if (split.chunk > 0) {
    HR_ASSIGN_OR_RETURN(handles.emplace_back(),
                        comm_->ReduceScatterAsync(send, recv, static_cast<size_t>(split.chunk),
                                                  DataType::kFloat32, ReduceOp::kAverage));
  }
  if (split.tail > 0) {
    // The last rank's chunk continues with the tail; elsewhere it is reduced in place (and
    // unused).
    float* tail = send + split.chunk * ranks;
    float* out = comm_->rank() == ranks - 1 ? recv + split.chunk : tail;
    HR_ASSIGN_OR_RETURN(handles.emplace_back(),
                        comm_->AllReduceAsync(tail, out, static_cast<size_t>(split.tail),
                                              DataType::kFloat32, ReduceOp::kAverage));
  }
  return CommHandle(std::make_unique<HandleGroup>(std::move(handles)));
}

absl::StatusOr<CommHandle> DataParallel::LaunchAllGather(Communicator& comm, float* params,
                                                         int k) const {
  const GradientBucket& bucket = buckets_->buckets()[static_cast<size_t>(k)];
  const int ranks = comm.size();
  const BucketSplit split = SplitBucket(bucket, ranks);
  float* base = params + bucket.begin;
  std::vector<CommHandle> handles;
  if (split.chunk > 0) {
    HR_ASSIGN_OR_RETURN(handles.emplace_back(),
                        comm.AllGatherAsync(base + comm.rank() * split.chunk, base,
                                            static_cast<size_t>(split.chunk), DataType::kFloat32));
  }
  if (split.tail > 0) {
    // The tail is zero on every rank but its owner (the caller sees to it), so a sum delivers
    // the owner's values: an all-reduce, which NCCL runs as a tree for small messages, where a
    // broadcast from the last rank would be a chain of R - 1 steps.
    float* tail = base + split.chunk * ranks;
    HR_ASSIGN_OR_RETURN(handles.emplace_back(),
                        comm.AllReduceAsync(tail, tail, static_cast<size_t>(split.tail),
                                            DataType::kFloat32, ReduceOp::kSum));
  }
  return CommHandle(std::make_unique<HandleGroup>(std::move(handles)));
}

const float* DataParallel::optimizer_grads() const {
  return sharded_ ? shard_grads_ : model_->grads();
}

OptimizerShard<float> DataParallel::optimizer_shard() {
  OptimizerShard<float> o;
  if (!sharded_) return o;
  o.ranges = shard_.ranges;
  Communicator* host = host_comm_;
  o.sum_over_ranks = [host](double* values, int n) {
    return host->AllReduce(values, values, static_cast<size_t>(n), DataType::kFloat64,
                           ReduceOp::kSum);
  };
  o.workspace = model_->grads();
  return o;
}

absl::Status DataParallel::GatherParameters() {
  if (!sharded_) return absl::OkStatus();
  // Staging: the shard's parameters go to the host copy (free since Finish), are gathered
  // there and all come back; otherwise the gather runs in place in the parameters.
  float* params = staging_ ? staged_.data() : model_->params();
  if (staging_) {
    for (const ShardRange& r : shard_.ranges) {
      ops_->CopyToHost(params + r.begin, model_->params() + r.begin,
                       sizeof(float) * static_cast<size_t>(r.numel()));
    }
  }
  // The buckets' tails are summed over the ranks (LaunchAllGather): zero where not owned.
  const int ranks = comm_->size();
  if (comm_->rank() != ranks - 1) {
    for (const GradientBucket& b : buckets_->buckets()) {
      const BucketSplit split = SplitBucket(b, ranks);
      float* tail = params + b.begin + split.chunk * ranks;
      if (split.tail == 0) continue;
      if (staging_) {
        std::fill(tail, tail + split.tail, 0.0f);
      } else {
        ops_->Fill(tail, split.tail, 0.0f);
      }
    }
  }
  std::vector<CommHandle> handles;
  for (size_t k = 0; k < buckets_->buckets().size(); ++k) {
    HR_ASSIGN_OR_RETURN(handles.emplace_back(),
                        LaunchAllGather(*comm_, params, static_cast<int>(k)));
  }
  absl::Status status;
  for (CommHandle& h : handles) status.Update(h->Wait());
  HR_RETURN_IF_ERROR(status);
  if (staging_) ops_->CopyToDevice(model_->params(), params, sizeof(float) * staged_.size());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DataParallel::GatherShards(std::vector<float> shard) {
  if (!sharded_) return shard;
  if (static_cast<int64_t>(shard.size()) != shard_.numel) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GatherShards: ", shard.size(), " elements given, the shard has ", shard_.numel));
  }
  std::vector<float> full(static_cast<size_t>(num_elements()), 0.0f);
  for (const ShardRange& r : shard_.ranges) {
    std::copy(shard.begin() + r.offset, shard.begin() + r.offset + r.numel(),
              full.begin() + r.begin);
  }
  std::vector<CommHandle> handles;
  for (size_t k = 0; k < buckets_->buckets().size(); ++k) {
    HR_ASSIGN_OR_RETURN(handles.emplace_back(),
                        LaunchAllGather(*host_comm_, full.data(), static_cast<int>(k)));
  }
  absl::Status status;
  for (CommHandle& h : handles) status.Update(h->Wait());
  HR_RETURN_IF_ERROR(status);
  return full;
}

std::vector<float> DataParallel::ShardOf(std::vector<float> full) const {
  if (!sharded_) return full;
  std::vector<float> shard(static_cast<size_t>(shard_.numel));
  for (const ShardRange& r : shard_.ranges) {
    std::copy(full.begin() + r.begin, full.begin() + r.end, shard.begin() + r.offset);
  }
  return shard;
}

int64_t DataParallel::allocated_bytes() const {
  const int64_t elements =
      (sharded_ ? shard_.numel : 0) + static_cast<int64_t>(staged_.size() + shard_staged_.size());
  return elements * static_cast<int64_t>(sizeof(float));
}

void DataParallel::MarkLayer(int layer) {
  if (!hook_status_.ok()) return;
  const ParameterLayout& layout = model_->layout();
  for (int i : hook_tensors_[static_cast<size_t>(layer + 1)]) {
    if (staging_) {
      const TensorSpec& t = layout.tensors()[static_cast<size_t>(i)];
      ops_->CopyToHost(staged_.data() + t.offset, model_->grads() + t.offset,
                       sizeof(float) * static_cast<size_t>(t.numel));
    }
    hook_status_ = buckets_->MarkReady(i);
    if (!hook_status_.ok()) return;
  }
}

absl::StatusOr<DataParallelStepStats> DataParallel::Finish(Clock::time_point compute_start) {
  DataParallelStepStats s;
  if (!active()) return s;
  HR_RETURN_IF_ERROR(hook_status_);
  ops_->Synchronize();  // backward's work is done: what follows is waiting on the network
  s.reduced = true;
  s.compute_seconds = Seconds(compute_start, Clock::now());
  const int64_t before = buckets_->stats().bytes_reduced;
  HR_RETURN_IF_ERROR(buckets_->WaitAll());
  s.wait_seconds = buckets_->stats().last_wait_seconds;
  s.bytes_reduced = buckets_->stats().bytes_reduced - before;
  if (sharded_) {
    if (staging_) {
      ops_->CopyToDevice(shard_grads_, shard_staged_.data(), sizeof(float) * shard_staged_.size());
    }
  } else if (staging_) {
    ops_->CopyToDevice(model_->grads(), staged_.data(), sizeof(float) * staged_.size());
  }
  return s;
}

const std::vector<GradientBucket>& DataParallel::buckets() const {
  static const std::vector<GradientBucket> kNone;
  return buckets_ ? buckets_->buckets() : kNone;
}

std::string DataParallel::Describe(double bucket_mb) const {
  std::string line = absl::StrFormat(
      "data parallel: %d ranks (%s%s), %zu gradient buckets of <= %g MiB, %.3g MB per step",
      comm_->size(), comm_->backend_name(), staging_ ? ", host-staged" : "", buckets().size(),
      bucket_mb, num_elements() * 4.0 / 1e6);
  if (sharded_) {
    absl::StrAppendFormat(&line,
                          "; ZeRO-1: reduce-scatter into shards, rank %d updates %lld of %lld "
                          "parameters, then all-gather",
                          comm_->rank(), static_cast<long long>(shard_.numel),
                          static_cast<long long>(num_elements()));
  }
  return line;
}

}  // namespace headroom
