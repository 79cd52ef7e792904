// `headroom eval --checkpoint DIR --data GLOB [--eval_batches N] [--batch N] [--device cpu|cuda]
// [--unigram_data TRAIN_GLOB]`: evaluates a checkpoint (a checkpoint directory, or a run directory
// for its newest one) with dropout off and prints one line of key=value pairs:
// "loss=... perplexity=... accuracy=... sequences=... tokens=..." for a causal LM,
// "loss=... mlm_accuracy=... nsp_accuracy=..." for BERT (trainer/trainer.h). With
// --unigram_data (causal LM) the line goes on with "unigram_loss=... unigram_perplexity=...":
// the add-one smoothed unigram model of the training shards' token frequencies scored on the
// very tokens the model was scored on (trainer/unigram.h). --checkpoint, --data, --device and
// --batch are shared with other commands (tools/common_flags.h).
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "config/load.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"
#include "trainer/unigram.h"

ABSL_FLAG(int64_t, eval_batches, 100, "batches to evaluate (fewer if the data ends first)");
ABSL_FLAG(std::string, unigram_data, "",
          "causal LM: training shards whose token frequencies (add-one smoothed) give the unigram "
          "baseline, scored on the same tokens and printed as unigram_perplexity");

namespace headroom {

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
  absl::StatusOr<EvalResult> r = EvaluateCheckpoint(
      checkpoint, absl::GetFlag(FLAGS_data), absl::GetFlag(FLAGS_eval_batches), batch, *device);
  if (!r.ok()) return Fail("eval", std::string(r.status().message()));
  std::string line = r->ToString();
  const std::string unigram_data = absl::GetFlag(FLAGS_unigram_data);
  if (!unigram_data.empty()) {
    // The vocabulary and (without --data) the evaluation shards come from the checkpoint.
    absl::StatusOr<std::string> dir = ResolveCheckpoint(checkpoint);
    if (!dir.ok()) return Fail("eval", std::string(dir.status().message()));
    absl::StatusOr<ExperimentConfig> config = LoadConfig(*dir + "/config.textproto");
    if (!config.ok()) return Fail("eval", std::string(config.status().message()));
    if (r->bert) return Fail("eval", "--unigram_data is for causal LM checkpoints, this is BERT");
    const std::string data =
        absl::GetFlag(FLAGS_data).empty() ? config->data().eval_files() : absl::GetFlag(FLAGS_data);
    absl::StatusOr<UnigramResult> u =
        UnigramPerplexity(config->model().vocab_size(), unigram_data, data, r->sequences);
    if (!u.ok()) return Fail("eval", std::string(u.status().message()));
    if (u->tokens != r->tokens) {  // both read the first r->sequences examples in loader order
      return Fail("eval", absl::StrCat("the unigram baseline scored ", u->tokens,
                                       " tokens, the model ", r->tokens, "; not comparable"));
    }
    absl::StrAppend(&line, absl::StrFormat(" unigram_loss=%.6f unigram_perplexity=%.4f", u->loss,
                                           u->perplexity));
  }
  std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace headroom
