// Singular values through OpenBLAS's LAPACK (dgesdd_, values only) and the rank measures; see
// linalg.h.
#include "analysis/linalg.h"

#include <algorithm>
#include <cfloat>
#include <cstddef>

#include "absl/strings/str_cat.h"

// Reference LAPACK, compiled by gfortran: every argument by pointer, and the length of each
// CHARACTER argument passed as a trailing hidden size_t (gfortran >= 8's convention; passing it
// keeps the call well-defined rather than leaving LAPACK to read a missing argument).
extern "C" void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda,
                        double* s, double* u, const int* ldu, double* vt, const int* ldvt,
                        double* work, const int* lwork, int* iwork, int* info, size_t jobz_len);

namespace headroom {

absl::StatusOr<std::vector<double>> SingularValues(const double* a, int rows, int cols) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SingularValues: empty matrix ", rows, " x ", cols));
  }
  // Row-major rows x cols == column-major cols x rows (the transpose: same singular values).
  const int m = cols, n = rows, lda = cols, one = 1;
  std::vector<double> work_a(a, a + static_cast<size_t>(rows) * cols);  // dgesdd overwrites A
  std::vector<double> s(std::min(rows, cols));
  std::vector<int> iwork(8 * std::min(rows, cols));
  double dummy = 0, query = 0;
  int lwork = -1, info = 0;
  dgesdd_("N", &m, &n, work_a.data(), &lda, s.data(), &dummy, &one, &dummy, &one, &query, &lwork,
          iwork.data(), &info, 1);
  if (info != 0) return absl::InternalError(absl::StrCat("dgesdd workspace query: info=", info));
  lwork = static_cast<int>(query) + 1;
  std::vector<double> work(lwork);
  dgesdd_("N", &m, &n, work_a.data(), &lda, s.data(), &dummy, &one, &dummy, &one, work.data(),
          &lwork, iwork.data(), &info, 1);
  if (info != 0) {
    return absl::InternalError(absl::StrCat("dgesdd failed on a ", rows, " x ", cols,
                                            " matrix (info=", info,
                                            "; a NaN/Inf entry or no convergence)"));
  }
  return s;
}

int NumericalRank(const std::vector<double>& s, double rtol, int rows, int cols) {
  if (s.empty() || s[0] <= 0) return 0;
  const double tol =
      rtol > 0 ? rtol * s[0] : s[0] * static_cast<double>(std::max(rows, cols)) * DBL_EPSILON;
  int r = 0;
  for (double v : s) r += v > tol ? 1 : 0;
  return r;
}

double StableRank(const std::vector<double>& s) {
  if (s.empty() || s[0] <= 0) return 0;
  double sum = 0;
  for (double v : s) sum += v * v;
  return sum / (s[0] * s[0]);
}

}  // namespace headroom
