// PinnedStagingRing: asynchronous host-to-device copies out of ordinary host memory.
//
// cudaMemcpyAsync from pageable memory synchronises the stream first (the driver stages the
// data itself), so every small upload inside a training step (token ids, masks, masked
// positions) would stall the host until the GPU ran dry. Copying the bytes into pinned memory
// first makes the transfer truly asynchronous, and the caller may reuse its buffer at once
// (Ops::CopyToDevice's contract). The pinned memory is a ring: uploads take consecutive
// 256-byte aligned slices; when the ring wraps, the host waits once for every copy of the
// previous lap (an event), so a slice is never overwritten while its transfer may be pending.
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

#include "kernels/cuda/launch.h"

namespace headroom::cuda {

class PinnedStagingRing {
 public:
  PinnedStagingRing() = default;
  PinnedStagingRing(const PinnedStagingRing&) = delete;
  PinnedStagingRing& operator=(const PinnedStagingRing&) = delete;
  // Waits for nothing: the owner synchronises its stream before destroying the ring.
  ~PinnedStagingRing();

  // Allocates `capacity` bytes of pinned memory and the lap event. False (recorded) on failure.
  bool Init(size_t capacity, const LaunchContext& ctx);

  // Enqueues dst <- src (bytes) on ctx.stream through the ring; src may be reused on return.
  // False, with nothing done, when bytes exceed the capacity or the ring was not initialised.
  bool CopyToDevice(void* dst, const void* src, size_t bytes, const LaunchContext& ctx);

  // Times the host waited for a lap to drain (for tests: rare by design).
  int lap_waits() const { return lap_waits_; }

 private:
  char* host_ = nullptr;
  size_t capacity_ = 0;
  size_t offset_ = 0;  // next free byte of the current lap
  cudaEvent_t lap_done_ = nullptr;
  int lap_waits_ = 0;
};

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_STAGING_H_
