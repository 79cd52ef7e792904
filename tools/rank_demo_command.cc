// `headroom rank-demo [--n=16] [--embed_dim=0] [--seed=1] [--temperature=1] [--iterations=3000]
// [--head_sizes=2,4,...]`: the paper's Theorem 1, executable (analysis/rank_demo.h). Fits one
// attention head softmax((W_k X)^T (W_q X) / sqrt(d_p)) to a random positive column-stochastic
// target for each head size and prints one line per d_p with the error reached and the
// theorem's lower bound: the error vanishes only once d_p >= n - 1.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "analysis/rank_demo.h"
#include "tools/command.h"

ABSL_FLAG(int, n, 16, "sequence length n (the target P is n x n)");
ABSL_FLAG(int, embed_dim, 0, "embedding size d of the fixed input X (d x n, d >= n); 0: 2n");
ABSL_FLAG(uint64_t, seed, 1, "seed of X, P and the initial weights");
ABSL_FLAG(double, temperature, 1.0,
          "target logits: temperature * sqrt(n) * a random orthogonal matrix (entries ~N(0, t^2))");
ABSL_FLAG(int, iterations, 3000, "L-BFGS iterations per head size (the same budget for all)");
ABSL_FLAG(std::string, head_sizes, "",
          "comma-separated head sizes d_p (default: n/8, n/4, n/2, n-2, n-1, n, 2n)");

namespace headroom {

int RunRankDemo(const CommandArgs& args) {
  if (!args.positional.empty()) {
    return Fail("rank-demo", "takes no arguments (see headroom rank-demo --help)");
  }
  RankDemoOptions o;
  o.n = absl::GetFlag(FLAGS_n);
  o.d = absl::GetFlag(FLAGS_embed_dim);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.temperature = absl::GetFlag(FLAGS_temperature);
  o.max_iterations = absl::GetFlag(FLAGS_iterations);
  const std::string sizes = absl::GetFlag(FLAGS_head_sizes);
  if (!sizes.empty()) {
    for (absl::string_view s : absl::StrSplit(sizes, ',', absl::SkipEmpty())) {
      int v = 0;
      if (!absl::SimpleAtoi(s, &v)) {
        return Fail("rank-demo",
                    absl::StrCat("--head_sizes: '", std::string(s), "' is not an integer"));
      }
      o.head_sizes.push_back(v);
    }
  }
  absl::StatusOr<std::vector<RankDemoRow>> rows = FitRankDemo(o);
  if (!rows.ok()) return Fail("rank-demo", std::string(rows.status().message()));
  std::printf("%s", FormatRankDemo(o, *rows).c_str());
  return 0;
}

}  // namespace headroom
