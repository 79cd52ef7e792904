// `headroom params CONFIG...`: one row per config with its exact parameter count (from the
// model's ParameterLayout, the same one training allocates) and training FLOPs per token.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "config/load.h"
#include "model/parameter_layout.h"
#include "tools/command.h"
#include "tools/common_flags.h"

namespace headroom {

int RunParams(const CommandArgs& args) {
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "table" && format != "csv") {
    return Fail("params", absl::StrCat("--format=", format, ": expected table or csv"));
  }
  if (args.positional.empty()) {
    return Fail("params", "no config files given; e.g. headroom params configs/paper/*.textproto");
  }
  struct Row {
    std::string name, objective;
    int layers, d, heads, head_size, ffn, seq;
    int64_t params;
    double flops;
  };
  std::vector<Row> rows;
  for (const std::string& path : args.positional) {
    absl::StatusOr<ExperimentConfig> c = LoadConfig(path, args.overrides);
    if (!c.ok()) return Fail("params", std::string(c.status().message()));
    const ModelConfig& m = c->model();
    int seq = c->data().seq_length() > 0 ? c->data().seq_length() : m.max_positions();
    int masked = c->data().max_predictions_per_seq();
    if (masked == 0 && m.objective() == ModelConfig::BERT) {
      masked = static_cast<int>(std::lround(seq * c->data().masked_lm_prob()));
    }
    rows.push_back({c->name(), ModelConfig::Objective_Name(m.objective()), m.num_layers(),
                    m.d_model(), m.num_heads(), HeadSize(m), m.ffn_size(), seq,
                    ParameterLayout::ForModel(m).total(), TrainingFlopsPerToken(m, seq, masked)});
  }
  if (format == "csv") {
    std::printf(
        "config,objective,layers,d_model,heads,head_size,ffn,seq,params,params_m,"
        "train_flops_per_token\n");
    for (const Row& r : rows) {
      std::printf("%s\n", absl::StrFormat("%s,%s,%d,%d,%d,%d,%d,%d,%d,%.1f,%.4g", r.name,
                                          r.objective, r.layers, r.d, r.heads, r.head_size, r.ffn,
                                          r.seq, r.params, r.params / 1e6, r.flops)
                              .c_str());
    }
    return 0;
  }
  size_t w = 6;
  for (const Row& r : rows) w = std::max(w, r.name.size());
  std::printf("%s\n", absl::StrFormat("%-*s %-9s %6s %5s %5s %9s %5s %4s %13s %8s %12s", w,
                                      "config", "objective", "layers", "d", "heads", "head_size",
                                      "ffn", "seq", "params", "millions", "train_GFLOP/tok")
                          .c_str());
  for (const Row& r : rows) {
    std::printf("%s\n", absl::StrFormat("%-*s %-9s %6d %5d %5d %9d %5d %4d %13d %7.1fM %12.3f", w,
                                        r.name, r.objective, r.layers, r.d, r.heads, r.head_size,
                                        r.ffn, r.seq, r.params, r.params / 1e6, r.flops / 1e9)
                            .c_str());
  }
  return 0;
}

}  // namespace headroom
