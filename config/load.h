// Loading, overriding and validating a run's configuration (config/config.proto).
//
// A config file is protobuf text format. LoadConfig parses it (unknown fields are errors),
// applies `--set path=value` overrides in order, fills documented defaults, and validates. Every
// error is one line naming the file (or the flag) and the field, e.g.
//
//   configs/x.textproto: model.num_heads: 12 does not divide model.d_model 1000; set
//   model.head_size for fixed head size attention, or choose num_heads dividing d_model
//
// Example:
//   absl::StatusOr<ExperimentConfig> c = LoadConfig("configs/demo.textproto",
//   {"model.num_layers=2"}); if (!c.ok()) { std::cerr << c.status().message() << "\n"; return 1; }
#ifndef HEADROOM_CONFIG_LOAD_H_
#define HEADROOM_CONFIG_LOAD_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/config.pb.h"

namespace headroom {

// Parses text-format `text` (named `source` in errors) into a config, applies `overrides`
// ("model.num_heads=16", later ones win), fills defaults and validates.
[[nodiscard]] absl::StatusOr<ExperimentConfig> ParseConfig(
    absl::string_view text, const std::string& source,
    const std::vector<std::string>& overrides = {});

// ParseConfig's first half: parses `text` and applies `overrides`, without filling defaults or
// validating, for configs completed elsewhere (headroom finetune takes its model from the
// checkpoint it starts from).
[[nodiscard]] absl::StatusOr<ExperimentConfig> ParseConfigUnvalidated(
    absl::string_view text, const std::string& source,
    const std::vector<std::string>& overrides = {});

// Reads `path` and calls ParseConfig. When the file has no `name`, the file's stem is used.
[[nodiscard]] absl::StatusOr<ExperimentConfig> LoadConfig(
    const std::string& path, const std::vector<std::string>& overrides = {});

// Sets one field from "dotted.path=value" (value in text-format syntax; strings may be unquoted,
// enums by name). Repeated fields get the value appended. Errors name the override.
[[nodiscard]] absl::Status ApplyOverride(ExperimentConfig& config, absl::string_view override_spec);

// Fills every unset optional field with its documented default (those of `finetune` only when
// the config has a finetune block; they depend on finetune.task).
void FillDefaults(ExperimentConfig& config);

// Checks sizes, rates and consistency. `source` prefixes every message.
[[nodiscard]] absl::Status ValidateConfig(const ExperimentConfig& config,
                                          const std::string& source);

// Checks the finetune block alone (part of ValidateConfig; a finetune block with no model yet
// skips the checks against model.max_positions).
[[nodiscard]] absl::Status ValidateFineTuneConfig(const ExperimentConfig& config,
                                                  const std::string& source);

// The head size in use: model.head_size, or d_model / num_heads when it is 0.
int HeadSize(const ModelConfig& model);

// True when the config uses fixed head size attention (head_size set and != d_model/num_heads).
bool IsFixedHeadSize(const ModelConfig& model);

// The shape a config trains at: data.seq_length (model.max_positions when 0) and, for BERT,
// the masked slots per sequence (data.max_predictions_per_seq, or round(seq * masked_lm_prob)
// when 0); masked is 0 for the causal LM.
struct SequenceShape {
  int seq = 0;
  int masked = 0;
};
SequenceShape TrainingSequenceShape(const ExperimentConfig& config);

// model.output_bias, true (its default) when unset: configs written before the field existed,
// such as older checkpoints', and ones built in code keep BERT's output bias.
bool HasOutputBias(const ModelConfig& model);

}  // namespace headroom

#endif  // HEADROOM_CONFIG_LOAD_H_
