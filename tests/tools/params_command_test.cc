// `headroom params` through the binary: the memory per rank it adds for --ranks and
// --zero_stage against the hand formula (fp32 parameters and gradients, AdamW's m and v plus
// one scalar; ZeRO-1: 1/R of the moments and a shard gradient of 1/R), on BERT-large; a bad
// flag gives one line naming it and a non-zero exit.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/run_command.h"

namespace headroom {
namespace {

using testing::CommandResult;

CommandResult Params(const std::string& args) {
  return testing::RunCommand(std::string(HEADROOM_BINARY) + " params " + args);
}

// The one data row of a --format=csv run, by column name.
std::map<std::string, double> CsvRow(const std::string& out) {
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 2u) << out;
  std::map<std::string, double> row;
  if (lines.size() != 2) return row;
  std::vector<std::string> keys = absl::StrSplit(lines[0], ',');
  std::vector<std::string> values = absl::StrSplit(lines[1], ',');
  for (size_t i = 0; i < keys.size() && i < values.size(); ++i) {
    row[keys[i]] = std::strtod(values[i].c_str(), nullptr);
  }
  return row;
}

const std::string kBertLarge =
    std::string(HEADROOM_SOURCE_DIR_FOR_TESTS) + "/configs/paper/bert_large.textproto";

TEST(ParamsCommandTest, MemoryPerRankFollowsTheZeroStage) {
  CommandResult r0 = Params("--format=csv --ranks=8 --zero_stage=0 " + kBertLarge);
  ASSERT_EQ(r0.exit_code, 0) << r0.output;
  std::map<std::string, double> stage0 = CsvRow(r0.output);
  const double n = stage0["params"];
  EXPECT_EQ(n, 336226108);  // BERT-large, as the paper and Google's checkpoint
  // The flat buffers hold the parameters, the vocabulary padded from 30522 to 30592 rows (the
  // tied table's 70 rows of 1024 and the output bias's 70) and under 64 elements of alignment
  // per tensor (at most 400 tensors), in all a multiple of 64 (model/parameter_layout.h).
  const double buffer = stage0["param_bytes_per_rank"] / 4;
  EXPECT_GE(buffer - n, 70 * 1024 + 70);
  EXPECT_LT(buffer - n, 70 * 1024 + 70 + 64 * 400);
  EXPECT_EQ(std::fmod(buffer, 64), 0);
  EXPECT_EQ(stage0["grad_bytes_per_rank"], 4 * buffer);
  EXPECT_EQ(stage0["optimizer_bytes_per_rank"], 4 * (2 * buffer + 1));  // AdamW: m, v, a scalar
  EXPECT_EQ(stage0["activation_bytes_per_rank"], 0);                    // no --micro_batch

  CommandResult r1 = Params("--format=csv --ranks=8 --zero_stage=1 " + kBertLarge);
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  std::map<std::string, double> stage1 = CsvRow(r1.output);
  EXPECT_EQ(stage1["param_bytes_per_rank"], 4 * buffer);
  // 1/8 of the moments; the buckets' tails (< 8 elements each) sit on the last rank.
  EXPECT_NEAR(stage1["optimizer_bytes_per_rank"], 4 * 2 * buffer / 8, 4 * 2 * 64);
  EXPECT_NEAR(stage1["grad_bytes_per_rank"], 4 * buffer + 4 * buffer / 8, 4 * 64);
}

TEST(ParamsCommandTest, ActivationsNeedAMicroBatchAndGrowWithIt) {
  std::map<std::string, double> a =
      CsvRow(Params("--format=csv --micro_batch=2 " + kBertLarge).output);
  std::map<std::string, double> b =
      CsvRow(Params("--format=csv --micro_batch=4 " + kBertLarge).output);
  EXPECT_GT(a["activation_bytes_per_rank"], 0);
  // Every activation buffer is proportional to the micro-batch (model/transformer.h).
  EXPECT_EQ(b["activation_bytes_per_rank"], 2 * a["activation_bytes_per_rank"]);
}

TEST(ParamsCommandTest, BadZeroStageIsOneLineAndAFailure) {
  CommandResult r = Params("--zero_stage=2 " + kBertLarge);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--zero_stage=2"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line: " << r.output;
}

}  // namespace
}  // namespace headroom
