// Checkpoint directories: atomic save (temporary directory, fsync, rename), retention, discovery
// and validated load; see checkpoint.h for the layout.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "google/protobuf/text_format.h"
#include "nlohmann/json.hpp"
#include "trainer/safetensors.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kModelFile[] = "model.safetensors";
constexpr char kOptimizerFile[] = "optimizer.safetensors";
constexpr char kStateFile[] = "trainer_state.json";
constexpr char kConfigFile[] = "config.textproto";
constexpr char kStepPrefix[] = "step-";
constexpr char kTmpPrefix[] = ".tmp-";
constexpr int kFormat = 1;

std::string CheckpointsRoot(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints").string();
}

// The step of a directory name "step-NNNNNNNN", or -1.
int64_t StepOfName(const std::string& name) {
  if (!absl::StartsWith(name, kStepPrefix)) return -1;
  const std::string digits = name.substr(std::strlen(kStepPrefix));
  if (digits.size() < 8 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  int64_t step = 0;
  return absl::SimpleAtoi(digits, &step) ? step : -1;
}

bool IsComplete(const fs::path& dir) {
  std::error_code ec;
  for (const char* f : {kModelFile, kOptimizerFile, kStateFile, kConfigFile}) {
    if (!fs::is_regular_file(dir / f, ec)) return false;
  }
  return true;
}

absl::Status FsError(const std::string& what, const std::string& path, const std::error_code& ec) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", ec.message()));
}

// Writes `contents` to a new file `path` and fsyncs it (the directory is synced by the caller).
absl::Status WriteNewFile(const std::string& path, absl::string_view contents) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  absl::Status s = WriteAllToFd(fd, contents.data(), contents.size(), path);
  if (s.ok() && ::fsync(fd) != 0) {
    s = absl::InternalError(absl::StrCat(path, ": fsync failed: ", std::strerror(errno)));
  }
  ::close(fd);
  return s;
}

std::string StateJson(const TrainerState& st) {
  json j = {{"format", kFormat},
            {"step", st.step},
            {"seed", st.seed},
            {"loader_state", st.loader_state},
            {"rng_state", absl::BytesToHexString(st.rng_state)},
            {"loss", std::isfinite(st.loss) ? st.loss : 0.0}};
  return j.dump(2) + "\n";
}

absl::StatusOr<TrainerState> ParseStateJson(const std::string& text, const std::string& path) {
  auto bad = [&path](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  TrainerState st;
  auto format = j.find("format");
  if (format == j.end() || !format->is_number_integer() || format->get<int64_t>() != kFormat) {
    return bad(absl::StrCat("unknown \"format\" (this build reads format ", kFormat, ")"));
  }
  auto step = j.find("step");
  if (step == j.end() || !step->is_number_integer() || step->get<int64_t>() < 0) {
    return bad("\"step\" must be a non-negative integer");
  }
  st.step = step->get<int64_t>();
  auto seed = j.find("seed");
  if (seed == j.end() || !seed->is_number_unsigned())
    return bad("\"seed\" must be an integer >= 0");
  st.seed = seed->get<uint64_t>();
  for (auto [key, out] : {std::pair<const char*, std::string*>{"loader_state", &st.loader_state},
                          {"rng_state", &st.rng_state}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string())
      return bad(absl::StrCat("\"", key, "\" must be a string"));
    *out = it->get<std::string>();
  }
  if (st.rng_state.size() % 2 != 0 ||
      st.rng_state.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return bad("\"rng_state\" is not hexadecimal");
  }
  st.rng_state = absl::HexStringToBytes(st.rng_state);
  auto loss = j.find("loss");
  if (loss != j.end() && loss->is_number()) st.loss = loss->get<double>();
  return st;
}

// Removes `dir` after renaming it to a temporary name, so it never looks complete half-deleted.
void RemoveCheckpointDir(const fs::path& dir) {
  std::error_code ec;
  fs::path doomed = dir.parent_path() /
                    absl::StrCat(kTmpPrefix, "delete-", dir.filename().string(), "-", ::getpid());
  if (!fs::exists(dir, ec)) return;
  fs::rename(dir, doomed, ec);
  fs::remove_all(ec ? dir : doomed, ec);
}

}  // namespace

std::string CheckpointDir(const std::string& run_dir, int64_t step) {
  return (fs::path(CheckpointsRoot(run_dir)) / absl::StrFormat("%s%08d", kStepPrefix, step))
      .string();
}

absl::StatusOr<std::string> SaveCheckpoint(const std::string& run_dir,
                                           const ParameterLayout& layout, const float* params,
                                           const float* m, const float* v,
                                           const TrainerState& state, int keep) {
  // A NaN checkpoint would poison every resume: check before touching the disk.
  for (const TensorSpec& t : layout.tensors()) {
    for (int64_t i = 0; i < t.numel; ++i) {
      if (!std::isfinite(params[t.offset + i])) {
        return absl::FailedPreconditionError(absl::StrCat(
            "refusing to write the checkpoint of step ", state.step, ": parameter ", t.name,
            " has a non-finite value (", params[t.offset + i], ") at element ", i));
      }
    }
  }
  const std::string root = CheckpointsRoot(run_dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return FsError("cannot create the checkpoint directory", root, ec);
  // Leftovers of interrupted saves and deletions (ours or an earlier process's).
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (absl::StartsWith(e.path().filename().string(), kTmpPrefix)) {
      std::error_code ignored;
      fs::remove_all(e.path(), ignored);
    }
  }
  const std::string final_dir = CheckpointDir(run_dir, state.step);
  const std::string tmp_dir =
      (fs::path(root) /
       absl::StrCat(kTmpPrefix, fs::path(final_dir).filename().string(), "-", ::getpid()))
          .string();
  fs::create_directory(tmp_dir, ec);
  if (ec) return FsError("cannot create", tmp_dir, ec);

  absl::Status s = [&]() -> absl::Status {
    const std::string step_text = absl::StrCat(state.step);
    SafeTensorsWriter model;
    model.SetMetadata("format", "pt");
    model.SetMetadata("headroom_step", step_text);
    for (const TensorSpec& t : layout.tensors()) {
      HR_RETURN_IF_ERROR(model.AddF32(t.name, t.shape, params + t.offset));
    }
    HR_RETURN_IF_ERROR(model.Write((fs::path(tmp_dir) / kModelFile).string()));

    std::vector<float> zeros;
    if (m == nullptr || v == nullptr) zeros.assign(static_cast<size_t>(layout.total()), 0.0f);
    SafeTensorsWriter opt;
    opt.SetMetadata("headroom_step", step_text);
    for (const TensorSpec& t : layout.tensors()) {
      HR_RETURN_IF_ERROR(
          opt.AddF32(t.name + ".exp_avg", t.shape, (m ? m : zeros.data()) + t.offset));
      HR_RETURN_IF_ERROR(
          opt.AddF32(t.name + ".exp_avg_sq", t.shape, (v ? v : zeros.data()) + t.offset));
    }
    HR_RETURN_IF_ERROR(opt.Write((fs::path(tmp_dir) / kOptimizerFile).string()));
    HR_RETURN_IF_ERROR(WriteNewFile((fs::path(tmp_dir) / kStateFile).string(), StateJson(state)));
    HR_RETURN_IF_ERROR(WriteNewFile((fs::path(tmp_dir) / kConfigFile).string(), state.config_text));
    HR_RETURN_IF_ERROR(SyncDirectory(tmp_dir));
    // The same step saved again (e.g. a run re-saving after a resume): move the old one aside
    // first; rename(2) cannot replace a non-empty directory.
    if (fs::exists(final_dir, ec)) RemoveCheckpointDir(final_dir);
    fs::rename(tmp_dir, final_dir, ec);
    if (ec) return FsError("cannot rename the checkpoint into place", final_dir, ec);
    return SyncDirectory(root);
  }();
  if (!s.ok()) {
    fs::remove_all(tmp_dir, ec);
    return absl::Status(
        s.code(), absl::StrCat("checkpoint of step ", state.step, " not written: ", s.message()));
  }
  if (keep > 0) {
    std::vector<std::string> all = ListCheckpoints(run_dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
      RemoveCheckpointDir(all[i]);
    }
    (void)SyncDirectory(root);  // best effort: retention is not what the save promised
  }
  return final_dir;
}

std::vector<std::string> ListCheckpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(CheckpointsRoot(run_dir), ec)) {
    const int64_t step = StepOfName(e.path().filename().string());
    if (step >= 0 && e.is_directory(ec) && IsComplete(e.path())) {
      found.emplace_back(step, e.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [step, dir] : found) out.push_back(std::move(dir));
  return out;
}

absl::StatusOr<std::string> LatestCheckpoint(const std::string& run_dir) {
  std::vector<std::string> all = ListCheckpoints(run_dir);
  if (all.empty()) {
    return absl::NotFoundError(
        absl::StrCat(run_dir, ": no complete checkpoint under ", CheckpointsRoot(run_dir)));
  }
  return all.back();
}

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(path) / kStateFile, ec)) {
    if (!IsComplete(path)) {
      return absl::NotFoundError(absl::StrCat(path, ": incomplete checkpoint (a file is missing)"));
    }
    return path;
  }
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such checkpoint or run directory"));
  }
  return LatestCheckpoint(path);
}

absl::Status CheckSameModel(const ModelConfig& a, const ModelConfig& b, const std::string& what) {
  std::vector<std::string> diffs;
  auto cmp = [&](const char* field, auto x, auto y) {
    if (x != y)
      diffs.push_back(
          absl::StrCat("model.", field, " is ", x, " in the checkpoint, ", y, " in the config"));
  };
  cmp("objective", ModelConfig::Objective_Name(a.objective()),
      ModelConfig::Objective_Name(b.objective()));
  cmp("vocab_size", a.vocab_size(), b.vocab_size());
  cmp("max_positions", a.max_positions(), b.max_positions());
  cmp("type_vocab_size", a.type_vocab_size(), b.type_vocab_size());
  cmp("num_layers", a.num_layers(), b.num_layers());
  cmp("d_model", a.d_model(), b.d_model());
  cmp("num_heads", a.num_heads(), b.num_heads());
  cmp("head_size", HeadSize(a), HeadSize(b));
  cmp("ffn_size", a.ffn_size(), b.ffn_size());
  cmp("tie_output_embedding", a.tie_output_embedding() ? "true" : "false",
      b.tie_output_embedding() ? "true" : "false");
  if (diffs.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("checkpoint ", what, " is for a different model: ", absl::StrJoin(diffs, "; ")));
}

absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& dir, const ModelConfig* expected,
                                          bool with_optimizer) {
  Checkpoint ck;
  ck.dir = dir;
  const fs::path p(dir);
  if (!IsComplete(p)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a complete checkpoint (needs ", kModelFile,
                                            ", ", kOptimizerFile, ", ", kStateFile, ", ",
                                            kConfigFile, ")"));
  }
  HR_ASSIGN_OR_RETURN(std::string state_text, ReadFile((p / kStateFile).string()));
  HR_ASSIGN_OR_RETURN(ck.state, ParseStateJson(state_text, (p / kStateFile).string()));
  const std::string config_path = (p / kConfigFile).string();
  HR_ASSIGN_OR_RETURN(ck.state.config_text, ReadFile(config_path));
  HR_ASSIGN_OR_RETURN(ck.config, ParseConfig(ck.state.config_text, config_path));
  if (expected != nullptr) HR_RETURN_IF_ERROR(CheckSameModel(ck.config.model(), *expected, dir));

  const ParameterLayout layout = ParameterLayout::ForExperiment(ck.config);
  HR_ASSIGN_OR_RETURN(SafeTensorsFile model, SafeTensorsFile::Read((p / kModelFile).string()));
  if (model.tensors().size() != layout.tensors().size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model.source(), ": holds ", model.tensors().size(), " tensors, the model of ",
                     config_path, " has ", layout.tensors().size()));
  }
  ck.params.resize(static_cast<size_t>(layout.total()));
  for (const TensorSpec& t : layout.tensors()) {
    HR_RETURN_IF_ERROR(model.CopyF32(t.name, t.shape, ck.params.data() + t.offset));
  }
  if (with_optimizer) {
    HR_ASSIGN_OR_RETURN(SafeTensorsFile opt, SafeTensorsFile::Read((p / kOptimizerFile).string()));
    ck.m.resize(ck.params.size());
    ck.v.resize(ck.params.size());
    for (const TensorSpec& t : layout.tensors()) {
      HR_RETURN_IF_ERROR(opt.CopyF32(t.name + ".exp_avg", t.shape, ck.m.data() + t.offset));
      HR_RETURN_IF_ERROR(opt.CopyF32(t.name + ".exp_avg_sq", t.shape, ck.v.data() + t.offset));
    }
  }
  return ck;
}

}  // namespace headroom
