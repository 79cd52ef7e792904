// `headroom eval --checkpoint DIR --data GLOB [--eval_batches N] [--batch N] [--device cpu|cuda]
// [--unigram_data TRAIN_GLOB]`: evaluates a checkpoint (a checkpoint directory, or a run directory
// for its newest one, named on stderr with its step) with dropout off and prints one line of
// key=value pairs:
// "loss=... perplexity=... accuracy=... sequences=... tokens=..." for a causal LM,
// "loss=... mlm_accuracy=... nsp_accuracy=..." for BERT (trainer/trainer.h). With
// --unigram_data TRAIN_GLOB the line goes on with the baselines of the training shards' label
// frequencies, scored on the very examples the model was scored on (trainer/unigram.h): for a
// causal LM "unigram_loss=... unigram_perplexity=..." (the add-one smoothed unigram model); for
// BERT "unigram_mlm_loss=... unigram_mlm_accuracy=... majority_nsp_accuracy=...
// baseline_nsp_loss=... baseline_loss=..." (the unigram model of the masked tokens, the
// majority next-sentence class, and their loss in the model's loss's terms). --checkpoint, --data,
// --device and
// --batch are shared with other commands (tools/common_flags.h).
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"
#include "trainer/unigram.h"

ABSL_FLAG(int64_t, eval_batches, 100, "batches to evaluate (fewer if the data ends first)");
ABSL_FLAG(std::string, unigram_data, "",
          "training shards whose label frequencies give the baselines, scored on the same "
          "examples: the unigram perplexity (causal LM); the unigram masked-LM loss and accuracy "
          "and the majority next-sentence accuracy (BERT)");

namespace headroom {
namespace {

// " unigram_loss=..." (causal LM) or " unigram_mlm_loss=..." (BERT): the baselines of
// `train_files` scored on the examples `r` was scored on (trainer/unigram.h). The vocabulary and
// (without --data) the evaluation shards come from the checkpoint `dir`.
absl::StatusOr<std::string> Baselines(const std::string& dir, const EvalResult& r,
                                      const std::string& train_files) {
  HR_ASSIGN_OR_RETURN(ExperimentConfig config, LoadConfig(dir + "/config.textproto"));
  const std::string data =
      absl::GetFlag(FLAGS_data).empty() ? config.data().eval_files() : absl::GetFlag(FLAGS_data);
  const int64_t vocab_size = config.model().vocab_size();
  if (r.bert) {
    HR_ASSIGN_OR_RETURN(BertBaselineResult b,
                        BertUnigramBaseline(vocab_size, train_files, data, r.sequences));
    if (b.sequences != r.sequences) {
      return absl::FailedPreconditionError(absl::StrCat("the baselines read ", b.sequences,
                                                        " examples, the model ", r.sequences,
                                                        "; not comparable"));
    }
    return absl::StrFormat(
        " unigram_mlm_loss=%.6f unigram_mlm_accuracy=%.6f majority_nsp_accuracy=%.6f "
        "baseline_nsp_loss=%.6f baseline_loss=%.6f",
        b.mlm_loss, b.mlm_accuracy, b.nsp_accuracy, b.nsp_loss, b.loss);
  }
  HR_ASSIGN_OR_RETURN(UnigramResult u,
                      UnigramPerplexity(vocab_size, train_files, data, r.sequences));
  if (u.tokens != r.tokens) {  // both read the first r.sequences examples in loader order
    return absl::FailedPreconditionError(absl::StrCat("the unigram baseline scored ", u.tokens,
                                                      " tokens, the model ", r.tokens,
                                                      "; not comparable"));
  }
  return absl::StrFormat(" unigram_loss=%.6f unigram_perplexity=%.4f", u.loss, u.perplexity);
}

}  // namespace

int RunEval(const CommandArgs& args) {
  (void)args;
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  if (checkpoint.empty()) return Fail("eval", "--checkpoint DIR is required");
  const int batch = absl::GetFlag(FLAGS_batch);
  if (batch < 0) {
    return Fail("eval", absl::StrCat("--batch must be >= 0 (got ", batch,
                                     "); 0 means train.micro_batch_size, else the global batch"));
  }
  absl::StatusOr<DeviceKind> device = ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail("eval", std::string(device.status().message()));
  // A run directory stands for its newest checkpoint: say which step that is.
  std::string chosen;
  absl::StatusOr<std::string> dir = ResolveCheckpoint(checkpoint, &chosen);
  if (!dir.ok()) return Fail("eval", std::string(dir.status().message()));
  absl::StatusOr<EvalResult> r = EvaluateCheckpoint(
      *dir, absl::GetFlag(FLAGS_data), absl::GetFlag(FLAGS_eval_batches), batch, *device);
  if (!r.ok()) return Fail("eval", std::string(r.status().message()));
  std::string line = r->ToString();
  const std::string unigram_data = absl::GetFlag(FLAGS_unigram_data);
  if (!unigram_data.empty()) {
    absl::StatusOr<std::string> baselines = Baselines(*dir, *r, unigram_data);
    if (!baselines.ok()) return Fail("eval", std::string(baselines.status().message()));
    absl::StrAppend(&line, *baselines);
  }
  // After the work, so that a failure stays one line.
  if (!chosen.empty()) std::fprintf(stderr, "eval: scored %s\n", chosen.c_str());
  std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace headroom
