// Matrix products on OpenBLAS: Gemm and GemmStridedBatched (row-major CBLAS).
//
// OpenBLAS threads each product itself, so these do not use the pool. Edge cases CBLAS leaves
// unclear are handled here: an empty product (K == 0) or alpha == 0 only scales C by beta (with
// beta == 0 writing exact zeros). OpenBLAS itself honours "beta == 0 ignores C" (NaN in C does
// not leak; tests/kernels/ops_test.cc checks it), so C is not cleared before the call.
#include <algorithm>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

// M*N*K at or below which a strided batch is split over the pool rather than over OpenBLAS's
// threads (256^3: a few hundred microseconds of work per matrix).
constexpr int64_t kSmallGemmVolume = int64_t{256} * 256 * 256;

// C = beta * C over the M x N block (beta == 0 writes exact zeros).
template <typename T>
void ScaleBlock(int M, int N, T beta, T* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    T* row = C + static_cast<int64_t>(i) * ldc;
    if (beta == T(0)) {
      std::fill(row, row + N, T(0));
    } else if (beta != T(1)) {
      for (int j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

template <typename T>
void GemmOne(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
             int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) {
    ScaleBlock(M, N, beta, C, ldc);
    return;
  }
  cpu_blas::Gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace

template <typename T>
void CpuOps<T>::Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                     const T* B, int ldb, T beta, T* C, int ldc) {
  GemmOne(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename T>
void CpuOps<T>::GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A,
                                   int lda, int64_t stride_a, const T* B, int ldb, int64_t stride_b,
                                   T beta, T* C, int ldc, int64_t stride_c, int batch) {
  // Small products (attention: one per batch and head, e.g. 128x128x64) spend much of each call
  // in OpenBLAS's thread hand-off, so they run one matrix per pool thread with OpenBLAS on one
  // thread instead; big ones keep OpenBLAS's own threading.
  const bool small = static_cast<int64_t>(M) * N * K <= kSmallGemmVolume;
  const int threads = pool_.num_threads();
  if (small && threads > 1 && batch > 1) {
    cpu_blas::WithSingleThreadedBlas([&] {
      pool_.ParallelFor(batch, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          GemmOne(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                  C + i * stride_c, ldc);
        }
      });
    });
    return;
  }
  for (int i = 0; i < batch; ++i) {
    GemmOne(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
            C + i * stride_c, ldc);
  }
}

#define HR_INSTANTIATE(T)                                                                        \
  template void CpuOps<T>::Gemm(Trans, Trans, int, int, int, T, const T*, int, const T*, int, T, \
                                T*, int);                                                        \
  template void CpuOps<T>::GemmStridedBatched(Trans, Trans, int, int, int, T, const T*, int,     \
                                              int64_t, const T*, int, int64_t, T, T*, int,       \
                                              int64_t, int);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headroom
