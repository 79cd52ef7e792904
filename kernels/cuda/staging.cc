// PinnedStagingRing; see staging.h.
#include "kernels/cuda/staging.h"

#include <cstring>

namespace headroom::cuda {
namespace {

constexpr size_t kSliceAlign = 256;

}  // namespace

PinnedStagingRing::~PinnedStagingRing() {
  for (const Slice& s : pending_) cudaEventDestroy(s.done);
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  if (host_ != nullptr) cudaFreeHost(host_);
}

bool PinnedStagingRing::Init(size_t capacity, const LaunchContext& ctx) {
  void* p = nullptr;
  if (!HR_CUDA_CHECK(*ctx.err, cudaHostAlloc(&p, capacity, cudaHostAllocDefault))) return false;
  host_ = static_cast<char*>(p);
  capacity_ = capacity;
  return true;
}

bool PinnedStagingRing::CopyToDevice(void* dst, const void* src, size_t bytes,
                                     const LaunchContext& ctx) {
  if (host_ == nullptr || bytes > capacity_) return false;
  size_t start = (offset_ + kSliceAlign - 1) / kSliceAlign * kSliceAlign;
  if (start + bytes > capacity_) start = 0;  // wrap
  cudaEvent_t done = nullptr;
  if (!ReleaseOverlapping(start, start + bytes, ctx) || !TakeEvent(&done, ctx)) return false;
  std::memcpy(host_ + start, src, bytes);
  offset_ = start + bytes;
  const bool ok = HR_CUDA_CHECK(*ctx.err, cudaMemcpyAsync(dst, host_ + start, bytes,
                                                          cudaMemcpyHostToDevice, ctx.stream)) &&
                  HR_CUDA_CHECK(*ctx.err, cudaEventRecord(done, ctx.stream));
  if (!ok) {
    free_events_.push_back(done);
    return false;
  }
  pending_.push_back({start, start + bytes, done});
  return true;
}

bool PinnedStagingRing::ReleaseOverlapping(size_t begin, size_t end, const LaunchContext& ctx) {
  // Slices are taken in ring order, so the ones a new slice reaches into are the oldest.
  while (!pending_.empty() && pending_.front().begin < end && begin < pending_.front().end) {
    const Slice s = pending_.front();
    if (!HR_CUDA_CHECK(*ctx.err, cudaEventSynchronize(s.done))) return false;
    pending_.pop_front();
    free_events_.push_back(s.done);
    ++slice_reuses_;
  }
  return true;
}

bool PinnedStagingRing::TakeEvent(cudaEvent_t* event, const LaunchContext& ctx) {
  if (!free_events_.empty()) {
    *event = free_events_.back();
    free_events_.pop_back();
    return true;
  }
  return HR_CUDA_CHECK(*ctx.err, cudaEventCreateWithFlags(event, cudaEventDisableTiming));
}

}  // namespace headroom::cuda
