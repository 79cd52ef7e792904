// The memory check before a run allocates (trainer/memory_budget.h).
//  - The estimate against the bytes the CPU model and optimizer really allocate, measured by
//    glibc's allocator statistics (mallinfo2) around Model::Create and the Optimizer: within 2%.
//  - The check against chosen "available" numbers: both numbers in GiB and the settings that
//    lower the need in one line; settings already on are not suggested; ranks sharing a host
//    multiply the need.
//  - The demo config at d_model = 1,000,000 needs far more than this machine's 24 GiB.
#include "trainer/memory_budget.h"

#include <malloc.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "base/host_memory.h"
#include "config/load.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/transformer.h"
#include "trainer/optimizer.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kGiB = int64_t{1} << 30;

// Bytes in use on the heap (small chunks and mmap'ed large blocks).
int64_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

ExperimentConfig Config(const std::string& text, const std::vector<std::string>& overrides = {}) {
  absl::StatusOr<ExperimentConfig> c = ParseConfig(text, "test.textproto", overrides);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ExperimentConfig();
}

constexpr char kBert[] = R"pb(
  model {
    objective: BERT
    vocab_size: 3000
    max_positions: 64
    type_vocab_size: 2
    num_layers: 2
    d_model: 128
    num_heads: 4
    head_size: 48
    ffn_size: 512
  }
  data { seq_length: 64 max_predictions_per_seq: 10 }
  train { steps: 1 global_batch_size: 8 }
)pb";

constexpr char kLm[] = R"pb(
  model {
    objective: CAUSAL_LM
    vocab_size: 5000
    max_positions: 96
    num_layers: 3
    d_model: 96
    num_heads: 2
    ffn_size: 384
    hidden_dropout: 0
    attention_dropout: 0
  }
  data { seq_length: 96 }
  train { steps: 1 global_batch_size: 6 }
)pb";

TEST(MemoryEstimateAllocationTest, WithinTwoPercentOfWhatTheCpuModelAllocates) {
  struct Case {
    const char* text;
    std::vector<std::string> overrides;
    ModelLimits limits;
  };
  for (const Case& c :
       {Case{kBert, {}, {8, 64, 10}},
        Case{kBert, {"train.optimizer.type=LAMB", "train.attention=fused"}, {8, 64, 10}},
        Case{kLm, {"train.recompute_gelu=true"}, {6, 96, 0}},
        Case{kLm, {"train.layernorm_from_output=true"}, {6, 96, 0}}}) {
    const ExperimentConfig config = Config(c.text, c.overrides);
    SCOPED_TRACE(config.ShortDebugString());
    CpuOps<float> ops(1);
    const RunMemory need = EstimateRunMemory(config, c.limits, ops);
    const int64_t before = HeapInUse();
    {
      auto model = Model<float>::Create(config.model(), &ops, c.limits,
                                        ModelOptionsFromConfig(config.train()));
      ASSERT_TRUE(model.ok()) << model.status();
      Optimizer<float> optimizer(ops, (*model)->layout(), config.train().optimizer());
      const int64_t allocated = HeapInUse() - before;
      ASSERT_GT(allocated, 10'000'000) << "a test model of some size";
      EXPECT_NEAR(static_cast<double>(need.model.total()), static_cast<double>(allocated),
                  0.02 * static_cast<double>(allocated))
          << need.model.ToString();
      EXPECT_EQ(need.model.parameters, (*model)->layout().total() * 4);
    }
    EXPECT_EQ(need.checkpoint_copies, 3 * need.model.parameters);
  }
}

RunMemory Need(int64_t fixed_gib, int64_t activation_gib) {
  RunMemory need;
  need.model.parameters = fixed_gib * kGiB / 4;
  need.model.gradients = fixed_gib * kGiB / 4;
  need.model.optimizer = fixed_gib * kGiB / 2;
  need.model.activations = activation_gib * kGiB;
  return need;
}

TEST(MemoryCheckTest, FitsOrSaysBothNumbersAndWhatLowersTheNeed) {
  const ExperimentConfig config = Config(kBert);
  const ModelLimits limits{32, 64, 10};
  const RunMemory need = Need(4, 6);  // 10 GiB
  EXPECT_TRUE(
      CheckMemoryFits(need, 1, {11 * kGiB, "test"}, config.train(), limits, DeviceKind::kCpu).ok());
  const absl::Status s = CheckMemoryFits(need, 1, {9 * kGiB, "MemAvailable in /proc/meminfo"},
                                         config.train(), limits, DeviceKind::kCpu);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  const std::string msg(s.message());
  EXPECT_THAT(msg, HasSubstr("the run needs 10.00 GiB of host memory (1 rank: parameters 1.00 GiB, "
                             "gradients 1.00 GiB, optimizer state 2.00 GiB, activations 6.00 GiB"));
  EXPECT_THAT(msg, HasSubstr("but 9.00 GiB are available (MemAvailable in /proc/meminfo)"));
  EXPECT_THAT(msg, HasSubstr("a smaller train.micro_batch_size (now 32)"));
  EXPECT_THAT(msg, HasSubstr("train.recompute_gelu=true"));
  EXPECT_THAT(msg, HasSubstr("train.layernorm_from_output=true"));
  EXPECT_THAT(msg, HasSubstr("train.zero_stage"));
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;

  // Options already on are not suggested again; GPU memory is named as such.
  const ExperimentConfig recomputing =
      Config(kBert, {"train.recompute_gelu=true", "train.layernorm_from_output=true"});
  const std::string gpu(CheckMemoryFits(need, 1, {9 * kGiB, "free memory of the GPU"},
                                        recomputing.train(), limits, DeviceKind::kCuda)
                            .message());
  EXPECT_THAT(gpu, HasSubstr("of GPU memory"));
  EXPECT_THAT(gpu, Not(HasSubstr("recompute_gelu")));
  EXPECT_THAT(gpu, Not(HasSubstr("layernorm_from_output")));
}

TEST(MemoryCheckTest, WhenTheWeightsAloneDoNotFitOnlyASmallerModelIsSuggested) {
  const ExperimentConfig config = Config(kBert);
  const absl::Status s = CheckMemoryFits(Need(12, 1), 1, {10 * kGiB, "test"}, config.train(),
                                         {32, 64, 10}, DeviceKind::kCpu);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("parameters, gradients and optimizer state alone need "
                                     "12.00 GiB, so only a smaller model helps"));
  EXPECT_THAT(s.message(), Not(HasSubstr("micro_batch_size")));
}

TEST(MemoryCheckTest, RanksSharingAHostMultiplyTheNeedAndCheckpointCopiesCountOnce) {
  const ExperimentConfig config = Config(kBert);
  RunMemory need = Need(4, 2);  // 6 GiB per rank
  need.checkpoint_copies = 3 * kGiB;
  const AvailableMemory available{14 * kGiB, "test"};
  EXPECT_TRUE(CheckMemoryFits(need, 1, available, config.train(), {8, 64, 10}, DeviceKind::kCpu)
                  .ok());  // 9 GiB
  const absl::Status two =
      CheckMemoryFits(need, 2, available, config.train(), {8, 64, 10}, DeviceKind::kCpu);
  ASSERT_FALSE(two.ok());  // 15 GiB
  EXPECT_THAT(two.message(), HasSubstr("needs 15.00 GiB of host memory (2 ranks, each: "));
}

// `headroom train configs/demo.textproto --set model.d_model=1000000`: the need is estimated
// before anything is allocated, and is far beyond this machine's 24 GiB.
TEST(MemoryCheckTest, TheDemoAtAMillionWideNeedsFarMoreThanThisMachine) {
  const char* root = std::getenv("HEADROOM_SOURCE_DIR");
  ASSERT_NE(root, nullptr) << "ctest sets HEADROOM_SOURCE_DIR";
  absl::StatusOr<ExperimentConfig> config =
      LoadConfig(std::string(root) + "/configs/demo.textproto", {"model.d_model=1000000"});
  ASSERT_TRUE(config.ok()) << config.status();
  CpuOps<float> ops(1);
  const ModelLimits limits{32, 64, 0};
  const RunMemory need = EstimateRunMemory(*config, limits, ops);
  // The token embedding alone is 4096 x 1e6 floats = 15.3 GiB; four copies (weights, gradients,
  // two moments) exceed 60 GiB.
  EXPECT_GT(need.model.parameters, 4096LL * 1'000'000 * 4);
  EXPECT_GT(need.model.total(), 60 * kGiB);
  const absl::Status s = CheckMemoryFits(need, 1, {24 * kGiB, "24 GiB of RAM"}, config->train(),
                                         limits, DeviceKind::kCpu);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("but 24.00 GiB are available"));
  EXPECT_THAT(s.message(), HasSubstr("only a smaller model helps"));
}

}  // namespace
}  // namespace headroom
