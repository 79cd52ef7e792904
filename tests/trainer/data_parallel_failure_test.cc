// A failure on one rank of a data-parallel `headroom train` ends the whole job quickly with that
// rank's message: one record that only rank 1 reads, in an early step, is damaged, then
// `mpirun -np 2 headroom train ...` runs under a 60 s guard. The job must fail (non-zero exit,
// not the guard's kill) within 30 s, and the output must carry "rank 1: <file>: record <n>" and
// the CRC error; rank 0, which reads only good records and waits in the gradient
// all-reduce, must not hang.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/sharded_loader.h"
#include "gtest/gtest.h"
#include "tests/run_command.h"
#include "tests/trainer/lm_shards.h"
#include "tests/trainer/tiny_lm_config.h"

namespace headroom {
namespace {

using testing::CommandResult;
using testing::RunCommand;

namespace fs = std::filesystem;

const std::string kConfig = testing::TinyLmConfig(R"pb(
  train {
    steps: 200
    global_batch_size: 4
    optimizer { type: ADAMW }
    schedule { type: CONSTANT learning_rate: 0.01 }
    seed: 1234
    log_every: 1
    checkpoint_every: 0
  }
)pb");

TEST(DataParallelFailureTest, ACorruptRecordOnRankOneEndsTheJobWithItsMessage) {
  const std::string root = ::testing::TempDir() + "dp_failure_" + std::to_string(::getpid());
  fs::remove_all(root);
  fs::create_directories(root);
  // One shard of equal-sized records (every value encodes in one byte).
  const int n = 1200, global_batch = 4;
  const std::string shard = root + "/train-0.tfrecord";
  std::vector<std::vector<int64_t>> sequences(n, std::vector<int64_t>(8));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 8; ++j) sequences[i][j] = 1 + (i + j) % 15;
  }
  testing::WriteTargetsRecords(shard, sequences);
  const auto size = static_cast<int64_t>(fs::file_size(shard));
  ASSERT_EQ(size % n, 0);
  const int64_t record_bytes = size / n;
  // Rank 1 of 2 reads positions [4t + 2, 4t + 4) of epoch 0's permutation in step t + 1
  // (data/sharded_loader.h), rank 0 the others. Damage the first record rank 1 reads that lies
  // past the first 1024 of the shard, which every rank checks when its source opens
  // (trainer/data_source.cc): so only rank 1 ever reads it.
  int64_t victim = -1;
  for (int p = 0; p < n && victim < 0; ++p) {
    const auto id = static_cast<int64_t>(ShuffledIndex(p, n, /*seed=*/1234, /*epoch=*/0));
    if (p % global_batch >= global_batch / 2 && id >= 1100) victim = id;
  }
  ASSERT_GE(victim, 1100);
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(victim * record_bytes + 12 + 4);  // inside the payload, after the 12-byte header
    char c = 0;
    f.read(&c, 1);
    f.seekp(victim * record_bytes + 12 + 4);
    c ^= 0x55;
    f.write(&c, 1);
  }
  std::ofstream(root + "/tiny.textproto") << kConfig;

  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  // `timeout` is a guard so that a regression fails this test instead of hanging ctest.
  const CommandResult r = RunCommand(
      std::string("timeout -s KILL 60 ") + HEADROOM_MPIEXEC +
      " --allow-run-as-root --oversubscribe -np 2 " + HEADROOM_BINARY + " train --config " + root +
      "/tiny.textproto --data " + shard + " --run_dir " + root + "/run");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 137) << "killed by the 60 s guard: a rank hung\n" << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
  const std::string where = "rank 1: " + shard + ": record " + std::to_string(victim);
  EXPECT_NE(r.output.find(where), std::string::npos) << "expected '" << where << "' in\n"
                                                     << r.output;
  EXPECT_NE(r.output.find("CRC mismatch"), std::string::npos) << r.output;
  // No checkpoint of a step that never completed.
  EXPECT_FALSE(fs::exists(root + "/run/checkpoints")) << r.output;
  fs::remove_all(root);
}

}  // namespace
}  // namespace headroom
