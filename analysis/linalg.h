// Small dense linear algebra for the analysis tools: singular values through LAPACK, and the two
// rank measures the attention diagnostics report.
//
// LAPACK comes from OpenBLAS (Debian's libopenblas exports the reference LAPACK symbols, e.g.
// dgesdd_), declared here by its Fortran prototype because Debian ships no lapacke.h with it.
// Matrices are row-major double arrays; a row-major rows x cols matrix is the column-major
// cols x rows matrix of its transpose, which has the same singular values, so no copy is
// transposed.
//
// Rank conventions (documented once, used everywhere):
//   numerical rank  = #{ sigma_i > tol }, tol = rtol * sigma_max for rtol > 0, or NumPy's
//                     matrix_rank default sigma_max * max(rows, cols) * DBL_EPSILON for rtol <= 0;
//                     0 for the zero matrix.
//   stable rank     = ||A||_F^2 / ||A||_2^2 = sum_i sigma_i^2 / sigma_max^2 (0 for the zero
//                     matrix); a smooth lower bound of the rank: 1 <= stable rank <= rank.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::vector<double> s, SingularValues(a.data(), 8, 8));
//   int r = NumericalRank(s, /*rtol=*/1e-6, 8, 8);
//   double sr = StableRank(s);
#ifndef HEADROOM_ANALYSIS_LINALG_H_
#define HEADROOM_ANALYSIS_LINALG_H_

#include <vector>

#include "absl/status/statusor.h"

namespace headroom {

// The min(rows, cols) singular values of the row-major rows x cols matrix `a`, in descending
// order (LAPACK dgesdd, values only). `a` is not modified. InvalidArgument for empty shapes,
// Internal if LAPACK reports a failure (non-convergence, or a NaN/Inf entry).
[[nodiscard]] absl::StatusOr<std::vector<double>> SingularValues(const double* a, int rows,
                                                                 int cols);

// Numerical rank of a matrix with singular values `s` (descending) and shape rows x cols; see
// the file comment for the threshold.
int NumericalRank(const std::vector<double>& s, double rtol, int rows, int cols);

// Stable rank sum s_i^2 / s_0^2 of singular values `s` (descending).
double StableRank(const std::vector<double>& s);

}  // namespace headroom

#endif  // HEADROOM_ANALYSIS_LINALG_H_
