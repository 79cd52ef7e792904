// Metrics: the TensorBoard Event bytes against a hand-encoded protobuf (so the field numbers are
// TensorFlow's), event files readable as TFRecords, JSON lines with hand-computed throughput,
// MFU and ETA, the console line, a partial last line cut on resume, and errors for an
// unwritable run directory.
#include "trainer/metrics.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "data/record_reader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "trainer/tensorboard.pb.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

TEST(TensorBoardProtoTest, EventBytesMatchTensorFlowsWireFormat) {
  tensorboard::Event e;
  e.set_wall_time(1.5);
  e.set_step(3);
  tensorboard::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag("loss");
  v->set_simple_value(2.0f);
  // By hand: field 1 double (tag 0x09) 1.5 = 0x3FF8000000000000 little-endian; field 2 varint
  // (0x10) 3; field 5 length-delimited (0x2A) Summary { field 1 (0x0A) Value { field 1 (0x0A)
  // "loss"; field 2 fixed32 (0x15) 2.0f = 0x40000000 } }: Value 11 bytes, Summary 13.
  const std::string want = absl::HexStringToBytes(
      "09000000000000f83f"
      "1003"
      "2a0d"
      "0a0b"
      "0a046c6f7373"
      "1500000040");
  EXPECT_EQ(absl::BytesToHexString(e.SerializeAsString()), absl::BytesToHexString(want));

  tensorboard::Event version;
  version.set_file_version("brain.Event:2");
  EXPECT_EQ(version.SerializeAsString(), absl::HexStringToBytes("1a0d") + "brain.Event:2");

  // A value of exactly 0 is still written (simple_value is in a oneof, as in TensorFlow).
  tensorboard::Summary::Value zero;
  zero.set_simple_value(0.0f);
  EXPECT_EQ(absl::BytesToHexString(zero.SerializeAsString()), "1500000000");
}

TEST(MetricsTest, FormatDuration) {
  EXPECT_EQ(FormatDuration(3725), "1h02m");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(12.4), "12s");
  EXPECT_EQ(FormatDuration(-1), "?");
}

class MetricsLoggerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "metrics_test_" + std::to_string(::getpid());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

// Logs train step 10, eval step 10 and train step 20 (loss NaN) into dir_, the console lines
// into `console` (may be null); returns the event file's path.
std::string LogTwoStepsAndAnEval(const std::string& dir, FILE* console) {
  MetricsOptions o;
  o.run_dir = dir;
  o.total_steps = 100;
  o.flops_per_token = 6e6;
  o.peak_flops = 1.2e11;
  o.console = console;
  auto log = MetricsLogger::Open(o);
  EXPECT_TRUE(log.ok()) << log.status();
  if (!log.ok()) return "";
  TrainRecord r;
  r.step = 10;
  r.loss = 2.5;
  r.lr = 1e-4;
  r.grad_norm = 0.75;
  r.tokens = 1000;
  r.seconds = 0.5;
  r.steps = 10;
  r.memory_bytes = int64_t{3} << 29;  // 1.5 GiB
  r.extra = {{"mlm_loss", 0.0}};
  EXPECT_TRUE((*log)->LogTrain(r).ok());
  EXPECT_TRUE((*log)->LogEval(10, {{"loss", 2.25}, {"perplexity", 9.4877}}).ok());
  r.step = 20;
  r.loss = std::nan("");
  EXPECT_TRUE((*log)->LogTrain(r).ok());
  const std::string event_file = (*log)->event_file();
  log->reset();  // closes and fsyncs
  return event_file;
}

TEST_F(MetricsLoggerTest, ConsoleLineHasStepLossRateTokensMfuMemoryAndEta) {
  FILE* console = std::tmpfile();
  ASSERT_NE(console, nullptr);
  LogTwoStepsAndAnEval(dir_, console);
  // 1000 tokens / 0.5 s = 2,000 tok/s; MFU = 6e6 * 2000 / 1.2e11 = 10%;
  // ETA = (100 - 10) steps * 0.05 s = 4.5 s -> "4s" or "5s" by rounding: llround(4.5) = 5.
  std::rewind(console);
  char buf[512];
  ASSERT_NE(std::fgets(buf, sizeof(buf), console), nullptr);
  EXPECT_EQ(std::string(buf),
            "step 10/100 | loss 2.5000 | lr 0.0001 | grad_norm 0.750 | 2,000 tok/s | MFU 10.0% | "
            "mem 1.50 GiB | ETA 5s\n");
  ASSERT_NE(std::fgets(buf, sizeof(buf), console), nullptr);
  EXPECT_EQ(std::string(buf), "eval step 10 | loss 2.2500 | perplexity 9.4877\n");
  std::fclose(console);
}

TEST_F(MetricsLoggerTest, JsonLinesHoldEveryRecord) {
  LogTwoStepsAndAnEval(dir_, nullptr);
  std::ifstream in(dir_ + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["split"], "train");
  EXPECT_EQ(lines[0]["step"], 10);
  EXPECT_DOUBLE_EQ(lines[0]["loss"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(lines[0]["tokens_per_sec"].get<double>(), 2000.0);
  EXPECT_DOUBLE_EQ(lines[0]["mfu"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(lines[0]["step_seconds"].get<double>(), 0.05);
  EXPECT_EQ(lines[0]["memory_bytes"], int64_t{3} << 29);
  EXPECT_EQ(lines[0]["mlm_loss"], 0.0);
  EXPECT_EQ(lines[1]["split"], "eval");
  EXPECT_DOUBLE_EQ(lines[1]["perplexity"].get<double>(), 9.4877);
  EXPECT_TRUE(lines[2]["loss"].is_null());  // NaN is not JSON
}

// The event file: TFRecords of Events, the version first.
TEST_F(MetricsLoggerTest, EventFileIsTensorBoardEvents) {
  const std::string event_file = LogTwoStepsAndAnEval(dir_, nullptr);
  EXPECT_EQ(fs::path(event_file).parent_path(), fs::path(dir_) / "tb");
  EXPECT_EQ(fs::path(event_file).filename().string().rfind("events.out.tfevents.", 0), 0u);
  auto reader = RecordReader::Open(event_file);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<tensorboard::Event> events;
  std::string record;
  while (true) {
    auto more = (*reader)->ReadNext(&record);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    ASSERT_TRUE(events.emplace_back().ParseFromString(record));
  }
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(events[1].step(), 10);
  std::map<std::string, float> train;
  for (const auto& v : events[1].summary().value()) train[v.tag()] = v.simple_value();
  EXPECT_EQ(train.at("train/loss"), 2.5f);
  EXPECT_EQ(train.at("train/lr"), 1e-4f);
  EXPECT_EQ(train.at("train/grad_norm"), 0.75f);
  EXPECT_EQ(train.at("train/tokens_per_sec"), 2000.0f);
  EXPECT_FLOAT_EQ(train.at("train/mfu"), 0.1f);
  EXPECT_EQ(train.at("train/mlm_loss"), 0.0f);
  EXPECT_TRUE(events[1].summary().value(5).has_simple_value());
  EXPECT_EQ(events[2].summary().value(0).tag(), "eval/loss");
  EXPECT_EQ(events[2].summary().value(0).simple_value(), 2.25f);
  EXPECT_EQ(events[3].step(), 20);
}

TEST_F(MetricsLoggerTest, AppendsWhenReopened) {
  MetricsOptions o;
  o.run_dir = dir_;
  o.console = nullptr;
  for (int step : {1, 2}) {
    auto log = MetricsLogger::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    TrainRecord r;
    r.step = step;
    ASSERT_TRUE((*log)->LogTrain(r).ok());
  }
  std::ifstream in(dir_ + "/metrics.jsonl");
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  EXPECT_EQ(n, 2);
}

// A run killed in the middle of writing a record leaves a line without its newline; the resumed
// run must not glue its first record onto it.
TEST_F(MetricsLoggerTest, ResumeCutsAPartialLastLine) {
  fs::create_directories(dir_);
  const std::string whole = "{\"split\":\"train\",\"step\":1,\"loss\":2.5}\n";
  const std::string half = "{\"split\":\"train\",\"step\":2,\"lo";
  std::ofstream(dir_ + "/metrics.jsonl", std::ios::binary) << whole << half;
  FILE* console = std::tmpfile();
  ASSERT_NE(console, nullptr);
  MetricsOptions o;
  o.run_dir = dir_;
  o.console = console;
  {
    auto log = MetricsLogger::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    TrainRecord r;
    r.step = 3;
    r.loss = 1.5;
    ASSERT_TRUE((*log)->LogTrain(r).ok());
  }
  std::ifstream in(dir_ + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    lines.push_back(j);
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_EQ(lines[0]["loss"], 2.5);
  EXPECT_EQ(lines[1]["step"], 3);
  std::rewind(console);
  char text[512] = {};
  EXPECT_GT(std::fread(text, 1, sizeof(text) - 1, console), 0u);
  EXPECT_NE(std::string(text).find("metrics.jsonl: removed a partial last line (" +
                                   std::to_string(half.size()) + " bytes"),
            std::string::npos)
      << text;
  std::fclose(console);

  // A file that is one partial line and nothing else is emptied; a whole file is kept as is.
  std::ofstream(dir_ + "/metrics.jsonl", std::ios::binary | std::ios::trunc) << half;
  o.console = nullptr;
  ASSERT_TRUE(MetricsLogger::Open(o).ok());
  EXPECT_EQ(fs::file_size(dir_ + "/metrics.jsonl"), 0u);
  std::ofstream(dir_ + "/metrics.jsonl", std::ios::binary | std::ios::trunc) << whole << whole;
  ASSERT_TRUE(MetricsLogger::Open(o).ok());
  EXPECT_EQ(fs::file_size(dir_ + "/metrics.jsonl"), 2 * whole.size());
}

TEST_F(MetricsLoggerTest, UnwritableRunDirectoryIsAnError) {
  fs::create_directories(dir_);
  std::ofstream(dir_ + "/file") << "x";
  MetricsOptions o;
  o.run_dir = dir_ + "/file/run";
  auto log = MetricsLogger::Open(o);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find(dir_ + "/file/run"), absl::string_view::npos)
      << log.status();
}

TEST(ProcessResidentBytesTest, IsPositiveOnLinux) { EXPECT_GT(ProcessResidentBytes(), 0); }

}  // namespace
}  // namespace headroom
