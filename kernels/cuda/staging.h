// PinnedStagingRing: asynchronous host-to-device copies out of ordinary host memory.
//
// cudaMemcpyAsync from pageable memory synchronises the stream first (the driver stages the
// data itself), so every small upload inside a training step (token ids, masks, masked
// positions) would stall the host until the GPU ran dry. Copying the bytes into pinned memory
// first makes the transfer truly asynchronous, and the caller may reuse its buffer at once
// (Ops::CopyToDevice's contract). The pinned memory is a ring: uploads take consecutive
// 256-byte aligned slices, each with an event recorded after its transfer. Before a slice's
// bytes are reused, the host waits for the events of the earlier slices it overlaps, and for
// nothing else: those transfers were enqueued a lap ago, so in a training step (a few small
// uploads per step into a ring of megabytes) they are long done and the wait returns at once;
// the host never waits for the work enqueued since.
//
// Example:
//   PinnedStagingRing ring;
//   if (!ring.Init(8 << 20, ctx)) ...;                       // error recorded in ctx.err
//   if (!ring.CopyToDevice(dst, src, bytes, ctx)) ...;       // larger than the ring: copy
//                                                            // synchronously instead
#ifndef HEADROOM_KERNELS_CUDA_STAGING_H_
#define HEADROOM_KERNELS_CUDA_STAGING_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <deque>
#include <vector>

#include "kernels/cuda/launch.h"

namespace headroom::cuda {

class PinnedStagingRing {
 public:
  PinnedStagingRing() = default;
  PinnedStagingRing(const PinnedStagingRing&) = delete;
  PinnedStagingRing& operator=(const PinnedStagingRing&) = delete;
  // Waits for nothing: the owner synchronises its stream before destroying the ring.
  ~PinnedStagingRing();

  // Allocates `capacity` bytes of pinned memory. False (recorded) on failure.
  bool Init(size_t capacity, const LaunchContext& ctx);

  // Enqueues dst <- src (bytes) on ctx.stream through the ring; src may be reused on return.
  // False, with nothing done, when bytes exceed the capacity or the ring was not initialised.
  bool CopyToDevice(void* dst, const void* src, size_t bytes, const LaunchContext& ctx);

  // Slices whose bytes were reused, each after waiting for its own transfer's event (for
  // tests: every upload of a lap after the first reuses some).
  int slice_reuses() const { return slice_reuses_; }

 private:
  char* host_ = nullptr;
  size_t capacity_ = 0;
  // A slice [begin, end) whose transfer may still be pending, and the event recorded after it.
  struct Slice {
    size_t begin = 0, end = 0;
    cudaEvent_t done = nullptr;
  };
  // Waits for, and forgets, the pending slices that overlap [begin, end); false on an error.
  bool ReleaseOverlapping(size_t begin, size_t end, const LaunchContext& ctx);
  // An event for a new slice: a released one, or a new one.
  bool TakeEvent(cudaEvent_t* event, const LaunchContext& ctx);

  size_t offset_ = 0;          // next free byte of the current lap
  std::deque<Slice> pending_;  // in upload order, so the oldest (lowest of a lap) first
  std::vector<cudaEvent_t> free_events_;
  int slice_reuses_ = 0;
};

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_STAGING_H_
