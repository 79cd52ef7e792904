// Batch validation and random batches; see batch.h for the field conventions.
#include "model/batch.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/splitmix.h"

namespace headroom {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("batch.", field, ": ", what));
}

template <typename V>
absl::Status CheckSize(const std::string& field, const V& v, int64_t want) {
  if (static_cast<int64_t>(v.size()) != want) {
    return Bad(field, absl::StrCat("has ", v.size(), " elements, expected ", want));
  }
  return absl::OkStatus();
}

// Every element in [lo, hi).
absl::Status CheckRange(const std::string& field, const std::vector<int32_t>& v, int64_t lo,
                        int64_t hi) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < lo || v[i] >= hi) {
      return Bad(field,
                 absl::StrCat("element ", i, " is ", v[i], ", outside [", lo, ", ", hi, ")"));
    }
  }
  return absl::OkStatus();
}

// The packed features (batch.h): both or neither; segments are runs of one non-zero id, each id
// one run per row, exactly where targets are non-zero; positions count 0, 1, ... within a run.
absl::Status ValidatePacking(const Batch& b) {
  if (b.targets_segmentation.empty() && b.targets_position.empty()) return absl::OkStatus();
  const int64_t B = b.batch_size, S = b.seq_length;
  for (absl::Status s : {CheckSize("targets_segmentation", b.targets_segmentation, B * S),
                         CheckSize("targets_position", b.targets_position, B * S)}) {
    if (!s.ok()) return s;
  }
  for (int64_t row = 0; row < B; ++row) {
    std::vector<int32_t> seen;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t i = row * S + s;
      const int32_t seg = b.targets_segmentation[i], pos = b.targets_position[i];
      if (seg < 0 || (seg == 0) != (b.targets[i] == 0)) {
        return Bad("targets_segmentation",
                   absl::StrCat("element ", i, " is ", seg, " for target ", b.targets[i],
                                ": expected 0 exactly at padding (target 0), else > 0"));
      }
      if (seg == 0) continue;
      const bool starts = s == 0 || b.targets_segmentation[i - 1] != seg;
      if (starts && std::find(seen.begin(), seen.end(), seg) != seen.end()) {
        return Bad("targets_segmentation",
                   absl::StrCat("element ", i, ": segment ", seg, " of row ", row,
                                " appears in two runs; each sentence is one run"));
      }
      if (starts) seen.push_back(seg);
      const int32_t want = starts ? 0 : b.targets_position[i - 1] + 1;
      if (pos != want) {
        return Bad("targets_position", absl::StrCat("element ", i, " is ", pos, ", expected ", want,
                                                    " (positions restart at 0 in each segment)"));
      }
    }
  }
  return absl::OkStatus();
}

// B and S in range (every objective).
absl::Status CheckShape(const ModelConfig& model, const Batch& b) {
  const int64_t B = b.batch_size, S = b.seq_length;
  if (B <= 0) return Bad("batch_size", absl::StrCat("must be > 0 (got ", B, ")"));
  if (S <= 0 || S > model.max_positions()) {
    return Bad("seq_length",
               absl::StrCat(S, " is outside [1, model.max_positions ", model.max_positions(), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateEncoderInputs(const ModelConfig& model, const Batch& b) {
  absl::Status shape = CheckShape(model, b);
  if (!shape.ok()) return shape;
  const int64_t N = static_cast<int64_t>(b.batch_size) * b.seq_length;
  for (absl::Status s :
       {CheckSize("input_ids", b.input_ids, N), CheckSize("input_mask", b.input_mask, N),
        CheckSize("segment_ids", b.segment_ids, N),
        CheckRange("input_ids", b.input_ids, 0, model.vocab_size()),
        CheckRange("input_mask", b.input_mask, 0, 2),
        CheckRange("segment_ids", b.segment_ids, 0, model.type_vocab_size())}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const ModelConfig& model, const Batch& b) {
  const int64_t B = b.batch_size, S = b.seq_length, M = b.max_predictions;
  absl::Status shape = CheckShape(model, b);
  if (!shape.ok()) return shape;
  if (model.objective() == ModelConfig::CAUSAL_LM) {
    absl::Status s = CheckSize("targets", b.targets, B * S);
    if (!s.ok()) return s;
    s = CheckRange("targets", b.targets, 0, model.vocab_size());
    if (!s.ok()) return s;
    return ValidatePacking(b);
  }
  if (M < 0 || M > S) return Bad("max_predictions", absl::StrCat(M, " is outside [0, ", S, "]"));
  absl::Status inputs = ValidateEncoderInputs(model, b);
  if (!inputs.ok()) return inputs;
  for (absl::Status s : {CheckSize("masked_lm_positions", b.masked_lm_positions, B * M),
                         CheckSize("masked_lm_ids", b.masked_lm_ids, B * M),
                         CheckSize("masked_lm_weights", b.masked_lm_weights, B * M),
                         CheckSize("next_sentence_labels", b.next_sentence_labels, B),
                         CheckRange("masked_lm_positions", b.masked_lm_positions, 0, S),
                         CheckRange("masked_lm_ids", b.masked_lm_ids, 0, model.vocab_size()),
                         CheckRange("next_sentence_labels", b.next_sentence_labels, 0, 2)}) {
    if (!s.ok()) return s;
  }
  for (size_t i = 0; i < b.masked_lm_weights.size(); ++i) {
    if (!(b.masked_lm_weights[i] >= 0)) {
      return Bad("masked_lm_weights",
                 absl::StrCat("element ", i, " is ", b.masked_lm_weights[i], ", expected >= 0"));
    }
  }
  return absl::OkStatus();
}

Batch RandomBatch(const ModelConfig& model, int batch_size, int seq_length, int max_predictions,
                  uint64_t seed) {
  SplitMix rng{seed * 0x2545F4914F6CDD1Dull + 1};
  Batch b;
  b.batch_size = batch_size;
  b.seq_length = seq_length;
  const int B = batch_size, S = seq_length, V = model.vocab_size();
  if (model.objective() == ModelConfig::CAUSAL_LM) {
    b.targets.assign(static_cast<size_t>(B) * S, 0);
    for (int i = 0; i < B; ++i) {
      const int len = S - rng.Uniform(0, S / 4);
      for (int s = 0; s < len; ++s) b.targets[i * S + s] = rng.Uniform(1, V - 1);
    }
    return b;
  }
  const int M = max_predictions;
  b.max_predictions = M;
  b.input_ids.assign(static_cast<size_t>(B) * S, 0);
  b.input_mask.assign(static_cast<size_t>(B) * S, 0);
  b.segment_ids.assign(static_cast<size_t>(B) * S, 0);
  b.masked_lm_positions.assign(static_cast<size_t>(B) * M, 0);
  b.masked_lm_ids.assign(static_cast<size_t>(B) * M, 0);
  b.masked_lm_weights.assign(static_cast<size_t>(B) * M, 0.0f);
  b.next_sentence_labels.assign(B, 0);
  for (int i = 0; i < B; ++i) {
    const int len = std::max(std::min(S, 2), rng.Uniform((S + 1) / 2, S));
    const int first_len = rng.Uniform(1, len);  // segment A covers [0, first_len)
    for (int s = 0; s < len; ++s) {
      b.input_ids[i * S + s] = rng.Uniform(1, V - 1);
      b.input_mask[i * S + s] = 1;
      b.segment_ids[i * S + s] = s < first_len ? 0 : 1;
    }
    // Distinct positions in [1, len): a partial Fisher-Yates shuffle.
    std::vector<int> pos(std::max(len - 1, 0));
    std::iota(pos.begin(), pos.end(), 1);
    const int used = std::min<int>(rng.Uniform(1, std::max(M, 1)), static_cast<int>(pos.size()));
    for (int j = 0; j < std::min(used, M); ++j) {
      std::swap(pos[j], pos[rng.Uniform(j, static_cast<int>(pos.size()) - 1)]);
      b.masked_lm_positions[i * M + j] = pos[j];
      b.masked_lm_ids[i * M + j] = rng.Uniform(1, V - 1);
      b.masked_lm_weights[i * M + j] = 1.0f;
    }
    b.next_sentence_labels[i] = rng.Uniform(0, 1);
  }
  return b;
}

}  // namespace headroom
