// Checkpoints: one directory per optimizer step, written atomically, resumable exactly.
//
// Layout (RUN_DIR/checkpoints/step-00001000/):
//   model.safetensors       the weights, one F32 tensor per ParameterLayout entry under its name
//                           (Hugging Face BertForPreTraining names for BERT, so the file loads
//                           there; "lm." names for the causal LM). `headroom export` copies it.
//   optimizer.safetensors   the Adam moments: "<name>.exp_avg" (m) and "<name>.exp_avg_sq" (v)
//                           for every parameter tensor (torch.optim's names), F32
//   trainer_state.json      {"format": 1, "step": optimizer steps done, "seed": run seed,
//                            "loader_state": the data loader's position (text), "rng_state":
//                            hex of any other host RNG state, "loss": the last step's loss}
//   config.textproto        the full ExperimentConfig of the run (protobuf text format)
//
// Atomicity: everything is written into RUN_DIR/checkpoints/.tmp-step-00001000-<pid>/, each file
// fsynced, the directory fsynced, then renamed to step-00001000 and the parent fsynced. A
// directory named step-NNNNNNNN is therefore always complete; a crash (or a full disk) during a
// write leaves at most a .tmp-* directory, which the next SaveCheckpoint removes, and the earlier
// checkpoints untouched (a failed save removes its own .tmp-* directory at once). Every byte goes
// through trainer/safetensors.h's WriteAllToFd, whose fault injection
// (HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES, tests only) simulates a disk filling up. Retention
// deletes the oldest complete checkpoints beyond `keep` by first renaming them to a .tmp-* name, so
// a half-deleted directory never looks complete.
//
// Checkpoints are untrusted on load: the safetensors reader validates both files
// (trainer/safetensors.h), every tensor must exist with exactly the layout's shape, and the JSON
// state is type-checked. LoadCheckpoint with an expected model refuses a checkpoint of another
// architecture with "checkpoint DIR is for a different model: model.num_heads is 12 in the
// checkpoint, 16 in the config".
//
// Example:
//   TrainerState st{.step = 1000, .seed = 1234, .loader_state = ..., .config_text = ...};
//   HR_ASSIGN_OR_RETURN(std::string dir,
//                       SaveCheckpoint(run_dir, layout, params, m, v, st, /*keep=*/3));
//   ...
//   HR_ASSIGN_OR_RETURN(std::string latest, LatestCheckpoint(run_dir));
//   HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(latest, &config.model()));
#ifndef HEADROOM_TRAINER_CHECKPOINT_H_
#define HEADROOM_TRAINER_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "model/parameter_layout.h"

namespace headroom {

// Everything but the tensors.
struct TrainerState {
  int64_t step = 0;          // optimizer steps completed (the checkpoint's name)
  uint64_t seed = 0;         // the run's seed (train.seed)
  std::string loader_state;  // the loader's position, opaque here (text format of LoaderState)
  std::string rng_state;     // any other host RNG state, opaque bytes (may be empty)
  double loss = 0;           // loss of the last step before the checkpoint (for logs)
  std::string config_text;   // the ExperimentConfig, protobuf text format
};

// A loaded checkpoint: the state, the parsed config and host copies of the tensors.
struct Checkpoint {
  std::string dir;
  TrainerState state;
  ExperimentConfig config;
  std::vector<float> params;  // layout order, layout.total() elements
  std::vector<float> m, v;    // empty unless loaded with the optimizer state
};

// RUN_DIR/checkpoints/step-NNNNNNNN (8 digits, more when the step needs them).
std::string CheckpointDir(const std::string& run_dir, int64_t step);

// Writes a checkpoint of `layout.total()`-element host buffers params, m, v (m and v may be
// null: the moments are then saved as zeros) and `state`, then deletes the oldest complete
// checkpoints beyond `keep` (keep <= 0 keeps all). Returns the directory written. Refuses
// (FailedPrecondition, nothing written) parameters with a NaN or Inf, naming the tensor. I/O
// errors name the path; the earlier checkpoints are never touched by a failed save.
[[nodiscard]] absl::StatusOr<std::string> SaveCheckpoint(const std::string& run_dir,
                                                         const ParameterLayout& layout,
                                                         const float* params, const float* m,
                                                         const float* v, const TrainerState& state,
                                                         int keep);

// Complete checkpoint directories of a run, oldest first (empty when there are none).
std::vector<std::string> ListCheckpoints(const std::string& run_dir);

// The newest complete checkpoint of a run; NotFound naming the run directory when none.
[[nodiscard]] absl::StatusOr<std::string> LatestCheckpoint(const std::string& run_dir);

// `path` itself if it is a checkpoint directory, else the newest checkpoint of the run
// directory `path` (what --checkpoint accepts). NotFound otherwise.
[[nodiscard]] absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path);

// Loads checkpoint directory `dir`. With `expected` (the model of the config being resumed or
// evaluated) a checkpoint of a different architecture is FailedPrecondition (see the file
// comment); the layout comes from the checkpoint's own config (ParameterLayout::ForExperiment: a
// fine-tuning checkpoint holds its task head too). `with_optimizer` also loads m, v.
[[nodiscard]] absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& dir,
                                                        const ModelConfig* expected = nullptr,
                                                        bool with_optimizer = true);

// OK when `a` and `b` give the same parameter shapes (objective, vocabulary, positions, token
// types, layers, d_model, heads, head size, FFN size, output-embedding tying); otherwise
// FailedPrecondition listing the differences ("model.num_heads is 12 in the checkpoint, 16 in
// the config"), prefixed with "checkpoint <what> is for a different model: ".
[[nodiscard]] absl::Status CheckSameModel(const ModelConfig& checkpoint, const ModelConfig& config,
                                          const std::string& what);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_CHECKPOINT_H_
