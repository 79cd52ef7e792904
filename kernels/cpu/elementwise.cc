// Elementwise ops (Fill, Scale, Add, Axpy) and the bias ops (AddBias, BiasBackward).
//
// These are memory-bound loops the compiler vectorises; threads only pay above
// kElementwiseGrain elements. BiasBackward splits the columns (not the rows) between threads so
// each dbias element is summed by one thread in row order: deterministic for any thread count.
// Its float column block is compiled per ISA level (target_clones): the build targets generic
// x86-64, where 64 double accumulators do not fit the 16 SSE registers and live in memory; with
// AVX-512 they are 8 registers. Same additions in the same order, so the same bits.
#include <algorithm>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

// Columns per BiasBackward block (a few cache lines of a row).
constexpr int kBiasBlock = 64;

// dbias[c0 + c] += sum_r dy[r, c0 + c] for c < w, in double, rows in order.
template <typename T>
[[gnu::always_inline]] inline void BiasBlock(const T* dy, int64_t rows, int cols, int c0, int w,
                                             T* dbias) {
  double acc[kBiasBlock];  // double: a long column sum in float loses ~sqrt(rows) ulps
  std::fill(acc, acc + kBiasBlock, 0.0);
  if (w == kBiasBlock) {  // constant trip count: the accumulators stay in registers
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = dy + r * cols + c0;
      for (int c = 0; c < kBiasBlock; ++c) acc[c] += row[c];
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = dy + r * cols + c0;
      for (int c = 0; c < w; ++c) acc[c] += row[c];
    }
  }
  for (int c = 0; c < w; ++c) dbias[c0 + c] = static_cast<T>(dbias[c0 + c] + acc[c]);
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void BiasBlockFloat(
    const float* dy, int64_t rows, int cols, int c0, int w, float* dbias) {
  BiasBlock(dy, rows, cols, c0, w, dbias);
}

void BiasBlockOf(const float* dy, int64_t rows, int cols, int c0, int w, float* dbias) {
  BiasBlockFloat(dy, rows, cols, c0, w, dbias);
}
void BiasBlockOf(const double* dy, int64_t rows, int cols, int c0, int w, double* dbias) {
  BiasBlock(dy, rows, cols, c0, w, dbias);
}

}  // namespace

template <typename T>
void CpuOps<T>::Fill(T* x, int64_t n, T value) {
  pool_.ParallelFor(n, kElementwiseGrain,
                    [&](int64_t b, int64_t e) { std::fill(x + b, x + e, value); });
}

template <typename T>
void CpuOps<T>::Scale(T* x, int64_t n, T alpha) {
  pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= alpha;
  });
}

template <typename T>
void CpuOps<T>::Add(const T* a, const T* b, T* out, int64_t n) {
  pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
  });
}

template <typename T>
void CpuOps<T>::Axpy(T alpha, const T* x, T* y, int64_t n) {
  pool_.ParallelFor(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] += alpha * x[i];
  });
}

template <typename T>
void CpuOps<T>::AddBias(T* x, const T* bias, int64_t rows, int cols) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max(cols, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      T* row = x + r * cols;
      for (int c = 0; c < cols; ++c) row[c] += bias[c];
    }
  });
}

template <typename T>
void CpuOps<T>::BiasBackward(const T* dy, int64_t rows, int cols, T* dbias) {
  // Column blocks per thread; rows in order inside a block.
  const int64_t blocks = (cols + kBiasBlock - 1) / kBiasBlock;
  const int64_t grain =
      std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(rows * kBiasBlock, 1));
  pool_.ParallelFor(blocks, grain, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int c0 = static_cast<int>(blk * kBiasBlock);
      BiasBlockOf(dy, rows, cols, c0, std::min(kBiasBlock, cols - c0), dbias);
    }
  });
}

#define HR_INSTANTIATE(T)                                        \
  template void CpuOps<T>::Fill(T*, int64_t, T);                 \
  template void CpuOps<T>::Scale(T*, int64_t, T);                \
  template void CpuOps<T>::Add(const T*, const T*, T*, int64_t); \
  template void CpuOps<T>::Axpy(T, const T*, T*, int64_t);       \
  template void CpuOps<T>::AddBias(T*, const T*, int64_t, int);  \
  template void CpuOps<T>::BiasBackward(const T*, int64_t, int, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
