// `headroom params CONFIG...`: one row per config with its exact parameter count (from the
// model's ParameterLayout, the same one training allocates), training FLOPs per token, and the
// memory one data-parallel rank holds for --ranks ranks at --zero_stage (trainer/
// memory_report.h: parameters, gradients and optimizer state, plus activations for
// --micro_batch sequences when given; rank 0's shard, as the trainer reports it).
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
#include "trainer/memory_report.h"

ABSL_FLAG(int, ranks, 1, "data-parallel ranks R for the memory per rank");
ABSL_FLAG(int, zero_stage, 0,
          "0: every rank holds the whole optimizer state; 1: ZeRO-1, each rank its 1/R shard");
ABSL_FLAG(int, micro_batch, 0,
          "sequences per micro-batch for the activation memory (0: activations not counted)");

namespace headroom {
namespace {

struct Row {
  std::string name, objective;
  int layers, d, heads, head_size, ffn, seq;
  int64_t params;
  double flops;
  MemoryPerRank memory;
};

void PrintCsv(const std::vector<Row>& rows, int ranks, int zero_stage) {
  std::printf(
      "config,objective,layers,d_model,heads,head_size,ffn,seq,params,params_m,"
      "train_flops_per_token,ranks,zero_stage,param_bytes_per_rank,grad_bytes_per_rank,"
      "optimizer_bytes_per_rank,activation_bytes_per_rank,total_bytes_per_rank\n");
  for (const Row& r : rows) {
    std::printf("%s\n", absl::StrFormat("%s,%s,%d,%d,%d,%d,%d,%d,%d,%.1f,%.4g,%d,%d,%d,%d,%d,%d,%d",
                                        r.name, r.objective, r.layers, r.d, r.heads, r.head_size,
                                        r.ffn, r.seq, r.params, r.params / 1e6, r.flops, ranks,
                                        zero_stage, r.memory.parameters, r.memory.gradients,
                                        r.memory.optimizer, r.memory.activations, r.memory.total())
                            .c_str());
  }
}

void PrintTable(const std::vector<Row>& rows, int ranks, int zero_stage, int micro_batch) {
  size_t w = 6;
  for (const Row& r : rows) w = std::max(w, r.name.size());
  std::printf(
      "# memory per rank (MB, rank 0's) at %d rank%s, zero_stage %d%s\n", ranks,
      ranks == 1 ? "" : "s", zero_stage,
      micro_batch > 0
          ? absl::StrCat(", activations of ", micro_batch, " sequences per micro-batch").c_str()
          : " (activations: pass --micro_batch)");
  std::printf("%s\n",
              absl::StrFormat("%-*s %-9s %6s %5s %5s %9s %5s %4s %13s %8s %12s %9s %9s %9s %9s "
                              "%9s",
                              w, "config", "objective", "layers", "d", "heads", "head_size", "ffn",
                              "seq", "params", "millions", "train_GFLOP/tok", "param_MB", "grad_MB",
                              "optim_MB", "activ_MB", "total_MB")
                  .c_str());
  for (const Row& r : rows) {
    std::printf("%s\n", absl::StrFormat("%-*s %-9s %6d %5d %5d %9d %5d %4d %13d %7.1fM %12.3f "
                                        "%9.1f %9.1f %9.1f %9.1f %9.1f",
                                        w, r.name, r.objective, r.layers, r.d, r.heads, r.head_size,
                                        r.ffn, r.seq, r.params, r.params / 1e6, r.flops / 1e9,
                                        r.memory.parameters / 1e6, r.memory.gradients / 1e6,
                                        r.memory.optimizer / 1e6, r.memory.activations / 1e6,
                                        r.memory.total() / 1e6)
                            .c_str());
  }
}

}  // namespace

int RunParams(const CommandArgs& args) {
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "table" && format != "csv") {
    return Fail("params", absl::StrCat("--format=", format, ": expected table or csv"));
  }
  if (args.positional.empty()) {
    return Fail("params", "no config files given; e.g. headroom params configs/paper/*.textproto");
  }
  MemoryPrediction p;
  p.ranks = absl::GetFlag(FLAGS_ranks);
  p.zero_stage = absl::GetFlag(FLAGS_zero_stage);
  p.micro_batch = absl::GetFlag(FLAGS_micro_batch);
  if (p.ranks < 1) return Fail("params", absl::StrCat("--ranks=", p.ranks, ": must be >= 1"));
  if (p.zero_stage != 0 && p.zero_stage != 1) {
    return Fail("params", absl::StrCat("--zero_stage=", p.zero_stage, ": must be 0 or 1"));
  }
  if (p.micro_batch < 0) {
    return Fail("params", absl::StrCat("--micro_batch=", p.micro_batch, ": must be >= 0"));
  }
  std::vector<Row> rows;
  for (const std::string& path : args.positional) {
    absl::StatusOr<ExperimentConfig> c = LoadConfig(path, args.overrides);
    if (!c.ok()) return Fail("params", std::string(c.status().message()));
    const ModelConfig& m = c->model();
    const SequenceShape shape = TrainingSequenceShape(*c);
    absl::StatusOr<MemoryPerRank> memory = PredictMemoryPerRank(*c, p);
    if (!memory.ok()) return Fail("params", absl::StrCat(path, ": ", memory.status().message()));
    rows.push_back({c->name(), ModelConfig::Objective_Name(m.objective()), m.num_layers(),
                    m.d_model(), m.num_heads(), HeadSize(m), m.ffn_size(), shape.seq,
                    ParameterLayout::ForModel(m).num_parameters(),
                    TrainingFlopsPerToken(m, shape.seq, shape.masked), *memory});
  }
  if (format == "csv") {
    PrintCsv(rows, p.ranks, p.zero_stage);
  } else {
    PrintTable(rows, p.ranks, p.zero_stage, p.micro_batch);
  }
  return 0;
}

}  // namespace headroom
