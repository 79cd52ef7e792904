// GradientBuckets (see the header). The launch rule "ready and every earlier bucket started"
// is a single cursor (next_launch_) that only moves forward, so launches are in bucket order on
// every rank whatever order the tensors were marked in.
#include "comm/gradient_buckets.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace headroom {

absl::StatusOr<std::vector<GradientBucket>> GradientBuckets::Plan(
    const std::vector<GradientTensor>& tensors, int64_t bucket_bytes) {
  if (bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient bucket size must be positive, got ", bucket_bytes, " bytes"));
  }
  std::vector<int> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return tensors[a].offset != tensors[b].offset ? tensors[a].offset > tensors[b].offset : a > b;
  });
  for (size_t k = 0; k < order.size(); ++k) {
    const GradientTensor& t = tensors[order[k]];
    if (t.offset < 0 || t.numel < 0) {
      return absl::InvalidArgumentError(absl::StrCat("gradient tensor ", order[k], ": offset ",
                                                     t.offset, " or size ", t.numel,
                                                     " is negative"));
    }
    // order is by decreasing offset: tensor k must end at or before tensor k-1 begins.
    if (k > 0 && t.offset + t.numel > tensors[order[k - 1]].offset) {
      return absl::InvalidArgumentError(
          absl::StrCat("gradient tensors ", order[k], " and ", order[k - 1], " overlap"));
    }
  }
  std::vector<GradientBucket> buckets;
  GradientBucket current;
  for (int index : order) {
    const GradientTensor& t = tensors[index];
    if (current.tensors.empty()) current.end = t.offset + t.numel;
    current.begin = t.offset;
    current.tensors.push_back(index);
    if (current.bytes() >= bucket_bytes) {
      buckets.push_back(std::move(current));
      current = GradientBucket();
    }
  }
  if (!current.tensors.empty()) buckets.push_back(std::move(current));
  return buckets;
}

absl::StatusOr<std::unique_ptr<GradientBuckets>> GradientBuckets::Create(
    Communicator* comm, float* grads, std::vector<GradientTensor> tensors,
    const GradientBucketsOptions& options) {
  if (comm == nullptr) return absl::InvalidArgumentError("GradientBuckets: no communicator");
  std::unique_ptr<GradientBuckets> b(new GradientBuckets());
  HR_ASSIGN_OR_RETURN(b->buckets_, Plan(tensors, options.bucket_bytes));
  HR_RETURN_IF_ERROR(ValidateReduce("GradientBuckets", DataType::kFloat32, options.op));
  b->comm_ = comm;
  b->grads_ = grads;
  b->options_ = options;
  b->tensors_ = std::move(tensors);
  b->bucket_of_.assign(b->tensors_.size(), -1);
  b->ready_.assign(b->tensors_.size(), false);
  b->pending_.resize(b->buckets_.size());
  b->inflight_.resize(b->buckets_.size());
  for (size_t k = 0; k < b->buckets_.size(); ++k) {
    for (int t : b->buckets_[k].tensors) b->bucket_of_[t] = static_cast<int>(k);
    b->pending_[k] = static_cast<int>(b->buckets_[k].tensors.size());
  }
  return b;
}

GradientBuckets::~GradientBuckets() {
  // Handles wait in their destructors; waiting here keeps `grads` valid until then.
  for (CommHandle& h : inflight_) {
    if (h != nullptr) (void)h->Wait();
  }
}

absl::Status GradientBuckets::MarkReady(int index) {
  if (index < 0 || index >= static_cast<int>(tensors_.size())) {
    return absl::OutOfRangeError(
        absl::StrCat("gradient tensor ", index, " does not exist (", tensors_.size(), " tensors)"));
  }
  if (ready_[index]) {
    return absl::FailedPreconditionError(
        absl::StrCat("gradient tensor ", index, " was marked ready twice in one step"));
  }
  ready_[index] = true;
  --pending_[bucket_of_[index]];
  HR_RETURN_IF_ERROR(LaunchReady());
  return Progress();
}

absl::Status GradientBuckets::MarkLayerReady(int layer) {
  bool any = false;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].layer != layer || ready_[i]) continue;
    any = true;
    ready_[i] = true;
    --pending_[bucket_of_[i]];
  }
  if (!any) {
    return absl::NotFoundError(
        absl::StrCat("no gradient tensor of layer ", layer, " is left to mark ready"));
  }
  HR_RETURN_IF_ERROR(LaunchReady());
  return Progress();
}

absl::Status GradientBuckets::LaunchReady() {
  while (next_launch_ < static_cast<int>(buckets_.size()) && pending_[next_launch_] == 0) {
    const GradientBucket& bucket = buckets_[next_launch_];
    float* data = grads_ + bucket.begin;
    if (options_.launch) {
      HR_ASSIGN_OR_RETURN(inflight_[next_launch_], options_.launch(next_launch_));
    } else {
      HR_ASSIGN_OR_RETURN(inflight_[next_launch_],
                          comm_->AllReduceAsync(data, data, bucket.end - bucket.begin,
                                                DataType::kFloat32, options_.op));
    }
    ++next_launch_;
  }
  return absl::OkStatus();
}

absl::Status GradientBuckets::Progress() {
  for (CommHandle& h : inflight_) {
    if (h == nullptr) continue;
    HR_ASSIGN_OR_RETURN(bool done, h->Test());
    (void)done;
  }
  return absl::OkStatus();
}

absl::Status GradientBuckets::WaitAll() {
  const auto start = std::chrono::steady_clock::now();
  std::fill(pending_.begin(), pending_.end(), 0);
  absl::Status status = LaunchReady();
  for (size_t k = 0; k < inflight_.size(); ++k) {
    if (inflight_[k] == nullptr) continue;
    absl::Status s = inflight_[k]->Wait();
    if (s.ok()) {
      ++stats_.buckets_reduced;
      stats_.bytes_reduced += buckets_[k].bytes();
    } else if (status.ok()) {
      status = s;
    }
    inflight_[k].reset();
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats_.last_wait_seconds = waited;
  stats_.wait_seconds += waited;
  ++stats_.steps;
  // Ready for the next step.
  next_launch_ = 0;
  std::fill(ready_.begin(), ready_.end(), false);
  for (size_t k = 0; k < buckets_.size(); ++k) {
    pending_[k] = static_cast<int>(buckets_[k].tensors.size());
  }
  return status;
}

}  // namespace headroom
