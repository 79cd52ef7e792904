// What the trainer tests read back from a run directory (checkpoint weights, metrics.jsonl
// values) and how they compare weights; plus MpiRunTest, the fixture of the tests that train
// under mpirun.
#ifndef HEADROOM_TESTS_TRAINER_RUN_CHECKS_H_
#define HEADROOM_TESTS_TRAINER_RUN_CHECKS_H_

#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "config/load.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace headroom::testing {

// ||a - b|| / ||b||.
inline double RelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

// The whole file, or "" when it cannot be read.
inline std::string ReadText(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::string s;
  if (f == nullptr) return s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

// The weights of the checkpoint of `run_dir` at `step`.
inline std::vector<float> CheckpointWeights(const std::string& run_dir, int64_t step) {
  auto ck = LoadCheckpoint(CheckpointDir(run_dir, step));
  EXPECT_TRUE(ck.ok()) << ck.status();
  return ck.ok() ? ck->params : std::vector<float>();
}

// The number after "key": in the last line of `run_dir`/metrics.jsonl with "split":"<split>".
inline double LastMetric(const std::string& run_dir, const std::string& split,
                         const std::string& key) {
  const std::string text = ReadText(run_dir + "/metrics.jsonl");
  const size_t line = text.rfind("\"split\":\"" + split + "\"");
  EXPECT_NE(line, std::string::npos) << text;
  if (line == std::string::npos) return std::nan("");
  const size_t end = text.find('\n', line);
  const size_t at = text.find("\"" + key + "\":", line);
  EXPECT_TRUE(at != std::string::npos && at < end) << key << " missing: " << text.substr(line);
  if (at == std::string::npos || at > end) return std::nan("");
  return std::stod(text.substr(at + key.size() + 3));
}

// Options for a quiet training run of `config_text` (with `overrides`) in ROOT/RUN on `comm`,
// on the shards ROOT/data/train-*.tfrecord and ROOT/data/eval-*.tfrecord.
inline TrainOptions RunOptions(const std::string& config_text,
                               const std::vector<std::string>& overrides, const std::string& root,
                               const std::string& run, Communicator* comm) {
  auto c = ParseConfig(config_text, "tiny.textproto", overrides);
  EXPECT_TRUE(c.ok()) << c.status();
  TrainOptions o;
  if (c.ok()) o.config = *c;
  o.run_dir = root + "/" + run;
  o.train_files = root + "/data/train-*.tfrecord";
  o.eval_files = root + "/data/eval-*.tfrecord";
  o.console = nullptr;
  o.comm = comm;
  return o;
}

// A directory name shared by every rank of the job (rank 0's pid), distinct per test.
inline std::string JobTempDir(const std::string& prefix) {
  int id = static_cast<int>(::getpid());
  MPI_Bcast(&id, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + prefix + "_" + std::to_string(id) + "_" +
         std::to_string(std::hash<std::string>()(std::string(info->name())));
}

// The base fixture of the trainer tests run by ctest under mpirun: one MpiCommunicator over
// the job for the suite (world()), and per test a job-wide directory root() that rank 0
// empties and fills with WriteData() (the shards, under root()/data) before the others start,
// and removes at the end.
template <typename Param>
class MpiRunTest : public ::testing::TestWithParam<Param> {
 protected:
  static void SetUpTestSuite() {
    auto c = MpiCommunicator::Create();
    ASSERT_TRUE(c.ok()) << c.status();
    world_ = c->release();
  }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }
  void SetUp() override {
    root_ = JobTempDir("trainer_mpi_test");
    if (rank() == 0) {
      std::filesystem::remove_all(root_);
      WriteData();
    }
    Barrier();
  }
  void TearDown() override {
    Barrier();
    if (rank() == 0 && !root_.empty()) std::filesystem::remove_all(root_);
  }
  // Rank 0 writes the test's shards into root()/data.
  virtual void WriteData() = 0;

  static MpiCommunicator* world() { return world_; }
  static int rank() { return world_->rank(); }
  static void Barrier() { ASSERT_TRUE(world_->Barrier().ok()); }
  const std::string& root() const { return root_; }
  std::string Dir(const std::string& run) const { return root_ + "/" + run; }

 private:
  static inline MpiCommunicator* world_ = nullptr;
  std::string root_;
};

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_TRAINER_RUN_CHECKS_H_
