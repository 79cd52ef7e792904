// DataParallel: the gradient reduction of data-parallel training, as one component (the role of
// Megatron's core/distributed DistributedDataParallel): the trainer and `headroom bench` both
// drive it.
//
// It owns:
//   - the gradient buckets over the model's flat gradient buffer (comm/gradient_buckets.h),
//     cut from train.comm_bucket_mb, averaged over the ranks;
//   - the backward hook (Model::BackwardHook) that marks each group of tensors ready as
//     backward finishes it (BackwardHookTensors below), so each bucket's all-reduce starts
//     while the rest of backward runs;
//   - host staging: with device tensors and a host communicator (MPI on CUDA) each tensor is
//     copied to a host buffer as backward finishes it, reduced there, and copied back in
//     Finish(); on the CPU backend the host buffer is the gradient buffer itself;
//   - stream ordering: with NCCL and CUDA tensors, the communicator's collectives are ordered
//     after the compute stream (NcclCommunicator::set_caller_stream), so a bucket launched from
//     the hook sees the kernels that produced it.
// With one rank it does nothing: hook() is empty and Finish() returns zeros at once.
//
// A step (gradient accumulation over k micro-batches):
//   model->ZeroGrads();
//   for (int j = 0; j < k; ++j) {
//     ...forward...
//     model->Backward(1.0f, j == k - 1 ? dp->hook() : Model<float>::BackwardHook());
//     HR_RETURN_IF_ERROR(dp->hook_status());
//   }
//   HR_ASSIGN_OR_RETURN(DataParallelStepStats s, dp->Finish(compute_start));
//   // model->grads() now holds the average over the ranks of every rank's sum
//   optimizer.Step(...);
//
// Where ZeRO-1 goes (issue 14): the reduction then becomes a reduce-scatter of each bucket into
// the rank's shard of the flat buffer, Finish() leaves the averaged gradient of that shard
// only, the optimizer updates the shard, and a step after the optimizer all-gathers the
// parameters. Everything that decides what is reduced, when, and into which buffer lives here,
// so that stage is added inside this class without touching the trainer's step.
//
// Not thread-safe; use it from the thread that drives backward.
#ifndef HEADROOM_TRAINER_DATA_PARALLEL_H_
#define HEADROOM_TRAINER_DATA_PARALLEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "comm/communicator.h"
#include "comm/gradient_buckets.h"
#include "kernels/ops.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"

namespace headroom {

// The communicator for data-parallel training on `device` from a backend name (train.comm):
// as CreateCommunicator (comm/create_communicator.h), except that "auto" picks NCCL when CUDA
// tensors are trained under a launcher (mpirun, srun). `what` names the setting in errors
// ("train.comm"). Collective for "mpi" and "nccl".
[[nodiscard]] absl::StatusOr<std::unique_ptr<Communicator>> CreateDataParallelCommunicator(
    absl::string_view backend, DeviceKind device, absl::string_view what = "train.comm");

// The tensors (indices into layout.tensors()) whose gradients are final when Model::Backward's
// hook runs with `layer`, at [layer + 1]: [0] the embeddings (hook -1), [l + 1] layer l,
// [num_layers + 1] the output heads (hook num_layers). For marking GradientBuckets ready.
std::vector<std::vector<int>> BackwardHookTensors(const ParameterLayout& layout, int num_layers);

// train.comm_bucket_mb in bytes (clamped so that a huge value means one bucket).
int64_t BucketBytesFromMb(double mb);

struct DataParallelOptions {
  // A bucket closes once it holds at least this many bytes (GradientBucketsOptions).
  int64_t bucket_bytes = 25 * 1024 * 1024;
};

// What one step's reduction cost this rank (all zero with one rank).
struct DataParallelStepStats {
  bool reduced = false;        // several ranks: the gradient was reduced
  double compute_seconds = 0;  // from the caller's compute start to backward's work done
  double wait_seconds = 0;     // blocked for buckets still in flight (not hidden by backward)
  int64_t bytes_reduced = 0;   // gradient payload reduced by this rank in the step
};

class DataParallel {
 public:
  // The reduction of `model`'s gradients over the ranks of `comm`. `comm`, `ops` (the model's)
  // and `model` must outlive the object. InvalidArgument when `comm` reduces device buffers
  // but the tensors are on the host (e.g. train.comm=nccl with --device=cpu).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataParallel>> Create(
      Communicator* comm, Ops<float>* ops, Model<float>* model,
      const DataParallelOptions& options = {});

  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Whether there is anything to reduce (more than one rank).
  bool active() const { return buckets_ != nullptr; }
  // Whether gradients go through a host copy (device tensors over a host communicator).
  bool staging() const { return staging_; }
  Communicator& comm() const { return *comm_; }
  // The communicator for host buffers (losses, checksums, broadcasts of host copies, timings):
  // comm() itself, or for NCCL, whose collectives need device buffers, the MPI communicator it
  // was started with (same ranks).
  Communicator& host_comm() const { return *host_comm_; }

  // The hook for the Backward whose gradients complete the step (the last micro-batch's);
  // empty with one rank. Errors are kept for hook_status().
  const Model<float>::BackwardHook& hook() const { return hook_; }
  // The first error of the hook in this step (a bucket launch), else OK.
  const absl::Status& hook_status() const { return hook_status_; }

  // After the step's last Backward: waits for backward's work (the compute time is measured
  // from `compute_start` to then), launches and waits for every bucket, and copies a staged
  // gradient back to the device. Then model->grads() holds the average over the ranks.
  [[nodiscard]] absl::StatusOr<DataParallelStepStats> Finish(Clock::time_point compute_start);

  // The buffer the communicator reduces: the gradients, or their host copy when staging.
  float* reduce_buffer() const { return reduce_buffer_; }
  int64_t num_elements() const { return model_->layout().total(); }
  // The buckets in launch order (empty with one rank).
  const std::vector<GradientBucket>& buckets() const;
  // "data parallel: 2 ranks (mpi), 3 gradient buckets of <= 25 MiB, 1.23 MB per step" (the
  // trainer's console line), for `bucket_mb` as configured.
  std::string Describe(double bucket_mb) const;

 private:
  DataParallel() = default;
  void MarkLayer(int layer);

  Communicator* comm_ = nullptr;
  Communicator* host_comm_ = nullptr;
  Ops<float>* ops_ = nullptr;
  Model<float>* model_ = nullptr;
  bool staging_ = false;
  std::vector<float> staged_;  // host copy of the gradients when staging
  float* reduce_buffer_ = nullptr;
  std::unique_ptr<GradientBuckets> buckets_;
  std::vector<std::vector<int>> hook_tensors_;  // Backward hook layer + 1 -> tensor indices
  Model<float>::BackwardHook hook_;
  absl::Status hook_status_;
};

}  // namespace headroom

#endif  // HEADROOM_TRAINER_DATA_PARALLEL_H_
