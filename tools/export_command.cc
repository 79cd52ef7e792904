// `headroom export --checkpoint DIR --output FILE.safetensors`: writes a checkpoint's weights
// alone as one safetensors file (Hugging Face BertForPreTraining names for BERT; a fine-tuned
// checkpoint adds its qa_outputs / classifier head) and Hugging Face's config.json beside it
// (trainer/hugging_face.h; fixed head size adds "head_size", which stock transformers cannot
// load), atomically. The checkpoint is validated on the way (trainer/checkpoint.h); an existing
// output is replaced only by a complete file. A run directory stands for its newest
// checkpoint, named on stderr.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "model/parameter_layout.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/checkpoint.h"
#include "trainer/hugging_face.h"

ABSL_FLAG(std::string, output, "", "the safetensors file to write");

namespace headroom {

int RunExport(const CommandArgs& args) {
  (void)args;
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (checkpoint.empty() || output.empty()) {
    return Fail("export", "--checkpoint DIR and --output FILE.safetensors are required");
  }
  std::string chosen;
  absl::StatusOr<std::string> dir = ResolveCheckpoint(checkpoint, &chosen);
  if (!dir.ok()) return Fail("export", std::string(dir.status().message()));
  absl::StatusOr<Checkpoint> ck = LoadCheckpoint(*dir, nullptr, /*with_optimizer=*/false);
  if (!ck.ok()) return Fail("export", std::string(ck.status().message()));
  absl::StatusOr<std::string> config_json = ExportHuggingFace(*ck, output);
  if (!config_json.ok()) return Fail("export", std::string(config_json.status().message()));
  if (!chosen.empty()) std::fprintf(stderr, "export: exported %s\n", chosen.c_str());
  const ParameterLayout layout = ParameterLayout::ForExperiment(ck->config);
  std::printf("wrote %s: %zu tensors, %lld parameters, from %s; and %s\n", output.c_str(),
              layout.tensors().size(), static_cast<long long>(layout.num_parameters()),
              dir->c_str(), config_json->c_str());
  return 0;
}

}  // namespace headroom
