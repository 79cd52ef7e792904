// DataParallel: buckets, backward hook, host staging and stream ordering; see the header.
#include "trainer/data_parallel.h"

#include <algorithm>
#include <cstdint>

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
    absl::string_view backend, DeviceKind device, absl::string_view what) {
  absl::StatusOr<CommBackend> parsed = ParseCommBackend(backend);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", parsed.status().message()));
  }
  CommunicatorOptions o;
  o.backend = *parsed;
  // create_communicator.h never guesses NCCL itself: only the owner of the tensors knows
  // they live on the GPU.
  if (o.backend == CommBackend::kAuto && device == DeviceKind::kCuda && LaunchedByMpi()) {
    o.backend = CommBackend::kNccl;
  }
  return CreateCommunicator(o);
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
    Communicator* comm, Ops<float>* ops, Model<float>* model, const DataParallelOptions& options) {
  if (comm->device_buffers() && ops->device() == DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.comm=", comm->backend_name(),
                     " reduces device buffers, but --device=cpu; use train.comm=mpi (or auto)"));
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
  for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.numel, t.layer});
  dp->hook_tensors_ = BackwardHookTensors(layout, model->config().num_layers());
  GradientBucketsOptions bo;
  bo.bucket_bytes = options.bucket_bytes;
  bo.op = ReduceOp::kAverage;
  HR_ASSIGN_OR_RETURN(dp->buckets_, GradientBuckets::Create(comm, dp->reduce_buffer_, tensors, bo));
  DataParallel* self = dp.get();
  dp->hook_ = [self](int layer) { self->MarkLayer(layer); };
  return dp;
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
  if (staging_) {
    ops_->CopyToDevice(model_->grads(), staged_.data(), sizeof(float) * staged_.size());
  }
  return s;
}

const std::vector<GradientBucket>& DataParallel::buckets() const {
  static const std::vector<GradientBucket> kNone;
  return buckets_ ? buckets_->buckets() : kNone;
}

std::string DataParallel::Describe(double bucket_mb) const {
  return absl::StrFormat(
      "data parallel: %d ranks (%s%s), %zu gradient buckets of <= %g MiB, %.3g MB per step",
      comm_->size(), comm_->backend_name(), staging_ ? ", host-staged" : "", buckets().size(),
      bucket_mb, num_elements() * 4.0 / 1e6);
}

}  // namespace headroom
