// `headroom squad-eval DATASET.json PREDICTIONS.json`: the official SQuAD v1.1 evaluation
// (finetune/squad_metric.h). Prints one JSON line {"exact_match": X, "f1": Y} (percent) on
// stdout as evaluate-v1.1.py does; a dataset whose version is not 1.1 and each unanswered
// question (scored 0) get a line on stderr, as there.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "finetune/squad_dataset.h"
#include "finetune/squad_metric.h"
#include "tools/command.h"

namespace headroom {

int RunSquadEval(const CommandArgs& args) {
  if (args.positional.size() != 2) {
    return Fail("squad-eval", "expected two arguments: DATASET.json PREDICTIONS.json");
  }
  absl::StatusOr<SquadDataset> dataset = ReadSquadDataset(args.positional[0]);
  if (!dataset.ok()) return Fail("squad-eval", std::string(dataset.status().message()));
  absl::StatusOr<SquadPredictions> predictions = ReadSquadPredictions(args.positional[1]);
  if (!predictions.ok()) return Fail("squad-eval", std::string(predictions.status().message()));
  if (dataset->version != "1.1") {
    std::fprintf(stderr, "Evaluation expects v-1.1, but got dataset with v-%s\n",
                 dataset->version.c_str());
  }
  absl::StatusOr<SquadMetrics> m = EvaluateSquad(*dataset, *predictions);
  if (!m.ok()) {
    return Fail("squad-eval", absl::StrCat(args.positional[0], ": ", m.status().message()));
  }
  for (const std::string& id : m->unanswered) {
    std::fprintf(stderr, "Unanswered question %s will receive score 0.\n", id.c_str());
  }
  std::printf("%s\n", m->ToJson().c_str());
  return 0;
}

}  // namespace headroom
