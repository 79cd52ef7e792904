// Flags and helpers shared by `headroom prepare-bert` and `headroom prepare-lm`: where the text
// comes from, where the shards go and how many, and the progress line.
#include "tools/prepare_common.h"

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "data/text_input.h"
#include "tools/common_flags.h"

ABSL_FLAG(std::string, input_file, "",
          "input text (comma-separated files or globs): one sentence per line, blank lines "
          "between documents");
ABSL_FLAG(std::string, valid_file, "",
          "optional held-out text in the same form, written as valid-*.tfrecord shards");
ABSL_FLAG(int32_t, num_shards, 8, "training shards, train-0000i-of-N.tfrecord, filled round-robin");
ABSL_FLAG(int32_t, num_valid_shards, 1, "validation shards (with --valid_file)");
ABSL_FLAG(bool, progress, true, "print a progress line (docs/s, tokens/s, ETA) to stderr");
ABSL_FLAG(int32_t, num_workers, 0,
          "tokenizer threads (0: one per core); the shards are the same for any number");

namespace headroom {

absl::Status EnsureOutputDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("--output_dir is required");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("--output_dir=", dir, " is not a directory"));
    }
    return absl::OkStatus();
  }
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create --output_dir=", dir, " (does its parent exist?)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> ParseIntList(const std::string& flag, const std::string& value) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, "=", value, ": '", part, "' is not a positive integer (give N or N,M,...)"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<PrepareSplit>> ResolvePrepareSplits(const std::string& input) {
  std::vector<std::pair<std::string, int>> specs = {{input, absl::GetFlag(FLAGS_num_shards)}};
  if (!absl::GetFlag(FLAGS_valid_file).empty()) {
    specs.push_back({absl::GetFlag(FLAGS_valid_file), absl::GetFlag(FLAGS_num_valid_shards)});
  }
  std::vector<PrepareSplit> splits;
  for (const auto& [spec, shards] : specs) {
    absl::StatusOr<std::vector<std::string>> files = ExpandInputFiles(spec);
    if (!files.ok()) return files.status();
    splits.push_back({splits.empty() ? "train" : "valid", *std::move(files), shards});
  }
  absl::Status out = EnsureOutputDir(absl::GetFlag(FLAGS_output_dir));
  if (!out.ok()) return out;
  return splits;
}

}  // namespace headroom
