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
//     model->Backward(1.0f, j == k - 1 ? dp->hook() : TrainableModel<float>::BackwardHook());
//     HR_RETURN_IF_ERROR(dp->hook_status());
//   }
//   HR_ASSIGN_OR_RETURN(DataParallelStepStats s, dp->Finish(compute_start));
//   // model->grads() now holds the average over the ranks of every rank's sum (ZeRO-1: the
//   // shard's part of it is in dp->shard_grads())
//   HR_ASSIGN_OR_RETURN(OptimizerStats st,
//                       optimizer.Step(model->params(), dp->optimizer_grads(), lr, 1.0 / k));
//   HR_RETURN_IF_ERROR(dp->GatherParameters());  // ZeRO-1; a no-op otherwise
//
// ZeRO-1 (DataParallelOptions::zero_stage = 1, train.zero_stage): each rank keeps the optimizer
// state of its shard of the flat buffer only (trainer/zero_shard.h: every bucket is split into R
// equal chunks, rank r owning chunk r, the last rank also the < R elements of the tail).
//   - Reduction: as each bucket becomes ready in backward, one reduce-scatter of its R chunks
//     (MPI_Ireduce_scatter_block / ncclReduceScatter, average) lands the rank's chunk of the
//     averaged gradient in its compact shard gradient buffer (shard_grads()), and, when the
//     bucket has a tail, an all-reduce of the tail lands it there on the last rank. So the
//     overlap with backward, the bucket order and the progress polling are those of stage 0;
//     the payload per rank is the same bytes as an all-reduce's reduce-scatter half.
//     Finish() leaves the averaged gradient of the shard in shard_grads() (model->grads() is
//     then dead until the next step's ZeroGrads: the LAMB workspace reuses it).
//   - Update: the optimizer (trainer/optimizer.h, OptimizerShard from optimizer_shard()) updates
//     the parameters of the shard's ranges; its grad norm and LAMB's per-tensor norms are
//     partial sums all-reduced over the ranks (host_comm(), float64).
//   - GatherParameters(): per bucket, an in-place all-gather of the R chunks
//     (MPI_Iallgather / ncclAllGather) and a sum of the tail, zeroed first on every rank but
//     the last (an all-reduce: NCCL's small-message tree, where a broadcast would be a chain of
//     R - 1 hops); every rank then holds the updated parameters. It runs after the optimizer and is
//     not overlapped with the next forward (Megatron's distributed optimizer overlaps it; not done
//     here).
//   - Host staging (MPI on CUDA): the reduce-scatter runs on the host copy into a host shard
//     buffer copied to the device in Finish(); the all-gather copies the shard's parameters to
//     the host copy (free after Finish), gathers there and copies all parameters back.
//   - Checkpoints keep the full state in the stage-0 format: GatherShards() assembles the full
//     moments from every rank's shard (every rank gets them; rank 0 writes), ShardOf() cuts a
//     rank's shard out of full moments on restore, so a checkpoint moves between any R and
//     either stage.
// Low-precision weights (none yet): when the model computes with a bf16 copy of the weights, the
// fp32 master weights become optimizer state like m and v: each rank keeps them for its shard
// only (OptimizerShard's ranges, allocated by the optimizer), updates them, writes its shard of
// the bf16 copy, and GatherParameters all-gathers the bf16 copy (half the bytes) with the same
// bucket split.
// Why chunks of each bucket rather than R contiguous ranges of the whole buffer: a bucket's
// reduction stays one equal-count collective launched when backward produces it, whereas a
// global split would cut buckets at rank boundaries and need a reduce per owning rank per
// bucket (unequal counts, which ncclReduceScatter cannot do). Cost: a bucket whose size is not a
// multiple of R needs one extra small collective for its tail.
// With one rank ZeRO-1 is stage 0 (nothing to shard).
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
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"
#include "trainer/optimizer.h"
#include "trainer/zero_shard.h"

namespace headroom {

// The communicator for data-parallel training on `device` from the train block of a validated
// config: train.comm as CreateCommunicator (comm/create_communicator.h) takes it, except that
// "auto" picks NCCL when CUDA tensors are trained under a launcher (mpirun, srun); collectives
// have the deadline train.comm_timeout_s (comm/watchdog.h). Errors name the setting.
// Collective for "mpi" and "nccl".
[[nodiscard]] absl::StatusOr<std::unique_ptr<Communicator>> CreateDataParallelCommunicator(
    const TrainConfig& train, DeviceKind device);

// `comm` when not null, else a communicator created by CreateDataParallelCommunicator(train,
// device) and kept in `*owned`. When that creation fails under a launcher (mpirun, srun) the job
// is ended on every rank with its message (AbortJob: every rank fails alike, but the launcher's
// job must still end); otherwise the error is returned. For RunOnDataParallelRanks.
[[nodiscard]] absl::StatusOr<Communicator*> DataParallelCommunicatorOrCreate(
    Communicator* comm, const TrainConfig& train, DeviceKind device,
    std::unique_ptr<Communicator>* owned);

// Runs `run(Communicator&)` (returning absl::StatusOr<R>) on this process's data-parallel rank
// and returns its result: the job body of `headroom train` and `headroom finetune`.
//   - The ranks are `comm` (not owned) when not null, else the communicator train.comm chooses
//     for `device` (DataParallelCommunicatorOrCreate), which lives for the call; failing to
//     create it ends the job under a launcher, else is returned.
//   - When `run` fails on one rank of several, the job is ended with that rank's error
//     (Communicator::Abort: MPI_Abort, NCCL communicators aborted first; it does not return),
//     since the other ranks would otherwise wait forever in their next collective: the first
//     error is the one every rank's launcher reports. With one rank the error is returned.
// Example:
//   return RunOnDataParallelRanks(options.comm, options.config.train(), options.device,
//                                 [&](Communicator& c) { return Trainer(options, c).Run(); });
template <typename Run>
auto RunOnDataParallelRanks(Communicator* comm, const TrainConfig& train, DeviceKind device,
                            Run&& run) -> decltype(run(*comm)) {
  std::unique_ptr<Communicator> owned;
  absl::StatusOr<Communicator*> ranks =
      DataParallelCommunicatorOrCreate(comm, train, device, &owned);
  if (!ranks.ok()) return ranks.status();
  auto result = run(**ranks);
  if (!result.ok() && (*ranks)->size() > 1) (*ranks)->Abort(result.status());
  return result;
}

// The tensors (indices into layout.tensors()) whose gradients are final when Model::Backward's
// hook runs with `layer`, at [layer + 1]: [0] the embeddings (hook -1), [l + 1] layer l,
// [num_layers + 1] the output heads (hook num_layers). For marking GradientBuckets ready.
std::vector<std::vector<int>> BackwardHookTensors(const ParameterLayout& layout, int num_layers);

// train.comm_bucket_mb in bytes (clamped so that a huge value means one bucket).
int64_t BucketBytesFromMb(double mb);

struct DataParallelOptions {
  // A bucket closes once it holds at least this many bytes (GradientBucketsOptions).
  int64_t bucket_bytes = 25 * 1024 * 1024;
  // 0: every rank reduces and updates the whole buffer; 1: ZeRO-1 (see the file comment).
  int zero_stage = 0;
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
  // but the tensors are on the host (e.g. train.comm=nccl with --device=cpu), or for a
  // zero_stage other than 0 or 1. With ZeRO-1 the optimizer is created afterwards, from
  // optimizer_shard().
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataParallel>> Create(
      Communicator* comm, Ops<float>* ops, TrainableModel<float>* model,
      const DataParallelOptions& options = {});

  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Whether there is anything to reduce (more than one rank).
  bool active() const { return buckets_ != nullptr; }
  // ZeRO-1 over more than one rank: the optimizer state is sharded.
  bool sharded() const { return sharded_; }
  // Whether gradients go through a host copy (device tensors over a host communicator).
  bool staging() const { return staging_; }
  Communicator& comm() const { return *comm_; }
  // The communicator for host buffers (losses, checksums, broadcasts of host copies, timings):
  // comm() itself, or for NCCL, whose collectives need device buffers, the MPI communicator it
  // was started with (same ranks).
  Communicator& host_comm() const { return *host_comm_; }

  // The hook for the Backward whose gradients complete the step (the last micro-batch's);
  // empty with one rank. Errors are kept for hook_status().
  const TrainableModel<float>::BackwardHook& hook() const { return hook_; }
  // The first error of the hook in this step (a bucket launch), else OK.
  const absl::Status& hook_status() const { return hook_status_; }

  // After the step's last Backward: waits for backward's work (the compute time is measured
  // from `compute_start` to then), launches and waits for every bucket, and copies a staged
  // gradient back to the device. Then model->grads() holds the average over the ranks (ZeRO-1:
  // shard_grads() holds the average of the shard).
  [[nodiscard]] absl::StatusOr<DataParallelStepStats> Finish(Clock::time_point compute_start);

  // ---- ZeRO-1 (all of these are for stage 0 too, where they are the identity or no-ops) ----
  // The gradient the optimizer reads after Finish(): shard_grads(), else model->grads().
  const float* optimizer_grads() const;
  // The rank's shard (PlanZeroShard of the buckets; empty with one rank).
  const ZeroShard& shard() const { return shard_; }
  // Device buffer of shard().numel elements: the reduced gradient of the shard (sharded only).
  float* shard_grads() const { return shard_grads_; }
  // What the optimizer needs to update the shard only (ranges, the all-reduce of its partial
  // sums over host_comm(), the model's gradient buffer as LAMB's workspace); empty (whole
  // buffer) when not sharded.
  OptimizerShard<float> optimizer_shard();
  // After the optimizer: every rank's updated shard to every rank (in place in
  // model->params()). No-op when not sharded.
  [[nodiscard]] absl::Status GatherParameters();
  // The full flat state (layout total elements) from every rank's compact `shard` (e.g. the
  // moments from Optimizer::ExportState), on every rank; `shard` itself when not sharded.
  // Collective (host_comm()).
  [[nodiscard]] absl::StatusOr<std::vector<float>> GatherShards(std::vector<float> shard);
  // The rank's compact shard of a full flat state (its ranges, concatenated); `full` itself
  // when not sharded.
  std::vector<float> ShardOf(std::vector<float> full) const;
  // Bytes this object allocated: the shard gradient and the host staging copies.
  int64_t allocated_bytes() const;

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
  absl::Status SetUpShard();
  // ZeRO-1's launch of bucket k: the reduce-scatter of its chunks and the tail's all-reduce.
  absl::StatusOr<CommHandle> LaunchReduceScatter(int k);
  // The all-gather of bucket k's chunks of `params` and the sum of its tail (zero on all
  // ranks but the last), on `comm`.
  absl::StatusOr<CommHandle> LaunchAllGather(Communicator& comm, float* params, int k) const;

  Communicator* comm_ = nullptr;
  Communicator* host_comm_ = nullptr;
  Ops<float>* ops_ = nullptr;
  TrainableModel<float>* model_ = nullptr;
  bool staging_ = false;
  std::vector<float> staged_;  // host copy of the gradients when staging
  float* reduce_buffer_ = nullptr;
  std::unique_ptr<GradientBuckets> buckets_;
  std::vector<std::vector<int>> hook_tensors_;  // Backward hook layer + 1 -> tensor indices
  TrainableModel<float>::BackwardHook hook_;
  absl::Status hook_status_;
  // ZeRO-1.
  bool sharded_ = false;
  ZeroShard shard_;
  float* shard_grads_ = nullptr;     // device (ops_), shard_.numel elements
  std::vector<float> shard_staged_;  // host copy the reduce-scatter lands in when staging
  float* shard_reduce_ = nullptr;    // where it lands: shard_staged_ or shard_grads_
};

}  // namespace headroom

#endif  // HEADROOM_TRAINER_DATA_PARALLEL_H_
