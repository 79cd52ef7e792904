// Host "device" memory for the CPU backend: aligned, zero-initialised allocations and memcpy. A
// failed allocation returns nullptr and is recorded in status() (kernels/ops.h).
//
// 64-byte alignment keeps every buffer on its own cache lines and lets vectorised loops use
// aligned loads at the start of a buffer. Ops run synchronously, so the copies need no fences.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

constexpr size_t kAlignment = 64;

}  // namespace

template <typename T>
void* CpuOps<T>::AllocBytes(size_t bytes) {
  // aligned_alloc wants a size that is a multiple of the alignment (and > 0 for a unique pointer).
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  // After a failure nothing is allocated any more: the caller is going to stop (status()), and
  // a model whose first buffer did not fit should not take the memory of its other buffers.
  if (!status_.ok()) return nullptr;
  void* p = bytes > SIZE_MAX - kAlignment ? nullptr : std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    // Out of host memory (or a process limit, ulimit -v): record it for the caller to report.
    if (status_.ok()) {
      status_ = absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate ", bytes, " bytes of host memory (", std::strerror(ENOMEM), ")"));
    }
    return nullptr;
  }
  std::memset(p, 0, rounded);
  return p;
}

template <typename T>
void CpuOps<T>::Free(void* p) {
  std::free(p);
}

template <typename T>
void CpuOps<T>::CopyToDevice(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memmove(dst, src, bytes);
}

template <typename T>
void CpuOps<T>::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memmove(dst, src, bytes);
}

template <typename T>
void CpuOps<T>::CopyDevice(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memmove(dst, src, bytes);
}

#define HR_INSTANTIATE(T)                                            \
  template void* CpuOps<T>::AllocBytes(size_t);                      \
  template void CpuOps<T>::Free(void*);                              \
  template void CpuOps<T>::CopyToDevice(void*, const void*, size_t); \
  template void CpuOps<T>::CopyToHost(void*, const void*, size_t);   \
  template void CpuOps<T>::CopyDevice(void*, const void*, size_t);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
