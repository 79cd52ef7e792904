// LayerNorm forward and backward over the last dimension.
//
// Statistics are accumulated in double (two passes: mean, then the centred variance) so float
// rows of a few thousand elements keep full precision. Backward, with xhat = (x - mean) * rstd
// and g = dy * gamma:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dgamma += sum_rows dy * xhat,   dbeta += sum_rows dy.
// The parameter gradients are computed FIRST, over column blocks (one thread per block, rows in
// order: deterministic), because dx may alias dy and would overwrite it.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {

template <typename T>
void CpuOps<T>::LayerNormForward(const T* x, const T* gamma, const T* beta, int64_t rows, int cols,
                                 T eps, T* y, T* mean, T* rstd) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / 4 / std::max(cols, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      double sum = 0;
      for (int c = 0; c < cols; ++c) sum += xr[c];
      const double mu = sum / cols;
      double sq = 0;
      for (int c = 0; c < cols; ++c) {
        const double d = xr[c] - mu;
        sq += d * d;
      }
      const double rs = 1.0 / std::sqrt(sq / cols + static_cast<double>(eps));
      const T mu_t = static_cast<T>(mu), rs_t = static_cast<T>(rs);
      T* yr = y + r * cols;
      for (int c = 0; c < cols; ++c) yr[c] = (xr[c] - mu_t) * rs_t * gamma[c] + beta[c];
      mean[r] = mu_t;
      rstd[r] = rs_t;
    }
  });
}

template <typename T>
void CpuOps<T>::LayerNormBackward(const T* dy, const T* x, const T* gamma, const T* mean,
                                  const T* rstd, int64_t rows, int cols, T* dx, T* dgamma,
                                  T* dbeta) {
  // Parameter gradients, column blocks.
  constexpr int kBlock = 32;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  const int64_t pgrain =
      std::max<int64_t>(1, kElementwiseGrain / 4 / std::max<int64_t>(rows * kBlock, 1));
  pool_.ParallelFor(blocks, pgrain, [&](int64_t lo, int64_t hi) {
    double dg[kBlock], db[kBlock];
    for (int64_t blk = lo; blk < hi; ++blk) {
      const int c0 = static_cast<int>(blk * kBlock);
      const int w = std::min(kBlock, cols - c0);
      std::fill(dg, dg + w, 0.0);
      std::fill(db, db + w, 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const T* dyr = dy + r * cols + c0;
        const T* xr = x + r * cols + c0;
        const T mu = mean[r], rs = rstd[r];
        for (int c = 0; c < w; ++c) {
          dg[c] += static_cast<double>(dyr[c]) * ((xr[c] - mu) * rs);
          db[c] += dyr[c];
        }
      }
      for (int c = 0; c < w; ++c) {
        dgamma[c0 + c] = static_cast<T>(dgamma[c0 + c] + dg[c]);
        dbeta[c0 + c] = static_cast<T>(dbeta[c0 + c] + db[c]);
      }
    }
  });

  // Input gradient, rows.
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / 4 / std::max(cols, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* dyr = dy + r * cols;
      const T* xr = x + r * cols;
      const T mu = mean[r], rs = rstd[r];
      double sum_g = 0, sum_gx = 0;
      for (int c = 0; c < cols; ++c) {
        const double g = static_cast<double>(dyr[c]) * gamma[c];
        sum_g += g;
        sum_gx += g * ((xr[c] - mu) * rs);
      }
      const T mg = static_cast<T>(sum_g / cols), mgx = static_cast<T>(sum_gx / cols);
      T* dxr = dx + r * cols;
      for (int c = 0; c < cols; ++c) {
        const T xhat = (xr[c] - mu) * rs;
        dxr[c] = rs * (dyr[c] * gamma[c] - mg - xhat * mgx);
      }
    }
  });
}

template <typename T>
void CpuOps<T>::LayerNormInputFromOutput(const T* y, const T* gamma, const T* beta, const T* mean,
                                         const T* rstd, int64_t rows, int cols, T* x) {
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max(cols, 1));
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* yr = y + r * cols;
      T* xr = x + r * cols;
      const T inv_rstd = T(1) / rstd[r];
      for (int c = 0; c < cols; ++c) xr[c] = (yr[c] - beta[c]) / gamma[c] * inv_rstd + mean[r];
    }
  });
}

#define HR_INSTANTIATE(T)                                                                          \
  template void CpuOps<T>::LayerNormForward(const T*, const T*, const T*, int64_t, int, T, T*, T*, \
                                            T*);                                                   \
  template void CpuOps<T>::LayerNormBackward(const T*, const T*, const T*, const T*, const T*,     \
                                             int64_t, int, T*, T*, T*);                            \
  template void CpuOps<T>::LayerNormInputFromOutput(const T*, const T*, const T*, const T*,        \
                                                    const T*, int64_t, int, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
