// `headroom finetune --task=squad|mnli|classify --init_checkpoint=CK --train_file=FILE
// --dev_file=FILE[,FILE] --output_dir=DIR [--config FT.textproto] [--set FIELD=VALUE]...
// [--device cpu|cuda] [--resume] [--steps N]`: fine-tunes a pre-trained BERT
// (finetune/finetune.h) and prints the dev metrics as one key=value line at the end:
// `exact_match=... f1=...` (SQuAD), `accuracy=...` (classify), `accuracy_matched=...
// accuracy_mismatched=...` (MNLI). --config, --device, --steps, --resume and --output_dir are
// shared with other commands (tools/common_flags.h); --steps counts here only when given.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "finetune/finetune.h"
#include "tools/command.h"
#include "tools/common_flags.h"

ABSL_FLAG(std::string, task, "", "fine-tuning task: squad, mnli or classify");
ABSL_FLAG(std::string, init_checkpoint, "",
          "headroom checkpoint or run directory, or a Hugging Face .safetensors file with "
          "config.json (and vocab.txt) beside it");
ABSL_FLAG(std::string, train_file, "",
          "training data: SQuAD v1.1 JSON, GLUE MNLI train.tsv, or a TSV with sentence/label");
ABSL_FLAG(std::string, dev_file, "",
          "dev data, comma-separated (MNLI: dev_matched.tsv,dev_mismatched.tsv)");

namespace headroom {

int RunFineTune(const CommandArgs& args) {
  if (!args.positional.empty()) {
    return Fail("finetune", "unexpected argument '" + args.positional[0] + "'; see --help");
  }
  absl::StatusOr<ExperimentConfig> config =
      LoadFineTuneConfig(absl::GetFlag(FLAGS_config), absl::GetFlag(FLAGS_task), args.overrides);
  if (!config.ok()) return Fail("finetune", std::string(config.status().message()));
  absl::StatusOr<DeviceKind> device = ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return Fail("finetune", std::string(device.status().message()));
  FineTuneOptions o;
  o.config = *config;
  if (!absl::GetFlag(FLAGS_config).empty()) o.config_source = absl::GetFlag(FLAGS_config);
  o.init_checkpoint = absl::GetFlag(FLAGS_init_checkpoint);
  o.train_file = absl::GetFlag(FLAGS_train_file);
  for (absl::string_view f :
       absl::StrSplit(absl::GetFlag(FLAGS_dev_file), ',', absl::SkipEmpty())) {
    o.dev_files.emplace_back(f);
  }
  o.output_dir = absl::GetFlag(FLAGS_output_dir);
  o.device = *device;
  o.resume = absl::GetFlag(FLAGS_resume);
  if (FlagGiven(args, "steps")) {
    if (absl::GetFlag(FLAGS_steps) <= 0) return Fail("finetune", "--steps must be > 0");
    o.max_steps = absl::GetFlag(FLAGS_steps);
  }
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  if (!r.ok()) return Fail("finetune", std::string(r.status().message()));
  if (!r->metrics.empty()) std::printf("%s\n", r->ResultLine().c_str());
  return 0;
}

}  // namespace headroom
