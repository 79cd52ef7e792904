// Dot: the one reduction (sum of squares for the gradient norm is Dot(g, g)).
//
// Accumulated in double (ops.h), per thread over a fixed chunking, partials added in chunk order.
// With the chunking fixed by n and the thread count, the result is reproducible run to run.
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

// Four independent accumulators let the compiler overlap the adds (a single double chain is
// latency-bound at one add per 4 cycles).
template <typename T>
double DotRange(const T* a, const T* b, int64_t lo, int64_t hi) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = lo;
  for (; i + 4 <= hi; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  for (; i < hi; ++i) s0 += static_cast<double>(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

template <typename T>
void CpuOps<T>::Dot(const T* a, const T* b, int64_t n, T* out) {
  // One chunk per thread, but short vectors in one chunk on the caller.
  const int64_t parts = n >= kElementwiseGrain ? pool_.num_threads() : 1;
  std::vector<double> partial(parts, 0.0);
  pool_.ParallelFor(parts, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t)
      partial[t] = DotRange(a, b, n * t / parts, n * (t + 1) / parts);
  });
  double sum = 0;
  for (double p : partial) sum += p;
  *out = static_cast<T>(sum);
}

template void CpuOps<float>::Dot(const float*, const float*, int64_t, float*);
template void CpuOps<double>::Dot(const double*, const double*, int64_t, double*);

}  // namespace headroom
