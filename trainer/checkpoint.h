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
//   manifest.json           {"format": 1, "files": {"model.safetensors": {"bytes": N,
//                            "crc32c": "8 hex digits"}, ...}}: size and CRC32C (data/crc32c.h,
//                            unmasked) of each of the four files above, written last
//
// Integrity: LoadCheckpoint (eval, export, --resume) checks that every file is there and
// matches the manifest before using it, and that the weights and moments are finite. A damaged
// checkpoint is one DataLoss line naming the directory, the file and what to do; resume skips it
// for the newest intact one with a warning (LoadLatestIntactCheckpoint). Checkpoints written
// before manifests existed (trainer_state.json without "manifest") still load, unverified.
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
// Checkpoints are untrusted on load: besides the manifest, the safetensors reader validates both
// files (trainer/safetensors.h), every tensor must exist with exactly the layout's shape, and the
// JSON state is type-checked. LoadCheckpoint with an expected model refuses a checkpoint of another
// architecture with "checkpoint DIR is for a different model: model.num_heads is 12 in the
// checkpoint, 16 in the config".
//
// Example:
//   TrainerState st{.step = 1000, .seed = 1234, .loader_state = ..., .config_text = ...};
//   HR_ASSIGN_OR_RETURN(std::string dir,
//                       SaveCheckpoint(run_dir, layout, params, m, v, st, /*keep=*/3));
//   ...
//   std::vector<std::string> warnings;  // damaged newer checkpoints, skipped
//   HR_ASSIGN_OR_RETURN(Checkpoint ck,
//                       LoadLatestIntactCheckpoint(run_dir, &config.model(), &warnings));
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

// The checkpoint directories (step-NNNNNNNN) of a run, oldest first (empty when there are none).
// Saves in progress (.tmp-*) are not listed. A listed directory was complete when it was renamed
// into place; whether it is still intact is for LoadCheckpoint to find out.
std::vector<std::string> ListCheckpoints(const std::string& run_dir);

// The newest checkpoint of a run; NotFound naming the run directory when none.
[[nodiscard]] absl::StatusOr<std::string> LatestCheckpoint(const std::string& run_dir);

// `path` itself if it is a checkpoint directory (named step-NNNNNNNN or holding a checkpoint
// file), else the newest checkpoint of the run directory `path` (what --checkpoint accepts);
// NotFound otherwise. For a run directory, `chosen` (when not null) receives "DIR (step N), the
// newest checkpoint of run directory PATH" so that a command can say which step it uses; it is
// cleared for a checkpoint directory. The newest is chosen even when damaged: loading it then
// names the damage instead of silently using an older step.
[[nodiscard]] absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path,
                                                            std::string* chosen = nullptr);

// Loads checkpoint directory `dir`. With `expected` (the model of the config being resumed or
// evaluated) a checkpoint of a different architecture is FailedPrecondition (see the file
// comment); the layout comes from the checkpoint's own config (ParameterLayout::ForExperiment: a
// fine-tuning checkpoint holds its task head too). `with_optimizer` also loads m, v.
// A damaged checkpoint is DataLoss, one line naming `dir`, the file and what to do: a missing
// file, a size or CRC32C that differs from manifest.json, a file that does not parse, or a
// weight or moment that is NaN or Inf ("non-finite weights in FILE tensor NAME").
[[nodiscard]] absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& dir,
                                                        const ModelConfig* expected = nullptr,
                                                        bool with_optimizer = true);

// What --resume loads: the newest checkpoint of `run_dir` that LoadCheckpoint(dir, expected,
// with the optimizer state) accepts. Each newer one that is damaged (DataLoss) is skipped, and
// "checkpoint DIR is damaged, skipped: <reason>" is appended to `warnings` (may be null) for the
// caller to print. Other errors (e.g. a checkpoint of another model) are returned as they are.
// NotFound when the run has no checkpoint; DataLoss naming the newest damage when none is intact.
[[nodiscard]] absl::StatusOr<Checkpoint> LoadLatestIntactCheckpoint(
    const std::string& run_dir, const ModelConfig* expected, std::vector<std::string>* warnings);

// OK when `a` and `b` give the same parameter shapes (objective, vocabulary, positions, token
// types, layers, d_model, heads, head size, FFN size, output-embedding tying); otherwise
// FailedPrecondition listing the differences ("model.num_heads is 12 in the checkpoint, 16 in
// the config"), prefixed with "checkpoint <what> is for a different model: ".
[[nodiscard]] absl::Status CheckSameModel(const ModelConfig& checkpoint, const ModelConfig& config,
                                          const std::string& what);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_CHECKPOINT_H_
