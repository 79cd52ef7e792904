// `headroom export --checkpoint DIR --output FILE.safetensors`: writes a checkpoint's weights
// alone as one safetensors file (Hugging Face BertForPreTraining names for BERT), atomically.
// The checkpoint is validated on the way (trainer/checkpoint.h); an existing output is replaced
// only by a complete file.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "model/parameter_layout.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/checkpoint.h"
#include "trainer/safetensors.h"

ABSL_FLAG(std::string, output, "", "the safetensors file to write");

namespace headroom {

int RunExport(const CommandArgs& args) {
  (void)args;
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (checkpoint.empty() || output.empty()) {
    return Fail("export", "--checkpoint DIR and --output FILE.safetensors are required");
  }
  absl::StatusOr<std::string> dir = ResolveCheckpoint(checkpoint);
  if (!dir.ok()) return Fail("export", std::string(dir.status().message()));
  absl::StatusOr<Checkpoint> ck = LoadCheckpoint(*dir, nullptr, /*with_optimizer=*/false);
  if (!ck.ok()) return Fail("export", std::string(ck.status().message()));
  const ParameterLayout layout = ParameterLayout::ForModel(ck->config.model());
  SafeTensorsWriter w;
  w.SetMetadata("format", "pt");
  w.SetMetadata("headroom_step", absl::StrCat(ck->state.step));
  for (const TensorSpec& t : layout.tensors()) {
    absl::Status s = w.AddF32(t.name, t.shape, ck->params.data() + t.offset);
    if (!s.ok()) return Fail("export", std::string(s.message()));
  }
  absl::Status s = w.Write(output);
  if (!s.ok()) return Fail("export", std::string(s.message()));
  std::printf("wrote %s: %zu tensors, %lld parameters, from %s\n", output.c_str(),
              layout.tensors().size(), static_cast<long long>(layout.total()), dir->c_str());
  return 0;
}

}  // namespace headroom
