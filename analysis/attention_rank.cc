// Attention rank diagnostics: per-head logits recomputed in float64 on the host from the layer
// inputs and parameters; see attention_rank.h.
#include "analysis/attention_rank.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/linalg.h"
#include "base/status_macros.h"

namespace headroom {
namespace {

// y[r, o] = sum_c x[r, c] w[o, c] + b[o]: x [rows, d], w [out, d] (torch layout), y [rows, out].
void Project(const std::vector<double>& x, const std::vector<double>& w,
             const std::vector<double>& b, int rows, int d, int out, std::vector<double>& y) {
  y.assign(static_cast<size_t>(rows) * out, 0.0);
  for (int r = 0; r < rows; ++r) {
    const double* xr = &x[static_cast<size_t>(r) * d];
    for (int o = 0; o < out; ++o) {
      const double* wo = &w[static_cast<size_t>(o) * d];
      double s = b[o];
      for (int c = 0; c < d; ++c) s += xr[c] * wo[c];
      y[static_cast<size_t>(r) * out + o] = s;
    }
  }
}

}  // namespace

absl::StatusOr<LogitsStats> AnalyzeLogits(const double* a, int S, bool causal, double rank_rtol) {
  LogitsStats st;
  HR_ASSIGN_OR_RETURN(std::vector<double> s, SingularValues(a, S, S));
  st.rank = NumericalRank(s, rank_rtol, S, S);
  st.stable_rank = StableRank(s);
  double entropy = 0;
  for (int q = 0; q < S; ++q) {
    const double* row = a + static_cast<size_t>(q) * S;
    const int keys = causal ? q + 1 : S;
    double mx = row[0];
    for (int k = 1; k < keys; ++k) mx = std::max(mx, row[k]);
    double z = 0;
    for (int k = 0; k < keys; ++k) z += std::exp(row[k] - mx);
    const double log_z = std::log(z);
    // H = -sum p log p with log p = row - mx - log z.
    double h = 0;
    for (int k = 0; k < keys; ++k) {
      const double log_p = row[k] - mx - log_z;
      h -= std::exp(log_p) * log_p;
    }
    entropy += h;
  }
  st.entropy = entropy / S;
  return st;
}

template <typename T>
absl::StatusOr<std::vector<HeadRankStats>> AttentionRankDiagnostics(
    TrainableModel<T>* model, const Batch& probe, const AttentionRankOptions& options) {
  const ModelConfig& m = model->config();
  const bool bert = m.objective() == ModelConfig::BERT;
  HR_RETURN_IF_ERROR(model->Forward(probe, /*training=*/false, DropoutKey{}).status());

  const int B = probe.batch_size, S = probe.seq_length, d = m.d_model(), H = m.num_heads();
  const int dp = m.head_size() > 0 ? m.head_size() : d / H;
  const int I = H * dp;
  const int sequences = options.max_sequences > 0 ? std::min(B, options.max_sequences) : B;
  const int rows = sequences * S;  // only the measured sequences are projected
  const double scale = 1.0 / std::sqrt(static_cast<double>(dp));

  const std::vector<T> params = model->GetParameters();
  const ParameterLayout& layout = model->layout();
  auto tensor = [&](const std::string& name) {
    const TensorSpec& t = layout.Get(name);
    return std::vector<double>(params.begin() + t.offset, params.begin() + t.offset + t.numel);
  };

  std::vector<HeadRankStats> out;
  std::vector<double> x, q, k, logits;
  for (int l = 0; l < m.num_layers(); ++l) {
    const std::vector<T> h = model->AttentionInputToHost(l);  // [B*S, d]; the first `rows`
    x.assign(h.begin(), h.begin() + static_cast<int64_t>(rows) * d);
    const std::string lp = layout.LayerPrefix(l);
    Project(x, tensor(lp + "attention.self.query.weight"), tensor(lp + "attention.self.query.bias"),
            rows, d, I, q);
    Project(x, tensor(lp + "attention.self.key.weight"), tensor(lp + "attention.self.key.bias"),
            rows, d, I, k);
    for (int hh = 0; hh < H; ++hh) {
      HeadRankStats st;
      st.layer = l;
      st.head = hh;
      st.head_size = dp;
      for (int b = 0; b < sequences; ++b) {
        // The tokens that take part: BERT's real tokens, or every position of the causal LM.
        std::vector<int> tok;
        for (int s = 0; s < S; ++s) {
          if (!bert || probe.input_mask[static_cast<size_t>(b) * S + s] != 0) tok.push_back(s);
        }
        const int n = static_cast<int>(tok.size());
        if (n == 0) continue;
        logits.assign(static_cast<size_t>(n) * n, 0.0);
        for (int i = 0; i < n; ++i) {
          const double* qi = &q[(static_cast<size_t>(b) * S + tok[i]) * I + hh * dp];
          for (int j = 0; j < n; ++j) {
            const double* kj = &k[(static_cast<size_t>(b) * S + tok[j]) * I + hh * dp];
            double s = 0;
            for (int c = 0; c < dp; ++c) s += qi[c] * kj[c];
            logits[static_cast<size_t>(i) * n + j] = scale * s;
          }
        }
        HR_ASSIGN_OR_RETURN(LogitsStats ls,
                            AnalyzeLogits(logits.data(), n, /*causal=*/!bert, options.rank_rtol));
        st.sequences += 1;
        st.tokens = std::max(st.tokens, n);
        st.rank_max = std::max(st.rank_max, ls.rank);
        st.rank_mean += ls.rank;
        st.stable_rank_mean += ls.stable_rank;
        st.entropy_mean += ls.entropy;
      }
      if (st.sequences > 0) {
        st.rank_mean /= st.sequences;
        st.stable_rank_mean /= st.sequences;
        st.entropy_mean /= st.sequences;
      }
      out.push_back(st);
    }
  }
  return out;
}

std::vector<std::pair<std::string, double>> AttentionRankMetrics(
    const std::vector<HeadRankStats>& stats, bool per_head) {
  std::vector<std::pair<std::string, double>> out;
  size_t i = 0;
  while (i < stats.size()) {
    const int layer = stats[i].layer;
    const std::string lp = absl::StrCat("attention/l", layer, "/");
    int rank_max = 0, heads = 0;
    double stable = 0, entropy = 0;
    for (; i < stats.size() && stats[i].layer == layer; ++i) {
      const HeadRankStats& s = stats[i];
      if (per_head) {
        const std::string hp = absl::StrCat(lp, "h", s.head, "/");
        out.emplace_back(hp + "rank", s.rank_max);
        out.emplace_back(hp + "stable_rank", s.stable_rank_mean);
        out.emplace_back(hp + "entropy", s.entropy_mean);
      }
      rank_max = std::max(rank_max, s.rank_max);
      stable += s.stable_rank_mean;
      entropy += s.entropy_mean;
      ++heads;
    }
    out.emplace_back(lp + "rank_max", rank_max);
    out.emplace_back(lp + "stable_rank", stable / heads);
    out.emplace_back(lp + "entropy", entropy / heads);
  }
  return out;
}

std::string FormatAttentionRankTable(const std::vector<HeadRankStats>& stats) {
  std::string out = absl::StrFormat("%5s %4s %4s %6s %8s %9s %11s %8s\n", "layer", "head", "d_p",
                                    "tokens", "rank_max", "rank_mean", "stable_rank", "entropy");
  for (const HeadRankStats& s : stats) {
    absl::StrAppendFormat(&out, "%5d %4d %4d %6d %8d %9.2f %11.3f %8.4f\n", s.layer, s.head,
                          s.head_size, s.tokens, s.rank_max, s.rank_mean, s.stable_rank_mean,
                          s.entropy_mean);
  }
  return out;
}

template absl::StatusOr<std::vector<HeadRankStats>> AttentionRankDiagnostics<float>(
    TrainableModel<float>*, const Batch&, const AttentionRankOptions&);
template absl::StatusOr<std::vector<HeadRankStats>> AttentionRankDiagnostics<double>(
    TrainableModel<double>*, const Batch&, const AttentionRankOptions&);

}  // namespace headroom
