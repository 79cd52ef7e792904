// The paper's Theorem 1, executable: can ONE attention head reproduce a given attention pattern?
//
// Setting (Bhojanapalli et al. 2020, section 3, in the paper's column convention): n tokens,
// a fixed input X in R^{d x n} of full column rank (d >= n), and a target P in R^{n x n} that is
// positive and column-stochastic (column j is the attention of query j over the n keys). One
// head with projections W_k, W_q in R^{d_p x d} produces
//
//   L = (W_k X)^T (W_q X) / sqrt(d_p)         [n, n], rank(L) <= d_p
//   Phat[:, j] = softmax(L[:, j])             column-wise softmax
//
// Theorem 1: with d_p >= n every such P is reachable (Phat = P exactly). Softmax ignores a
// constant added to a column, so log Phat = L + 1 c^T has rank <= d_p + 1; hence d_p = n - 1
// already suffices for generic P, while for d_p <= n - 2 a generic P (log P of full rank) is
// NOT reachable. ReachabilityLowerBound turns that argument into a number: by Eckart-Young,
// ||log Phat - log P||_F >= tail = sqrt(sum_{i > d_p + 1} sigma_i(log P)^2), and since
// |log a - log b| <= |a - b| / min(a, b), every reachable Phat has
//   max_ij |Phat - P| >= min(P) * tail / (n + tail)        (0 for d_p >= n - 1).
//
// FitHead trains W_k, W_q (float64, analytic gradients, L-BFGS with Armijo backtracking) to
// minimise sum_j KL(P[:, j] || Phat[:, j]), whose gradient with respect to L is simply Phat - P.
// The error it reaches is an upper bound on the best error of that head size; the bound above is
// a lower bound. The demo prints both, per d_p.
//
// Example:
//   RankDemoOptions o;                  // n = 16, d = 2n, seed 1
//   HR_ASSIGN_OR_RETURN(std::vector<RankDemoRow> rows, FitRankDemo(o));
//   std::printf("%s", FormatRankDemo(o, rows).c_str());
#ifndef HEADROOM_ANALYSIS_RANK_DEMO_H_
#define HEADROOM_ANALYSIS_RANK_DEMO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace headroom {

// One instance of the problem. All matrices are row-major.
struct RankDemoProblem {
  int n = 0;                   // sequence length
  int d = 0;                   // embedding size, >= n
  std::vector<double> x;       // [d, n]: column j is token j
  std::vector<double> target;  // [n, n]: P, positive, every column sums to 1
};

// A problem drawn from `seed`: X with i.i.d. N(0, 1/d) entries (full column rank with
// probability 1 for d >= n), and P = column-wise softmax(temperature * sqrt(n) * U) with U a
// random orthogonal n x n matrix: positive, column-stochastic, logits with entries of about
// N(0, temperature^2) and ALL singular values equal. (A Gaussian logit matrix would do for the
// theorem, but its smallest singular values are ~n times below its largest, so heads of size
// n - 2 would miss P by only ~1e-4; with a flat spectrum each missing dimension costs the same.)
// The normal draws are Box-Muller over std::mt19937_64, so a seed gives the same problem on
// every platform.
RankDemoProblem MakeRankDemoProblem(int n, int d, double temperature, uint64_t seed);

// The loss of one head with projections wk, wq ([head_size, d] each):
//   sum_j KL(P[:, j] || Phat[:, j])   (natural log; 0 iff Phat == P).
// When dwk and dwq are non-null they receive the gradient (overwritten, [head_size, d] each).
// When probs is non-null it receives Phat ([n, n]).
double HeadLoss(const RankDemoProblem& p, int head_size, const double* wk, const double* wq,
                double* dwk, double* dwq, std::vector<double>* probs);

// The result of fitting one head size.
struct RankDemoRow {
  int head_size = 0;
  double max_abs_error = 0;    // max_ij |Phat - P| at the end of training
  double frobenius_error = 0;  // ||Phat - P||_F
  double kl = 0;               // the final loss, sum_j KL(P[:, j] || Phat[:, j])
  double lower_bound = 0;      // ReachabilityLowerBound: no head of this size does better
  int iterations = 0;          // L-BFGS iterations used
};

// Trains one head of size head_size on `p` for at most max_iterations L-BFGS iterations from a
// random N(0, 1) initialisation drawn from `seed`; stops early once the gradient vanishes (max
// |g| < 1e-14) or no step decreases the loss. Fills every field, lower_bound included.
[[nodiscard]] absl::StatusOr<RankDemoRow> FitHead(const RankDemoProblem& p, int head_size,
                                                  int max_iterations, uint64_t seed);

// The lower bound on max_ij |Phat - P| over every head of size head_size (file comment):
// 0 for head_size >= n - 1, else min(P) * tail / (n + tail). Errors: SVD failure.
[[nodiscard]] absl::StatusOr<double> ReachabilityLowerBound(const RankDemoProblem& p,
                                                            int head_size);

struct RankDemoOptions {
  int n = 16;                   // sequence length
  int d = 0;                    // embedding size; 0 means 2n
  uint64_t seed = 1;            // problem and initialisation
  double temperature = 1.0;     // sharpness of the target's columns
  int max_iterations = 3000;    // L-BFGS budget per head size (the same for every head size)
  std::vector<int> head_sizes;  // empty: DefaultHeadSizes(n)
};

// n/8, n/4, n/2, n-2, n-1, n, 2n: sizes >= 1, sorted, duplicates removed.
std::vector<int> DefaultHeadSizes(int n);

// Draws the problem and fits every head size. InvalidArgument for n < 2, d < n, a head size
// < 1 or max_iterations < 1.
[[nodiscard]] absl::StatusOr<std::vector<RankDemoRow>> FitRankDemo(const RankDemoOptions& o);

// The printed report: a header naming n, d, seed and temperature, then one line per head size,
// e.g. "d_p=  16  max_abs_err=3.1e-10  frob_err=...  kl=...  lower_bound=0  iters=412  theorem:
// reachable".
std::string FormatRankDemo(const RankDemoOptions& o, const std::vector<RankDemoRow>& rows);

}  // namespace headroom

#endif  // HEADROOM_ANALYSIS_RANK_DEMO_H_
