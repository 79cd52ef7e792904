// SQuAD v1.1 files: the dataset JSON (questions, contexts, gold answers) and the predictions
// JSON, read and written in the official formats.
//
// Dataset (https://rajpurkar.github.io/SQuAD-explorer/, train-v1.1.json / dev-v1.1.json):
//   {"version": "1.1",
//    "data": [{"title": "...",
//              "paragraphs": [{"context": "...",
//                              "qas": [{"id": "...", "question": "...",
//                                       "answers": [{"text": "...", "answer_start": 177}, ...]},
//                                      ...]}, ...]}, ...]}
// answer_start counts Unicode code points (Python string indices) from the start of the
// context. The training set has one answer per question, the dev set usually three.
//
// Predictions: one JSON object mapping each question id to the predicted answer text,
//   {"5733be284776f41990661e2": "Saint Bernadette Soubirous", ...}
// which is what the official evaluate-v1.1.py reads and what Google's run_squad.py writes
// (json.dumps(..., indent=4)).
//
// Errors are InvalidArgument naming the file and the JSON path of the bad value, e.g.
//   "dev.json: data[0].paragraphs[3].qas[1].answers[0].answer_start: expected an integer".
//
// Example:
//   HR_ASSIGN_OR_RETURN(SquadDataset dev, ReadSquadDataset("dev-v1.1.json"));
//   for (const SquadParagraph& p : dev.paragraphs) for (const SquadQuestion& q : p.questions) ...
#ifndef HEADROOM_FINETUNE_SQUAD_DATASET_H_
#define HEADROOM_FINETUNE_SQUAD_DATASET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

struct SquadAnswer {
  std::string text;          // UTF-8
  int64_t answer_start = 0;  // code points from the start of the context
};

struct SquadQuestion {
  std::string id;
  std::string question;
  std::vector<SquadAnswer> answers;  // may be empty in a test set
};

struct SquadParagraph {
  std::string context;
  std::vector<SquadQuestion> questions;
};

// The articles' paragraphs in file order (titles are not kept: nothing uses them).
struct SquadDataset {
  std::string version;  // "1.1" for SQuAD v1.1; empty when the file has none
  std::vector<SquadParagraph> paragraphs;
  // Number of questions over all paragraphs.
  int64_t num_questions() const;
};

// Parses the dataset JSON `text`; `source` names it in errors. Every question needs "id" and
// "question" strings and an "answers" array of {"text": string, "answer_start": integer >= 0}.
[[nodiscard]] absl::StatusOr<SquadDataset> ParseSquadDataset(absl::string_view text,
                                                             const std::string& source);
[[nodiscard]] absl::StatusOr<SquadDataset> ReadSquadDataset(const std::string& path);

// Question id -> predicted text.
using SquadPredictions = absl::flat_hash_map<std::string, std::string>;

// Parses a predictions JSON object whose values are strings; `source` names it in errors.
[[nodiscard]] absl::StatusOr<SquadPredictions> ParseSquadPredictions(absl::string_view text,
                                                                     const std::string& source);
[[nodiscard]] absl::StatusOr<SquadPredictions> ReadSquadPredictions(const std::string& path);

// The predictions JSON of (id, text) pairs in the given order, indented by 4 as run_squad.py
// writes it, with a final newline.
std::string SquadPredictionsJson(const std::vector<std::pair<std::string, std::string>>& items);
// Writes SquadPredictionsJson(items) to `path` atomically.
[[nodiscard]] absl::Status WriteSquadPredictions(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& items);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_SQUAD_DATASET_H_
