// Host "device" memory for the CPU backend: aligned, zero-initialised allocations and memcpy.
//
// 64-byte alignment keeps every buffer on its own cache lines and lets vectorised loops use
// aligned loads at the start of a buffer. Ops run synchronously, so the copies need no fences.
#include <cstdlib>
#include <cstring>

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
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) std::abort();  // out of host memory: nothing sensible to return
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
