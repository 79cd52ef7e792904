// Attention rank diagnostics: how much of the low-rank bottleneck does a trained model show?
//
// For every layer l and head i, on a fixed probe batch, the head's attention logits of sequence
// b are the scaled S x S matrix, before any mask,
//   A = (X W_q^i + 1 b_q^i) (X W_k^i + 1 b_k^i)^T / sqrt(d_p)      (row = query, column = key)
// with X what the layer's attention projects (model/transformer.h attention_input(l): the layer
// input h_l, or LN1(h_l) for a PRE_LN model). Its rank is at most d_p, the paper's bottleneck.
// Reported per head, over the probe sequences:
//   rank        numerical rank of A (analysis/linalg.h: singular values > rank_rtol * sigma_max,
//               default rtol 1e-6; rtol <= 0 uses NumPy's sigma_max * S * DBL_EPSILON); the
//               maximum and the mean over sequences. Never above min(d_p, S) up to that threshold.
//   stable rank ||A||_F^2 / ||A||_2^2, mean over sequences: how many directions carry weight.
//   entropy     mean over sequences and query rows of the entropy (nats) of the attention row
//               softmax(A[q, :]) over the keys the model lets q see (k <= q for the causal LM;
//               input_mask == 1 keys for BERT). log(#keys) is uniform attention, 0 is one-hot.
// For BERT only the tokens with input_mask == 1 take part (A is restricted to them); the causal
// LM uses all S positions, as its attention does.
//
// The logits are recomputed on the host in float64 from the layer inputs and the parameters of
// a Forward with dropout off, instead of being copied out of the attention kernels, so the model
// and its kernels need no change beyond the attention_input(l) accessor, and the numbers do not
// depend on the backend's matrix precision (bf16 GEMMs would blur small singular values).
//
// For the trainer (every K steps, on a probe batch fixed at the start of the run):
//   HR_ASSIGN_OR_RETURN(std::vector<HeadRankStats> st,
//                       AttentionRankDiagnostics(model.get(), probe_batch));
//   HR_RETURN_IF_ERROR(logger->LogEval(step, AttentionRankMetrics(st)));   // "eval/attention/..."
// AttentionRankDiagnostics runs a Forward (training = false) on the probe batch, so it must not
// sit between a training Forward and its Backward.
#ifndef HEADROOM_ANALYSIS_ATTENTION_RANK_H_
#define HEADROOM_ANALYSIS_ATTENTION_RANK_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/batch.h"
#include "model/transformer.h"

namespace headroom {

struct AttentionRankOptions {
  // Relative singular value threshold of the numerical rank (<= 0: NumPy's default).
  double rank_rtol = 1e-6;
  // Sequences of the probe batch analysed (the first ones); 0: all.
  int max_sequences = 0;
};

// The measures of one S x S logits matrix.
struct LogitsStats {
  int rank = 0;
  double stable_rank = 0;
  double entropy = 0;  // mean over query rows, nats
};

// Measures the row-major S x S logits `a` (row = query, scaled, unmasked). The entropy uses, for
// query q, the keys k <= q when `causal`, else all keys. Errors: SVD failure (e.g. a NaN logit).
[[nodiscard]] absl::StatusOr<LogitsStats> AnalyzeLogits(const double* a, int S, bool causal,
                                                        double rank_rtol);

// One head's measures over the probe sequences.
struct HeadRankStats {
  int layer = 0;
  int head = 0;
  int head_size = 0;     // d_p
  int sequences = 0;     // probe sequences measured
  int tokens = 0;        // longest S used (BERT: valid tokens only)
  int rank_max = 0;      // max over sequences of the numerical rank
  double rank_mean = 0;  // mean over sequences
  double stable_rank_mean = 0;
  double entropy_mean = 0;  // nats
};

// Runs `model` (created on `ops`) on `probe` with dropout off and measures every layer and head
// (layer-major, then head). Errors: the batch's validation error from Forward, or SVD failure.
template <typename T>
[[nodiscard]] absl::StatusOr<std::vector<HeadRankStats>> AttentionRankDiagnostics(
    TrainableModel<T>* model, const Batch& probe, const AttentionRankOptions& options = {});

// The stats as (name, value) pairs for trainer/metrics.h, per head
//   "attention/l<L>/h<H>/rank" (rank_max), ".../stable_rank", ".../entropy"
// and per layer "attention/l<L>/rank_max", "attention/l<L>/stable_rank", "attention/l<L>/entropy"
// (max, mean, mean over heads). per_head = false gives only the per-layer ones (70 heads x 6
// layers would be 1260 scalars per log).
std::vector<std::pair<std::string, double>> AttentionRankMetrics(
    const std::vector<HeadRankStats>& stats, bool per_head = true);

// A table, one row per layer and head:
//   layer head  d_p  tokens  rank_max  rank_mean  stable_rank  entropy
std::string FormatAttentionRankTable(const std::vector<HeadRankStats>& stats);

extern template absl::StatusOr<std::vector<HeadRankStats>> AttentionRankDiagnostics<float>(
    TrainableModel<float>*, const Batch&, const AttentionRankOptions&);
extern template absl::StatusOr<std::vector<HeadRankStats>> AttentionRankDiagnostics<double>(
    TrainableModel<double>*, const Batch&, const AttentionRankOptions&);

}  // namespace headroom

#endif  // HEADROOM_ANALYSIS_ATTENTION_RANK_H_
