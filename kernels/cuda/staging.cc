// PinnedStagingRing; see staging.h.
#include "kernels/cuda/staging.h"

#include <cstring>

namespace headroom::cuda {
namespace {

constexpr size_t kSliceAlign = 256;

}  // namespace

PinnedStagingRing::~PinnedStagingRing() {
  if (lap_done_ != nullptr) cudaEventDestroy(lap_done_);
  if (host_ != nullptr) cudaFreeHost(host_);
}

bool PinnedStagingRing::Init(size_t capacity, const LaunchContext& ctx) {
  void* p = nullptr;
  if (!HR_CUDA_CHECK(*ctx.err, cudaHostAlloc(&p, capacity, cudaHostAllocDefault)) ||
      !HR_CUDA_CHECK(*ctx.err, cudaEventCreateWithFlags(&lap_done_, cudaEventDisableTiming))) {
    if (p != nullptr) cudaFreeHost(p);
    return false;
  }
  host_ = static_cast<char*>(p);
  capacity_ = capacity;
  return true;
}

bool PinnedStagingRing::CopyToDevice(void* dst, const void* src, size_t bytes,
                                     const LaunchContext& ctx) {
  if (host_ == nullptr || bytes > capacity_) return false;
  size_t start = (offset_ + kSliceAlign - 1) / kSliceAlign * kSliceAlign;
  if (start + bytes > capacity_) {
    // Wrap: every copy of the lap so far must be done before its slices are overwritten.
    if (!HR_CUDA_CHECK(*ctx.err, cudaEventRecord(lap_done_, ctx.stream)) ||
        !HR_CUDA_CHECK(*ctx.err, cudaEventSynchronize(lap_done_))) {
      return false;
    }
    ++lap_waits_;
    start = 0;
  }
  std::memcpy(host_ + start, src, bytes);
  offset_ = start + bytes;
  return HR_CUDA_CHECK(
      *ctx.err, cudaMemcpyAsync(dst, host_ + start, bytes, cudaMemcpyHostToDevice, ctx.stream));
}

}  // namespace headroom::cuda
