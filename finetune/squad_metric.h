// The official SQuAD v1.1 metric (evaluate-v1.1.py), reimplemented from its definition.
//
//   normalize_answer(s): lower-case (Python's str.lower), remove ASCII punctuation (Python's
//     string.punctuation), replace the articles a/an/the standing as whole words (regular
//     expression \b(a|an|the)\b, Unicode word characters) by a space, and join the
//     whitespace-separated words with single spaces;
//   exact match: normalize(prediction) == normalize(gold);
//   F1 over tokens (the words of the normalised strings): common = the multiset intersection,
//     0 if it is empty, else 2 p r / (p + r) with p = |common| / |prediction|,
//     r = |common| / |gold|;
//   per question, the maximum over its gold answers; a question without a prediction scores 0
//     (and is counted); both totals are percentages of all questions.
//
// Example:
//   NormalizeAnswer("The  Eiffel-Tower!")             // "eiffeltower"
//   SquadF1("the cat sat", "a cat sat down")          // 0.8
//   SquadMetrics m = EvaluateSquad(dataset, predictions).value();  // m.exact_match, m.f1 in %
#ifndef HEADROOM_FINETUNE_SQUAD_METRIC_H_
#define HEADROOM_FINETUNE_SQUAD_METRIC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "finetune/squad_dataset.h"

namespace headroom {

// normalize_answer of the official script, on UTF-8 text.
std::string NormalizeAnswer(absl::string_view text);

// 1 when the normalised strings are equal, else 0.
double SquadExactMatch(absl::string_view prediction, absl::string_view gold);
// Token F1 in [0, 1] of the normalised strings (0 when either has no tokens).
double SquadF1(absl::string_view prediction, absl::string_view gold);

struct SquadMetrics {
  double exact_match = 0;               // percent of all questions
  double f1 = 0;                        // percent of all questions
  int64_t questions = 0;                // all questions of the dataset
  std::vector<std::string> unanswered;  // ids without a prediction (scored 0), in file order
  // {"exact_match": X, "f1": Y}, the official script's output line (Python's float repr).
  std::string ToJson() const;
};

// Scores `predictions` against every question of `dataset`. InvalidArgument when the dataset
// has no questions (the official script would divide by zero). Predictions for ids that are
// not in the dataset are ignored, as the official script does.
[[nodiscard]] absl::StatusOr<SquadMetrics> EvaluateSquad(const SquadDataset& dataset,
                                                         const SquadPredictions& predictions);

// Python's repr of a float: the shortest digits that round-trip, in fixed notation for decimal
// exponents in [-4, 16) ("81.2", "100.0", "0.0001") and scientific otherwise ("1e-05").
std::string PythonFloatRepr(double value);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_SQUAD_METRIC_H_
