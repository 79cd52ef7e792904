// Theorem 1's experiment: fit one attention head to a target pattern; see rank_demo.h.
//
// Sizes are tiny (n <= a few dozen), so the products are plain loops; the optimiser is L-BFGS
// (memory 20) with Armijo backtracking, which reaches machine precision in a few hundred
// iterations when the target is reachable and plateaus at the best error it can find otherwise.
#include "analysis/rank_demo.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/linalg.h"
#include "base/status_macros.h"

namespace headroom {
namespace {

// Standard normal draws, Box-Muller over mt19937_64 (whose output sequence the C++ standard
// fixes, unlike std::normal_distribution's algorithm).
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0;
    while (u1 <= 0) u1 = Uniform();
    const double u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2 * M_PI * u2);
  }

 private:
  double Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// c[M, N] = a[M, K] b[K, N], all row-major.
void MatMul(const double* a, const double* b, double* c, int M, int N, int K) {
  std::fill(c, c + static_cast<size_t>(M) * N, 0.0);
  for (int i = 0; i < M; ++i) {
    for (int k = 0; k < K; ++k) {
      const double aik = a[i * K + k];
      for (int j = 0; j < N; ++j) c[i * N + j] += aik * b[k * N + j];
    }
  }
}

double DotVec(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

RankDemoProblem MakeRankDemoProblem(int n, int d, double temperature, uint64_t seed) {
  RankDemoProblem p;
  p.n = n;
  p.d = d;
  Normal normal(seed);
  p.x.resize(static_cast<size_t>(d) * n);
  const double xs = 1.0 / std::sqrt(static_cast<double>(d));
  for (double& v : p.x) v = xs * normal.Next();
  // Logits G = temperature * sqrt(n) * U, U a random orthogonal matrix (modified Gram-Schmidt
  // on a Gaussian matrix): entries are ~N(0, temperature^2) like a Gaussian matrix's, but every
  // singular value is temperature * sqrt(n), so each dimension a head lacks costs the same.
  std::vector<double> u(static_cast<size_t>(n) * n);  // row r is the r-th orthonormal vector
  for (double& v : u) v = normal.Next();
  for (int r = 0; r < n; ++r) {
    double* ur = &u[static_cast<size_t>(r) * n];
    for (int k = 0; k < r; ++k) {
      const double* uk = &u[static_cast<size_t>(k) * n];
      double dot = 0;
      for (int i = 0; i < n; ++i) dot += ur[i] * uk[i];
      for (int i = 0; i < n; ++i) ur[i] -= dot * uk[i];
    }
    double norm = 0;
    for (int i = 0; i < n; ++i) norm += ur[i] * ur[i];
    norm = std::sqrt(norm);
    for (int i = 0; i < n; ++i) ur[i] /= norm;
  }
  const double gs = temperature * std::sqrt(static_cast<double>(n));
  p.target.resize(static_cast<size_t>(n) * n);
  for (int j = 0; j < n; ++j) {
    double mx = -1e300;
    std::vector<double> g(n);
    for (int i = 0; i < n; ++i) {
      g[i] = gs * u[static_cast<size_t>(i) * n + j];
      mx = std::max(mx, g[i]);
    }
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += (g[i] = std::exp(g[i] - mx));
    for (int i = 0; i < n; ++i) p.target[i * n + j] = g[i] / sum;
  }
  return p;
}

double HeadLoss(const RankDemoProblem& p, int dp, const double* wk, const double* wq, double* dwk,
                double* dwq, std::vector<double>* probs) {
  const int n = p.n, d = p.d;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dp));
  std::vector<double> k(static_cast<size_t>(dp) * n), q(static_cast<size_t>(dp) * n);
  MatMul(wk, p.x.data(), k.data(), dp, n, d);  // K = W_k X  [dp, n]
  MatMul(wq, p.x.data(), q.data(), dp, n, d);  // Q = W_q X  [dp, n]
  // L[i, j] = scale * sum_a K[a, i] Q[a, j]; then the column-wise softmax, in place.
  std::vector<double> ph(static_cast<size_t>(n) * n, 0.0);
  for (int a = 0; a < dp; ++a) {
    for (int i = 0; i < n; ++i) {
      const double kai = scale * k[a * n + i];
      for (int j = 0; j < n; ++j) ph[i * n + j] += kai * q[a * n + j];
    }
  }
  double loss = 0;
  for (int j = 0; j < n; ++j) {
    double mx = -1e300;
    for (int i = 0; i < n; ++i) mx = std::max(mx, ph[i * n + j]);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += std::exp(ph[i * n + j] - mx);
    const double lse = mx + std::log(sum);
    for (int i = 0; i < n; ++i) {
      const double log_phat = ph[i * n + j] - lse;
      const double t = p.target[i * n + j];
      loss += t * (std::log(t) - log_phat);
      ph[i * n + j] = std::exp(log_phat);
    }
  }
  if (dwk != nullptr && dwq != nullptr) {
    // dloss/dL = Phat - P (columns of P sum to 1). With G = scale * (Phat - P):
    // dK = Q G^T, dQ = K G; dW = dK X^T.
    std::vector<double> g(static_cast<size_t>(n) * n);
    for (size_t i = 0; i < g.size(); ++i) g[i] = scale * (ph[i] - p.target[i]);
    std::vector<double> dk(static_cast<size_t>(dp) * n, 0.0), dq(static_cast<size_t>(dp) * n, 0.0);
    for (int a = 0; a < dp; ++a) {
      for (int i = 0; i < n; ++i) {
        double sk = 0, sq = 0;
        for (int j = 0; j < n; ++j) {
          sk += q[a * n + j] * g[i * n + j];  // (Q G^T)[a, i]
          sq += k[a * n + j] * g[j * n + i];  // (K G)[a, i]
        }
        dk[a * n + i] = sk;
        dq[a * n + i] = sq;
      }
    }
    for (int a = 0; a < dp; ++a) {
      for (int r = 0; r < d; ++r) {
        double sk = 0, sq = 0;
        for (int i = 0; i < n; ++i) {
          sk += dk[a * n + i] * p.x[r * n + i];
          sq += dq[a * n + i] * p.x[r * n + i];
        }
        dwk[a * d + r] = sk;
        dwq[a * d + r] = sq;
      }
    }
  }
  if (probs != nullptr) *probs = std::move(ph);
  return loss;
}

absl::StatusOr<double> ReachabilityLowerBound(const RankDemoProblem& p, int dp) {
  const int n = p.n;
  if (dp >= n - 1) return 0.0;
  std::vector<double> logp(p.target.size());
  double min_p = 1;
  for (size_t i = 0; i < logp.size(); ++i) {
    logp[i] = std::log(p.target[i]);
    min_p = std::min(min_p, p.target[i]);
  }
  HR_ASSIGN_OR_RETURN(std::vector<double> s, SingularValues(logp.data(), n, n));
  double tail2 = 0;
  for (int i = dp + 1; i < n; ++i) tail2 += s[i] * s[i];  // beyond the best rank dp+1 fit
  const double tail = std::sqrt(tail2);
  return min_p * tail / (n + tail);
}

namespace {

// L-BFGS's curvature history: the newest kMemory pairs (s, y) of steps and gradient changes.
class LbfgsHistory {
 public:
  bool empty() const { return s_.empty(); }
  void Clear() {
    s_.clear();
    y_.clear();
    rho_.clear();
  }
  // Keeps (s, y) when y.s > 0, which keeps the inverse Hessian estimate positive definite.
  void Add(std::vector<double> s, std::vector<double> y) {
    const double sy = DotVec(s, y);
    if (!(sy > 1e-300)) return;
    s_.push_back(std::move(s));
    y_.push_back(std::move(y));
    rho_.push_back(1.0 / sy);
    if (s_.size() > kMemory) {
      s_.pop_front();
      y_.pop_front();
      rho_.pop_front();
    }
  }
  // -H g by the two-loop recursion (-g itself while the history is empty).
  std::vector<double> Direction(const std::vector<double>& g) const {
    std::vector<double> dir = g;
    std::vector<double> alpha(s_.size());
    for (size_t m = s_.size(); m-- > 0;) {
      alpha[m] = rho_[m] * DotVec(s_[m], dir);
      for (size_t i = 0; i < dir.size(); ++i) dir[i] -= alpha[m] * y_[m][i];
    }
    const double gamma =
        empty() ? 1.0 : DotVec(s_.back(), y_.back()) / DotVec(y_.back(), y_.back());
    for (double& v : dir) v *= gamma;
    for (size_t m = 0; m < s_.size(); ++m) {
      const double beta = rho_[m] * DotVec(y_[m], dir);
      for (size_t i = 0; i < dir.size(); ++i) dir[i] += (alpha[m] - beta) * s_[m][i];
    }
    for (double& v : dir) v = -v;
    return dir;
  }

 private:
  static constexpr size_t kMemory = 20;
  std::deque<std::vector<double>> s_, y_;
  std::deque<double> rho_;
};

// Minimises f from w (f(w) and its gradient g given) by L-BFGS with Armijo backtracking, for at
// most max_iterations iterations; w, g and f end at the minimum found. Returns the iterations.
template <typename Loss>
int MinimiseLbfgs(const Loss& eval, int max_iterations, std::vector<double>& w,
                  std::vector<double>& g, double& f) {
  const size_t dim = w.size();
  std::vector<double> w_new(dim), g_new(dim);
  LbfgsHistory history;
  int it = 0;
  for (; it < max_iterations; ++it) {
    double gmax = 0;
    for (double v : g) gmax = std::max(gmax, std::fabs(v));
    if (gmax < 1e-14) break;
    std::vector<double> dir = history.Direction(g);
    double slope = DotVec(g, dir);
    if (!(slope < 0)) {  // not a descent direction: restart from steepest descent
      history.Clear();
      for (size_t i = 0; i < dim; ++i) dir[i] = -g[i];
      slope = DotVec(g, dir);
    }
    // Armijo backtracking from the quasi-Newton step (a unit-length step on the first one).
    double t = history.empty() ? std::min(1.0, 1.0 / std::sqrt(-slope)) : 1.0;
    bool accepted = false;
    double f_new = 0;
    for (int bt = 0; bt < 60; ++bt) {
      for (size_t i = 0; i < dim; ++i) w_new[i] = w[i] + t * dir[i];
      f_new = eval(w_new, &g_new);
      if (f_new <= f + 1e-4 * t * slope) {
        accepted = true;
        break;
      }
      t *= 0.5;
    }
    if (!accepted) {
      if (history.empty()) break;  // even steepest descent cannot decrease f: converged
      history.Clear();
      continue;
    }
    std::vector<double> s(dim), y(dim);
    for (size_t i = 0; i < dim; ++i) {
      s[i] = w_new[i] - w[i];
      y[i] = g_new[i] - g[i];
    }
    history.Add(std::move(s), std::move(y));
    w.swap(w_new);
    g.swap(g_new);
    f = f_new;
  }
  return it;
}

}  // namespace

absl::StatusOr<RankDemoRow> FitHead(const RankDemoProblem& p, int dp, int max_iterations,
                                    uint64_t seed) {
  if (dp < 1) return absl::InvalidArgumentError(absl::StrCat("head size ", dp, " < 1"));
  const size_t half = static_cast<size_t>(dp) * p.d;
  auto eval = [&](const std::vector<double>& w, std::vector<double>* g) {
    return HeadLoss(p, dp, w.data(), w.data() + half, g ? g->data() : nullptr,
                    g ? g->data() + half : nullptr, nullptr);
  };
  // N(0, 1) weights: with X's N(0, 1/d) entries the logits start at O(1).
  Normal normal(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(dp));
  std::vector<double> w(2 * half), g(2 * half);
  for (double& v : w) v = normal.Next();
  double f = eval(w, &g);

  RankDemoRow row;
  row.head_size = dp;
  row.iterations = MinimiseLbfgs(eval, max_iterations, w, g, f);
  std::vector<double> probs;
  // Rounding can leave the KL sum a few ulps below zero once Phat == P; it is >= 0 exactly.
  row.kl = std::max(0.0, HeadLoss(p, dp, w.data(), w.data() + half, nullptr, nullptr, &probs));
  double fro = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double e = std::fabs(probs[i] - p.target[i]);
    row.max_abs_error = std::max(row.max_abs_error, e);
    fro += e * e;
  }
  row.frobenius_error = std::sqrt(fro);
  HR_ASSIGN_OR_RETURN(row.lower_bound, ReachabilityLowerBound(p, dp));
  return row;
}

std::vector<int> DefaultHeadSizes(int n) {
  std::vector<int> s = {n / 8, n / 4, n / 2, n - 2, n - 1, n, 2 * n};
  s.erase(std::remove_if(s.begin(), s.end(), [](int v) { return v < 1; }), s.end());
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

absl::StatusOr<std::vector<RankDemoRow>> FitRankDemo(const RankDemoOptions& o) {
  if (o.n < 2) return absl::InvalidArgumentError(absl::StrCat("n must be >= 2, got ", o.n));
  const int d = o.d == 0 ? 2 * o.n : o.d;
  if (d < o.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("d must be >= n (X needs full column rank), got d=", d, " n=", o.n));
  }
  if (o.max_iterations < 1) return absl::InvalidArgumentError("max_iterations must be >= 1");
  const std::vector<int> sizes = o.head_sizes.empty() ? DefaultHeadSizes(o.n) : o.head_sizes;
  const RankDemoProblem p = MakeRankDemoProblem(o.n, d, o.temperature, o.seed);
  std::vector<RankDemoRow> rows;
  for (int dp : sizes) {
    HR_ASSIGN_OR_RETURN(RankDemoRow r, FitHead(p, dp, o.max_iterations, o.seed));
    rows.push_back(r);
  }
  return rows;
}

std::string FormatRankDemo(const RankDemoOptions& o, const std::vector<RankDemoRow>& rows) {
  const int d = o.d == 0 ? 2 * o.n : o.d;
  std::string out = absl::StrFormat(
      "rank-demo: one head softmax((W_k X)^T (W_q X) / sqrt(d_p)) fitted to a random positive "
      "column-stochastic P\n"
      "n=%d d=%d seed=%d temperature=%g max_iterations=%d (L-BFGS, float64)\n"
      "Theorem 1: reachable iff d_p >= n-1 = %d (generic P); lower_bound: no head of that size "
      "gets max_abs_err below it\n",
      o.n, d, static_cast<int>(o.seed), o.temperature, o.max_iterations, o.n - 1);
  for (const RankDemoRow& r : rows) {
    absl::StrAppendFormat(&out,
                          "d_p=%4d  max_abs_err=%.3e  frob_err=%.3e  kl=%.3e  lower_bound=%.3e  "
                          "iters=%5d  %s\n",
                          r.head_size, r.max_abs_error, r.frobenius_error, r.kl, r.lower_bound,
                          r.iterations,
                          r.head_size >= o.n - 1 ? "theorem: reachable" : "theorem: unreachable");
  }
  return out;
}

}  // namespace headroom
