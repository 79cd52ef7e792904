// GradientBuckets: bucketed all-reduce of the flat gradient buffer, overlapped with backward.
//
// The parameters' gradients live in one flat fp32 buffer (model/parameter_layout.h). Backward
// produces them back to front: output heads first, then layer L-1 down to layer 0, then the
// embeddings (whose token table is also the tied decoder's, so it is finished last). The
// buckets are therefore cut from the END of the buffer: tensors in decreasing offset order are
// grouped until a bucket holds at least `bucket_bytes` (default 25 MB, as PyTorch DDP), so
// bucket 0 holds the last tensors of the layout and each bucket is one contiguous range that is
// reduced in place, without packing. A tensor bigger than a bucket gets a bucket of its own.
//
// During backward the caller marks tensors (or whole layers) ready as their gradients are
// final. A bucket's all-reduce starts as soon as all its tensors are ready AND every earlier
// bucket has started: collectives must be issued in the same order on every rank, and a rank
// must not launch bucket 3 before bucket 2 just because its layers finished in another order
// (it would pair with a different bucket on the other ranks). WaitAll() launches whatever is
// left (tensors never marked count as ready then, so calling only WaitAll() is the
// no-overlap baseline), waits for every bucket, and readies the object for the next step.
//
// Progress: each MarkReady polls the buckets in flight (CommRequest::Test), which is what
// makes MPI advance them while backward computes (comm/mpi_communicator.h); Progress() does
// the same for callers that want to poll inside a long layer.
//
// Gradient accumulation: mark tensors only during the last micro-batch's backward; in the
// others, do not touch the object (nothing is reduced until the last one).
//
// Device buffers: with a NcclCommunicator `grads` is device memory and a launch is ordered
// after the work already enqueued on the caller's stream, so mark a tensor ready right after
// enqueuing the kernel that finishes its gradient.
//
// Not thread-safe; use it from the thread that drives backward (the MPI thread).
//
// What a bucket's collective is can be replaced (GradientBucketsOptions::launch): ZeRO-1
// (trainer/data_parallel.h) reduce-scatters each bucket into the ranks' shards instead of
// all-reducing it in place; the order, readiness and progress rules stay the same.
//
// Example:
//   std::vector<GradientTensor> tensors;
//   for (const TensorSpec& t : layout.tensors()) tensors.push_back({t.offset, t.numel, t.layer});
//   HR_ASSIGN_OR_RETURN(auto buckets, GradientBuckets::Create(comm, grads, tensors, {}));
//   for (int layer = L - 1; layer >= 0; --layer) {
//     BackwardLayer(layer);
//     HR_RETURN_IF_ERROR(buckets->MarkLayerReady(layer));   // may start all-reduces
//   }
//   ...
//   HR_RETURN_IF_ERROR(buckets->WaitAll());                 // grads now hold the average
//   ClipAndStep(grads);
#ifndef HEADROOM_COMM_GRADIENT_BUCKETS_H_
#define HEADROOM_COMM_GRADIENT_BUCKETS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "comm/communicator.h"

namespace headroom {

// One gradient tensor: elements [offset, offset + numel) of the flat buffer, and its layer
// (-1 for embeddings and heads), as in TensorSpec.
struct GradientTensor {
  int64_t offset = 0;
  int64_t numel = 0;
  int layer = -1;
};

// One bucket: elements [begin, end) of the flat buffer, reduced with one all-reduce.
struct GradientBucket {
  int64_t begin = 0;
  int64_t end = 0;
  std::vector<int> tensors;  // indices into the tensor list, in decreasing offset order
  int64_t bytes() const { return (end - begin) * static_cast<int64_t>(sizeof(float)); }
};

struct GradientBucketsOptions {
  // A bucket is closed once it holds at least this many bytes.
  int64_t bucket_bytes = 25 * 1024 * 1024;
  // kAverage for data-parallel gradients; kSum when the loss is already divided by the global
  // batch.
  ReduceOp op = ReduceOp::kAverage;
  // How bucket k (an index into buckets()) is reduced: empty (the default) all-reduces its range
  // of `grads` in place with `op`; otherwise this starts the bucket's collectives and returns
  // one handle for them. Called in bucket order, the same on every rank.
  std::function<absl::StatusOr<CommHandle>(int bucket)> launch = nullptr;
};

// Counters since construction or ResetStats(); wait_seconds is communication the overlap did
// not hide (time the caller was blocked in WaitAll).
struct GradientBucketStats {
  int64_t steps = 0;  // completed WaitAll calls
  int64_t buckets_reduced = 0;
  int64_t bytes_reduced = 0;     // payload bytes all-reduced by this rank
  double wait_seconds = 0;       // blocked in WaitAll
  double last_wait_seconds = 0;  // blocked in the latest WaitAll
};

class GradientBuckets {
 public:
  // The buckets for `tensors` (any order; they must not overlap, offsets and sizes >= 0), in
  // launch order: bucket 0 ends at the highest offset. InvalidArgument for bad tensors or
  // bucket_bytes <= 0. Pure: the scaling model uses it too.
  [[nodiscard]] static absl::StatusOr<std::vector<GradientBucket>> Plan(
      const std::vector<GradientTensor>& tensors, int64_t bucket_bytes);

  // `comm` and `grads` (host or device memory as comm->device_buffers() says, at least as long
  // as the highest tensor end) must outlive the object.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GradientBuckets>> Create(
      Communicator* comm, float* grads, std::vector<GradientTensor> tensors,
      const GradientBucketsOptions& options = {});

  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Tensor `index` (into the list given to Create) has its final gradient. Starts every bucket
  // that is now ready and whose predecessors have started. FailedPrecondition if the tensor was
  // already marked this step, OutOfRange for a bad index; a launch failure is returned too.
  [[nodiscard]] absl::Status MarkReady(int index);
  // MarkReady for every tensor of `layer` (-1: embeddings and heads alike; mark those by index
  // when they finish at different times). NotFound if no tensor has that layer.
  [[nodiscard]] absl::Status MarkLayerReady(int layer);
  // Polls the buckets in flight so that MPI progresses them.
  [[nodiscard]] absl::Status Progress();
  // Launches the remaining buckets, waits for all, and resets for the next step. The first
  // error of any bucket is returned (the others are still waited for).
  [[nodiscard]] absl::Status WaitAll();

  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  // Buckets started in the current step (they start in index order).
  int launched() const { return next_launch_; }
  const GradientBucketStats& stats() const { return stats_; }
  void ResetStats() { stats_ = {}; }

 private:
  GradientBuckets() = default;
  absl::Status LaunchReady();

  Communicator* comm_ = nullptr;
  float* grads_ = nullptr;
  GradientBucketsOptions options_;
  std::vector<GradientTensor> tensors_;
  std::vector<GradientBucket> buckets_;
  std::vector<int> bucket_of_;        // tensor -> bucket
  std::vector<bool> ready_;           // tensor marked this step
  std::vector<int> pending_;          // bucket -> tensors not yet ready
  std::vector<CommHandle> inflight_;  // bucket -> handle (null until launched)
  int next_launch_ = 0;
  GradientBucketStats stats_;
};

}  // namespace headroom

#endif  // HEADROOM_COMM_GRADIENT_BUCKETS_H_
