// Embedding lookup and row gathers, and their scatter-add backwards.
//
// Forward gathers are row copies split over the output rows. The scatter-adds (EmbeddingBackward,
// ScatterAddRows) must be deterministic (ops.h: rows with the same id summed in increasing i
// order), so threads split the COLUMNS: each thread walks every i in order for its own column
// range. No atomics, no sort, the same bits for any thread count. Ids must be >= 0 and below the
// table's row count (asserted for the sign; the row count is not passed).
#include <algorithm>
#include <cassert>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

// Columns per chunk of a scatter-add: at least a cache line of floats.
constexpr int64_t kColumnGrain = 64;

template <typename T>
void ScatterAdd(ThreadPool& pool, const T* src, const int32_t* idx, int64_t m, int d, T* dst) {
  // Split columns only when there is enough work to pay for it.
  const int64_t grain = m * d >= kElementwiseGrain ? kColumnGrain : d;
  pool.ParallelFor(d, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < m; ++i) {
      assert(idx[i] >= 0);
      const T* s = src + i * d;
      T* t = dst + static_cast<int64_t>(idx[i]) * d;
      for (int64_t c = c0; c < c1; ++c) t[c] += s[c];
    }
  });
}

}  // namespace

template <typename T>
void CpuOps<T>::EmbeddingForward(const int32_t* ids, const T* table, int64_t n, int d, T* out,
                                 bool accumulate) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max(d, 1));
  pool_.ParallelFor(n, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      assert(ids[i] >= 0);
      const T* row = table + static_cast<int64_t>(ids[i]) * d;
      T* o = out + i * d;
      if (accumulate) {
        for (int c = 0; c < d; ++c) o[c] += row[c];
      } else {
        std::memcpy(o, row, sizeof(T) * static_cast<size_t>(d));
      }
    }
  });
}

template <typename T>
void CpuOps<T>::EmbeddingBackward(const int32_t* ids, const T* dout, int64_t n, int d, T* dtable) {
  ScatterAdd(pool_, dout, ids, n, d, dtable);
}

template <typename T>
void CpuOps<T>::GatherRows(const T* src, const int32_t* idx, int64_t m, int d, T* dst) {
  EmbeddingForward(idx, src, m, d, dst, /*accumulate=*/false);
}

template <typename T>
void CpuOps<T>::ScatterAddRows(const T* src, const int32_t* idx, int64_t m, int d, T* dst) {
  ScatterAdd(pool_, src, idx, m, d, dst);
}

#define HR_INSTANTIATE(T)                                                                      \
  template void CpuOps<T>::EmbeddingForward(const int32_t*, const T*, int64_t, int, T*, bool); \
  template void CpuOps<T>::EmbeddingBackward(const int32_t*, const T*, int64_t, int, T*);      \
  template void CpuOps<T>::GatherRows(const T*, const int32_t*, int64_t, int, T*);             \
  template void CpuOps<T>::ScatterAddRows(const T*, const int32_t*, int64_t, int, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
