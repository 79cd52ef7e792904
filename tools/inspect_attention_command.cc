// `headroom inspect-attention (--checkpoint DIR | --config FILE) [--data GLOB]
// [--probe_sequences=4] [--probe_seed=1] [--rank_rtol=1e-6] [--device cpu|cuda]`: per layer and
// head, the numerical rank, stable rank and row entropy of the attention logits on a probe batch
// (analysis/attention_rank.h). The model is a checkpoint's (a checkpoint or run directory) or,
// with --config alone, a freshly initialised one (seed train.seed). The probe batch is the first
// --probe_sequences sequences of --data (unshuffled), or a random-token batch (seed
// --probe_seed) without it. --checkpoint, --config, --data and --device are shared with other
// commands (tools/common_flags.h).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "analysis/attention_rank.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "model/batch.h"
#include "model/transformer.h"
#include "tools/command.h"
#include "tools/common_flags.h"
#include "trainer/batch_slice.h"
#include "trainer/checkpoint.h"
#include "trainer/data_source.h"

ABSL_FLAG(int, probe_sequences, 4, "sequences in the probe batch");
ABSL_FLAG(uint64_t, probe_seed, 1, "seed of the random-token probe batch (without --data)");
ABSL_FLAG(double, rank_rtol, 1e-6,
          "numerical rank threshold relative to the largest singular value (<= 0: NumPy's "
          "sigma_max * S * eps)");

namespace headroom {

namespace {

// The first `rows` sequences of shards `files` as a model batch (the trainer's feature names).
absl::StatusOr<Batch> ProbeFromData(const ModelConfig& m, const std::string& files, int rows,
                                    int seq, int max_pred) {
  const bool bert = m.objective() == ModelConfig::BERT;
  HR_ASSIGN_OR_RETURN(std::unique_ptr<BatchSource> src,
                      OpenBatchSource(m, files, seq, bert ? max_pred : 0, rows, /*seed=*/1,
                                      /*shuffle=*/false));
  HR_ASSIGN_OR_RETURN(FeatureBatch f, src->Next());
  return SliceBatch(f, bert, 0, rows, seq, max_pred);
}

absl::Status Inspect(const CommandArgs& args) {
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (checkpoint.empty() == config_path.empty()) {
    return absl::InvalidArgumentError("give exactly one of --checkpoint DIR and --config FILE");
  }
  const int rows = absl::GetFlag(FLAGS_probe_sequences);
  if (rows <= 0) return absl::InvalidArgumentError("--probe_sequences must be > 0");
  HR_ASSIGN_OR_RETURN(DeviceKind device, ParseDevice(absl::GetFlag(FLAGS_device)));

  ExperimentConfig config;
  std::vector<float> params;
  std::string source;
  if (!checkpoint.empty()) {
    HR_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(checkpoint));
    HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(dir, nullptr, /*with_optimizer=*/false));
    config = std::move(ck.config);
    params = std::move(ck.params);
    source = absl::StrCat(dir, " (step ", ck.state.step, ")");
  } else {
    HR_ASSIGN_OR_RETURN(config, LoadConfig(config_path, args.overrides));
    source = absl::StrCat(config_path, " (random init, seed ", config.train().seed(), ")");
  }
  const ModelConfig& m = config.model();
  const int seq = config.data().seq_length();
  const int max_pred = config.data().max_predictions_per_seq();

  HR_ASSIGN_OR_RETURN(std::unique_ptr<Ops<float>> ops, MakeOps(device));
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> model,
                      Model<float>::Create(m, ops.get(), {rows, seq, max_pred}));
  if (params.empty()) {
    model->InitParameters(config.train().seed());
  } else {
    model->CopyParametersToDevice(params.data());
  }
  Batch probe;
  const std::string data = absl::GetFlag(FLAGS_data);
  if (!data.empty()) {
    HR_ASSIGN_OR_RETURN(probe, ProbeFromData(m, data, rows, seq, max_pred));
  } else {
    probe = RandomBatch(m, rows, seq, max_pred, absl::GetFlag(FLAGS_probe_seed));
  }
  AttentionRankOptions o;
  o.rank_rtol = absl::GetFlag(FLAGS_rank_rtol);
  HR_ASSIGN_OR_RETURN(std::vector<HeadRankStats> stats,
                      AttentionRankDiagnostics(model.get(), probe, o));
  const int dp = m.head_size() > 0 ? m.head_size() : m.d_model() / m.num_heads();
  std::printf("model %s: %d layers, d=%d, %d heads of d_p=%d (%s), S=%d\n", source.c_str(),
              m.num_layers(), m.d_model(), m.num_heads(), dp,
              m.head_size() > 0 && m.head_size() * m.num_heads() != m.d_model() ? "fixed head size"
                                                                                : "standard",
              seq);
  // The entropy of uniform attention, for scale: log S, or the mean of log(q + 1) under the
  // causal mask (query q sees q + 1 keys).
  double uniform = std::log(static_cast<double>(seq));
  if (m.objective() == ModelConfig::CAUSAL_LM) {
    uniform = 0;
    for (int q = 0; q < seq; ++q) uniform += std::log(q + 1.0) / seq;
  }
  const std::string threshold = o.rank_rtol > 0 ? absl::StrCat(o.rank_rtol, " * sigma_max")
                                                : std::string("sigma_max * S * eps");
  std::printf(
      "probe: %d sequences of %s; rank: singular values > %s; entropy in nats (uniform "
      "attention: %.3f)\n",
      rows, data.empty() ? "random tokens" : data.c_str(), threshold.c_str(), uniform);
  std::printf("%s", FormatAttentionRankTable(stats).c_str());
  return absl::OkStatus();
}

}  // namespace

int RunInspectAttention(const CommandArgs& args) {
  absl::Status s = Inspect(args);
  if (!s.ok()) return Fail("inspect-attention", std::string(s.message()));
  return 0;
}

}  // namespace headroom
