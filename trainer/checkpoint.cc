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
#include <map>
#include <optional>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "config/load.h"
#include "data/crc32c.h"
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
constexpr char kManifestFile[] = "manifest.json";
// The files every checkpoint holds besides the manifest, in the order they are written.
constexpr const char* kCheckpointFiles[] = {kModelFile, kOptimizerFile, kStateFile, kConfigFile};
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

// Whether `dir` looks like a checkpoint directory rather than a run directory: named
// step-NNNNNNNN, or holding one of a checkpoint's files (it may be damaged).
bool LooksLikeCheckpoint(const fs::path& dir) {
  std::error_code ec;
  if (StepOfName(dir.filename().string()) >= 0 && !fs::is_directory(dir / "checkpoints", ec)) {
    return true;
  }
  for (const char* f : kCheckpointFiles) {
    if (fs::exists(dir / f, ec)) return true;
  }
  return fs::exists(dir / kManifestFile, ec);
}

constexpr char kDamageAdvice[] =
    "; restore the file from a copy or use an earlier checkpoint of the run (--resume falls back "
    "to the newest intact one by itself)";

// A damaged checkpoint: DataLoss "checkpoint DIR: <what>; <advice>".
absl::Status Damaged(const std::string& dir, const std::string& what) {
  return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", what, kDamageAdvice));
}

// The <what> of a Damaged(dir, what) status.
std::string DamageOf(const std::string& dir, const absl::Status& s) {
  absl::string_view what = s.message();
  absl::ConsumePrefix(&what, absl::StrCat("checkpoint ", dir, ": "));
  absl::ConsumeSuffix(&what, kDamageAdvice);
  return std::string(what);
}

// Size and CRC32C of one file of a checkpoint, as manifest.json records them.
struct FileSum {
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};
using Manifest = std::map<std::string, FileSum>;

FileSum SumOf(absl::string_view bytes) {
  return {bytes.size(), crc32c::Value(bytes.data(), bytes.size())};
}

std::string ManifestJson(const Manifest& files) {
  json j = {{"format", kFormat}, {"files", json::object()}};
  for (const auto& [name, sum] : files) {
    j["files"][name] = {{"bytes", sum.bytes}, {"crc32c", absl::StrFormat("%08x", sum.crc32c)}};
  }
  return j.dump(2) + "\n";
}

// manifest.json of `dir`; DataLoss when it does not parse.
absl::StatusOr<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kManifestFile).string();
  HR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&dir](const std::string& what) {
    return Damaged(dir, absl::StrCat(kManifestFile, " is damaged (", what, ")"));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto format = j.find("format");
  if (format == j.end() || !format->is_number_integer() || format->get<int64_t>() != kFormat) {
    return bad(absl::StrCat("unknown \"format\"; this build reads format ", kFormat));
  }
  auto files = j.find("files");
  if (files == j.end() || !files->is_object()) return bad("no \"files\" object");
  Manifest manifest;
  for (const auto& [name, entry] : files->items()) {
    auto bytes = entry.find("bytes");
    auto crc = entry.find("crc32c");
    uint32_t value = 0;
    if (!entry.is_object() || bytes == entry.end() || !bytes->is_number_unsigned() ||
        crc == entry.end() || !crc->is_string() || crc->get<std::string>().size() != 8 ||
        !absl::SimpleHexAtoi(crc->get<std::string>(), &value)) {
      return bad(absl::StrCat("the entry of ", name, " is not {\"bytes\": N, \"crc32c\": HEX8}"));
    }
    manifest[name] = {bytes->get<uint64_t>(), value};
  }
  return manifest;
}

// Reads file `name` of checkpoint `dir` and, when the checkpoint has a manifest, checks its size
// and CRC32C against it.
absl::StatusOr<std::string> ReadVerified(const std::string& dir, const char* name,
                                         const Manifest* manifest) {
  HR_ASSIGN_OR_RETURN(std::string bytes, ReadFile((fs::path(dir) / name).string()));
  if (manifest == nullptr) return bytes;  // written before checksums: nothing to compare
  auto recorded = manifest->find(name);
  if (recorded == manifest->end()) {
    return Damaged(dir, absl::StrCat(kManifestFile, " does not list ", name));
  }
  const FileSum read = SumOf(bytes);
  if (read.bytes != recorded->second.bytes || read.crc32c != recorded->second.crc32c) {
    return Damaged(dir, absl::StrFormat("%s does not match %s (%d bytes, CRC32C %08x recorded; "
                                        "%d bytes, CRC32C %08x read): the file is damaged",
                                        name, kManifestFile, recorded->second.bytes,
                                        recorded->second.crc32c, read.bytes, read.crc32c));
  }
  return bytes;
}

// The first NaN or Inf among the tensors of `layout` in `values`, read from `file`: DataLoss
// "non-finite weights in FILE tensor NAME". `suffix` is appended to tensor names (the moments).
absl::Status CheckFinite(const std::string& dir, const std::string& file,
                         const ParameterLayout& layout, const std::vector<float>& values,
                         const char* suffix) {
  for (const TensorSpec& t : layout.tensors()) {
    for (int64_t i = 0; i < t.numel; ++i) {
      const float x = values[static_cast<size_t>(t.offset + i)];
      if (!std::isfinite(x)) {
        return Damaged(dir, absl::StrCat("non-finite weights in ", file, " tensor ", t.name, suffix,
                                         " (", x, " at element ", i, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// A file that passed its checksum (or has none) but does not parse: the checkpoint is damaged.
absl::Status AsDamage(const std::string& dir, const absl::Status& s) {
  if (s.ok() || s.code() == absl::StatusCode::kDataLoss) return s;
  return Damaged(dir, std::string(s.message()));
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
            {"loss", std::isfinite(st.loss) ? st.loss : 0.0},
            // Tells a reader that manifest.json belongs to this checkpoint, so a deleted
            // manifest is damage rather than a checkpoint from before manifests.
            {"manifest", kManifestFile}};
  return j.dump(2) + "\n";
}

// `claims_manifest` is set when the state names a manifest.json (written since manifests exist).
absl::StatusOr<TrainerState> ParseStateJson(const std::string& text, const std::string& path,
                                            bool* claims_manifest) {
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
  *claims_manifest = j.contains("manifest");
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

// Writes the files of a checkpoint into the new directory `dir`, the manifest last, each
// fsynced (see SaveCheckpoint for the rest).
absl::Status WriteCheckpointFiles(const std::string& dir, const ParameterLayout& layout,
                                  const float* params, const float* m, const float* v,
                                  const TrainerState& state) {
  const fs::path tmp_dir(dir);
  std::error_code ec;
  const std::string step_text = absl::StrCat(state.step);
  SafeTensorsWriter model;
  model.SetMetadata("format", "pt");
  model.SetMetadata("headroom_step", step_text);
  for (const TensorSpec& t : layout.tensors()) {
    HR_RETURN_IF_ERROR(model.AddF32(t.name, t.shape, params + t.offset));
  }
  Manifest manifest;
  HR_RETURN_IF_ERROR(model.Write((tmp_dir / kModelFile).string(), &manifest[kModelFile].crc32c));

  std::vector<float> zeros;
  if (m == nullptr || v == nullptr) zeros.assign(static_cast<size_t>(layout.total()), 0.0f);
  SafeTensorsWriter opt;
  opt.SetMetadata("headroom_step", step_text);
  for (const TensorSpec& t : layout.tensors()) {
    HR_RETURN_IF_ERROR(opt.AddF32(t.name + ".exp_avg", t.shape, (m ? m : zeros.data()) + t.offset));
    HR_RETURN_IF_ERROR(
        opt.AddF32(t.name + ".exp_avg_sq", t.shape, (v ? v : zeros.data()) + t.offset));
  }
  HR_RETURN_IF_ERROR(
      opt.Write((tmp_dir / kOptimizerFile).string(), &manifest[kOptimizerFile].crc32c));
  for (const char* name : {kModelFile, kOptimizerFile}) {
    manifest[name].bytes = fs::file_size(tmp_dir / name, ec);
    if (ec) return FsError("cannot read the size", (tmp_dir / name).string(), ec);
  }
  const std::string state_json = StateJson(state);
  HR_RETURN_IF_ERROR(WriteNewFile((tmp_dir / kStateFile).string(), state_json));
  manifest[kStateFile] = SumOf(state_json);
  HR_RETURN_IF_ERROR(WriteNewFile((tmp_dir / kConfigFile).string(), state.config_text));
  manifest[kConfigFile] = SumOf(state.config_text);
  HR_RETURN_IF_ERROR(WriteNewFile((tmp_dir / kManifestFile).string(), ManifestJson(manifest)));
  return absl::OkStatus();
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
    HR_RETURN_IF_ERROR(WriteCheckpointFiles(tmp_dir, layout, params, m, v, state));
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
    if (step >= 0 && e.is_directory(ec)) {
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
        absl::StrCat(run_dir, ": no checkpoint under ", CheckpointsRoot(run_dir)));
  }
  return all.back();
}

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path, std::string* chosen) {
  if (chosen != nullptr) chosen->clear();
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such checkpoint or run directory"));
  }
  if (LooksLikeCheckpoint(path)) return path;
  HR_ASSIGN_OR_RETURN(std::string latest, LatestCheckpoint(path));
  if (chosen != nullptr) {
    *chosen = absl::StrCat(latest, " (step ", StepOfName(fs::path(latest).filename().string()),
                           "), the newest checkpoint of run directory ", path);
  }
  return latest;
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
  std::error_code ec;
  if (!fs::is_directory(p, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such checkpoint directory"));
  }
  for (const char* f : kCheckpointFiles) {
    if (!fs::is_regular_file(p / f, ec)) return Damaged(dir, absl::StrCat(f, " is missing"));
  }
  // Checkpoints written before manifests existed have none, and their trainer_state.json does
  // not name one: they load as before, without checksums to compare.
  std::optional<Manifest> manifest;
  if (fs::exists(p / kManifestFile, ec)) {
    HR_ASSIGN_OR_RETURN(manifest, ReadManifest(dir));
  }
  const Manifest* sums = manifest ? &*manifest : nullptr;

  const std::string state_path = (p / kStateFile).string();
  HR_ASSIGN_OR_RETURN(std::string state_text, ReadVerified(dir, kStateFile, sums));
  bool claims_manifest = false;
  absl::StatusOr<TrainerState> state = ParseStateJson(state_text, state_path, &claims_manifest);
  HR_RETURN_IF_ERROR(AsDamage(dir, state.status()));
  ck.state = *std::move(state);
  if (claims_manifest && sums == nullptr) {
    return Damaged(dir, absl::StrCat(kManifestFile, " is missing"));
  }
  const std::string config_path = (p / kConfigFile).string();
  HR_ASSIGN_OR_RETURN(ck.state.config_text, ReadVerified(dir, kConfigFile, sums));
  absl::StatusOr<ExperimentConfig> config = ParseConfig(ck.state.config_text, config_path);
  HR_RETURN_IF_ERROR(AsDamage(dir, config.status()));
  ck.config = *std::move(config);
  if (expected != nullptr) HR_RETURN_IF_ERROR(CheckSameModel(ck.config.model(), *expected, dir));

  const ParameterLayout layout = ParameterLayout::ForExperiment(ck.config);
  const std::string model_path = (p / kModelFile).string();
  HR_ASSIGN_OR_RETURN(std::string model_bytes, ReadVerified(dir, kModelFile, sums));
  absl::Status read = [&]() -> absl::Status {
    HR_ASSIGN_OR_RETURN(SafeTensorsFile model,
                        SafeTensorsFile::Parse(std::move(model_bytes), model_path));
    if (model.tensors().size() != layout.tensors().size()) {
      return absl::InvalidArgumentError(absl::StrCat(model_path, ": holds ", model.tensors().size(),
                                                     " tensors, the model of ", config_path,
                                                     " has ", layout.tensors().size()));
    }
    ck.params.resize(static_cast<size_t>(layout.total()));
    for (const TensorSpec& t : layout.tensors()) {
      HR_RETURN_IF_ERROR(model.CopyF32(t.name, t.shape, ck.params.data() + t.offset));
    }
    return absl::OkStatus();
  }();
  HR_RETURN_IF_ERROR(AsDamage(dir, read));
  HR_RETURN_IF_ERROR(CheckFinite(dir, model_path, layout, ck.params, ""));
  if (!with_optimizer) return ck;

  const std::string opt_path = (p / kOptimizerFile).string();
  HR_ASSIGN_OR_RETURN(std::string opt_bytes, ReadVerified(dir, kOptimizerFile, sums));
  read = [&]() -> absl::Status {
    HR_ASSIGN_OR_RETURN(SafeTensorsFile opt,
                        SafeTensorsFile::Parse(std::move(opt_bytes), opt_path));
    ck.m.resize(ck.params.size());
    ck.v.resize(ck.params.size());
    for (const TensorSpec& t : layout.tensors()) {
      HR_RETURN_IF_ERROR(opt.CopyF32(t.name + ".exp_avg", t.shape, ck.m.data() + t.offset));
      HR_RETURN_IF_ERROR(opt.CopyF32(t.name + ".exp_avg_sq", t.shape, ck.v.data() + t.offset));
    }
    return absl::OkStatus();
  }();
  HR_RETURN_IF_ERROR(AsDamage(dir, read));
  HR_RETURN_IF_ERROR(CheckFinite(dir, opt_path, layout, ck.m, ".exp_avg"));
  HR_RETURN_IF_ERROR(CheckFinite(dir, opt_path, layout, ck.v, ".exp_avg_sq"));
  return ck;
}

absl::StatusOr<Checkpoint> LoadLatestIntactCheckpoint(const std::string& run_dir,
                                                      const ModelConfig* expected,
                                                      std::vector<std::string>* warnings) {
  const std::vector<std::string> all = ListCheckpoints(run_dir);
  if (all.empty()) return LatestCheckpoint(run_dir).status();  // NotFound naming the run
  std::string newest_damage;
  for (auto dir = all.rbegin(); dir != all.rend(); ++dir) {
    absl::StatusOr<Checkpoint> ck = LoadCheckpoint(*dir, expected, /*with_optimizer=*/true);
    if (ck.ok() || ck.status().code() != absl::StatusCode::kDataLoss) return ck;
    const std::string what = DamageOf(*dir, ck.status());
    if (newest_damage.empty()) newest_damage = absl::StrCat(*dir, ": ", what);
    if (warnings != nullptr) {
      warnings->push_back(absl::StrCat("checkpoint ", *dir, " is damaged, skipped: ", what));
    }
  }
  return absl::DataLossError(absl::StrCat(run_dir, ": no intact checkpoint to resume from (",
                                          all.size(), " damaged; the newest, ", newest_damage,
                                          "); restore the damaged files from a copy, or remove ",
                                          CheckpointsRoot(run_dir), " to start the run over"));
}

}  // namespace headroom
