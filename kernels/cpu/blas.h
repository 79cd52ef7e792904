// Row-major CBLAS products for float and double under one name, for the CPU kernels that call
// OpenBLAS directly (gemm.cc, attention.cc). No edge-case handling: callers pass M, N, K > 0.
#ifndef HEADROOM_KERNELS_CPU_BLAS_H_
#define HEADROOM_KERNELS_CPU_BLAS_H_

#include <cblas.h>

#include "kernels/ops.h"

namespace headroom::cpu_blas {

inline CBLAS_TRANSPOSE ToCblas(Trans t) { return t == Trans::kYes ? CblasTrans : CblasNoTrans; }

inline void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ToCblas(ta), ToCblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

inline void Gemm(Trans ta, Trans tb, int M, int N, int K, double alpha, const double* A, int lda,
                 const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ToCblas(ta), ToCblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

// Runs fn with OpenBLAS on one thread (the caller parallelises over independent products with
// the pool), restoring the previous thread count afterwards.
template <typename Fn>
void WithSingleThreadedBlas(Fn&& fn) {
  const int threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  fn();
  openblas_set_num_threads(threads);
}

}  // namespace headroom::cpu_blas

#endif  // HEADROOM_KERNELS_CPU_BLAS_H_
