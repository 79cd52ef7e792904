// What `headroom prepare-bert` and `headroom prepare-lm` share (prepare_common.cc): the
// --input_file / --valid_file / --output_dir / --num_shards flags (declared here, defined in
// prepare_common.cc) resolved into output splits.
#ifndef HEADROOM_TOOLS_PREPARE_COMMON_H_
#define HEADROOM_TOOLS_PREPARE_COMMON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"

ABSL_DECLARE_FLAG(std::string, input_file);
ABSL_DECLARE_FLAG(std::string, output_dir);
ABSL_DECLARE_FLAG(bool, progress);
ABSL_DECLARE_FLAG(int32_t, num_workers);

namespace headroom {

// One output split: "train" from `input` (--num_shards shards), "valid" from --valid_file
// (--num_valid_shards shards) when given.
struct PrepareSplit {
  std::string name;
  std::vector<std::string> files;  // expanded input files
  int shards = 0;
};

// Expands every split's inputs and creates --output_dir, so that a bad input or output path is
// reported before anything is written. Errors are one line naming the flag or file.
[[nodiscard]] absl::StatusOr<std::vector<PrepareSplit>> ResolvePrepareSplits(
    const std::string& input);

// Creates `dir` (one level) if it does not exist; InvalidArgument naming it otherwise.
[[nodiscard]] absl::Status EnsureOutputDir(const std::string& dir);

// A comma-separated list of positive integers from `flag` (e.g. --max_seq_length=128,512);
// InvalidArgument naming the flag and the bad element.
[[nodiscard]] absl::StatusOr<std::vector<int>> ParseIntList(const std::string& flag,
                                                            const std::string& value);

}  // namespace headroom

#endif  // HEADROOM_TOOLS_PREPARE_COMMON_H_
