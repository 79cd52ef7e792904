// Singular values and rank measures against matrices whose SVD is known by construction:
// A = U diag(s) V^T with U, V orthonormal (Householder reflections), so the singular values, the
// numerical rank and the stable rank are known without any decomposition.
#include "analysis/linalg.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace headroom {
namespace {

// A random m x m orthogonal matrix: a product of m Householder reflections.
std::vector<double> RandomOrthogonal(int m, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  std::vector<double> q(m * m, 0.0);
  for (int i = 0; i < m; ++i) q[i * m + i] = 1;
  for (int r = 0; r < m; ++r) {
    std::vector<double> v(m);
    double nn = 0;
    for (double& x : v) {
      x = normal(rng);
      nn += x * x;
    }
    for (double& x : v) x /= std::sqrt(nn);
    // q = q (I - 2 v v^T)
    for (int i = 0; i < m; ++i) {
      double dot = 0;
      for (int k = 0; k < m; ++k) dot += q[i * m + k] * v[k];
      for (int k = 0; k < m; ++k) q[i * m + k] -= 2 * dot * v[k];
    }
  }
  return q;
}

// rows x cols matrix U[:, :k] diag(s) V[:, :k]^T.
std::vector<double> WithSingularValues(int rows, int cols, const std::vector<double>& s,
                                       uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::vector<double> u = RandomOrthogonal(rows, rng), v = RandomOrthogonal(cols, rng);
  std::vector<double> a(rows * cols, 0.0);
  for (size_t k = 0; k < s.size(); ++k) {
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < cols; ++j) a[i * cols + j] += u[i * rows + k] * s[k] * v[j * cols + k];
    }
  }
  return a;
}

TEST(LinalgTest, SingularValuesOfAConstructedMatrix) {
  const std::vector<double> s = {5.0, 3.0, 2.5, 1.0, 0.25};
  for (auto [rows, cols] : {std::pair{5, 5}, std::pair{7, 5}, std::pair{5, 9}}) {
    const std::vector<double> a = WithSingularValues(rows, cols, s, 42);
    const std::vector<double> got = SingularValues(a.data(), rows, cols).value();
    ASSERT_EQ(got.size(), 5u);
    for (size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(got[i], s[i], 1e-12) << rows << "x" << cols;
  }
}

TEST(LinalgTest, DiagonalAndRankOneByHand) {
  // diag(3, -4) has singular values 4, 3; the rank-one u v^T has ||u|| ||v||.
  const double diag[4] = {3, 0, 0, -4};
  std::vector<double> s = SingularValues(diag, 2, 2).value();
  EXPECT_NEAR(s[0], 4, 1e-14);
  EXPECT_NEAR(s[1], 3, 1e-14);
  const double outer[6] = {1 * 2, 1 * 2, 1 * 1, 2 * 2, 2 * 2, 2 * 1};  // u = (1, 2), v = (2, 2, 1)
  s = SingularValues(outer, 2, 3).value();
  EXPECT_NEAR(s[0], std::sqrt(5.0) * 3.0, 1e-13);
  EXPECT_NEAR(s[1], 0, 1e-13);
  EXPECT_EQ(NumericalRank(s, 0, 2, 3), 1);
  EXPECT_NEAR(StableRank(s), 1.0, 1e-12);
}

TEST(LinalgTest, NumericalRankOfALowRankMatrixAndItsThresholds) {
  // Rank 3 in a 12 x 12 matrix: the other singular values are rounding noise (~1e-15).
  const std::vector<double> s = {4.0, 2.0, 1e-3};
  const std::vector<double> a = WithSingularValues(12, 12, s, 7);
  const std::vector<double> got = SingularValues(a.data(), 12, 12).value();
  EXPECT_EQ(NumericalRank(got, 0, 12, 12), 3);     // NumPy's default threshold
  EXPECT_EQ(NumericalRank(got, 1e-6, 12, 12), 3);  // relative 1e-6
  EXPECT_EQ(NumericalRank(got, 1e-2, 12, 12), 2);  // 1e-3 / 4 is below 1e-2
  EXPECT_NEAR(StableRank(got), (16.0 + 4.0 + 1e-6) / 16.0, 1e-12);
}

TEST(LinalgTest, ZeroMatrixAndErrors) {
  const std::vector<double> zero(12, 0.0);
  const std::vector<double> s = SingularValues(zero.data(), 3, 4).value();
  EXPECT_EQ(NumericalRank(s, 1e-6, 3, 4), 0);
  EXPECT_EQ(StableRank(s), 0.0);
  EXPECT_FALSE(SingularValues(zero.data(), 0, 4).ok());
  const double bad[1] = {NAN};
  EXPECT_FALSE(SingularValues(bad, 1, 1).ok());
}

}  // namespace
}  // namespace headroom
