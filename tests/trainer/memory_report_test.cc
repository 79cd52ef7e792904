// Memory per rank (trainer/memory_report.h): the prediction, made without allocating, equals
// what the real objects allocate (a model on CpuOps, its optimizer, the data-parallel
// component) for AdamW and LAMB; optimizer bytes follow the hand formula (m and v per element,
// LAMB's scratch of the largest tensor, one scalar); the ZeRO-1 shards of all ranks add up to
// the whole; bad requests are refused.
#include "trainer/memory_report.h"

#include <algorithm>

#include "comm/single_process_communicator.h"
#include "config/load.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/parameter_layout.h"
#include "tests/trainer/tiny_lm_config.h"

namespace headroom {
namespace {

ExperimentConfig Tiny(const std::string& optimizer) {
  auto c = ParseConfig(testing::TinyLmConfig("train { global_batch_size: 4 }", 2), "tiny.textproto",
                       {"train.optimizer.type=" + optimizer});
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(MemoryReportTest, PredictionEqualsWhatTheObjectsAllocate) {
  for (const char* optimizer : {"ADAMW", "LAMB"}) {
    const ExperimentConfig c = Tiny(optimizer);
    CpuOps<float> ops(1);
    ModelLimits limits{/*max_batch=*/3, /*max_seq=*/8, /*max_predictions=*/0};
    auto model = Model<float>::Create(c.model(), &ops, limits, ModelOptionsFromConfig(c.train()));
    ASSERT_TRUE(model.ok()) << model.status();
    SingleProcessCommunicator single;
    auto dp = DataParallel::Create(&single, &ops, model->get());
    ASSERT_TRUE(dp.ok()) << dp.status();
    Optimizer<float> opt(ops, (*model)->layout(), c.train().optimizer(), (*dp)->optimizer_shard());
    const MemoryPerRank measured = MeasureMemoryPerRank(**model, opt, **dp);
    auto predicted = PredictMemoryPerRank(
        c, {.ranks = 1, .zero_stage = 0, .micro_batch = 3, .device = DeviceKind::kCpu});
    ASSERT_TRUE(predicted.ok()) << predicted.status();
    EXPECT_EQ(predicted->parameters, measured.parameters) << optimizer;
    EXPECT_EQ(predicted->gradients, measured.gradients) << optimizer;
    EXPECT_EQ(predicted->optimizer, measured.optimizer) << optimizer;
    EXPECT_EQ(predicted->activations, measured.activations) << optimizer;
    // By hand: 4 bytes per parameter for each of parameters and gradients; m, v, a scalar and
    // (LAMB) a scratch of the largest tensor.
    const ParameterLayout& layout = (*model)->layout();
    int64_t largest = 0;
    for (const TensorSpec& t : layout.tensors()) largest = std::max(largest, t.numel);
    const bool lamb = std::string(optimizer) == "LAMB";
    EXPECT_EQ(measured.parameters, 4 * layout.total());
    EXPECT_EQ(measured.optimizer, 4 * (2 * layout.total() + 1 + (lamb ? largest : 0)));
    EXPECT_GT(measured.activations, 0);
  }
}

TEST(MemoryReportTest, ZeroOneShardsAddUpToTheWholeState) {
  const ExperimentConfig c = Tiny("ADAMW");
  const int64_t n = ParameterLayout::ForModel(c.model()).total();
  auto whole = PredictMemoryPerRank(c, {.ranks = 4, .zero_stage = 0});
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->optimizer, 4 * (2 * n + 1));
  EXPECT_EQ(whole->activations, 0) << "no micro-batch given";
  int64_t optimizer = 0, shard_gradients = 0;
  for (int rank = 0; rank < 4; ++rank) {
    auto m = PredictMemoryPerRank(c, {.ranks = 4, .zero_stage = 1, .rank = rank});
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->parameters, whole->parameters) << "stage 1 does not shard parameters";
    EXPECT_NEAR(m->optimizer, whole->optimizer / 4.0, 0.02 * whole->optimizer / 4.0);
    optimizer += m->optimizer - 4;  // less the rank's scalar
    shard_gradients += m->gradients - 4 * n;
  }
  EXPECT_EQ(optimizer, 4 * 2 * n);
  EXPECT_EQ(shard_gradients, 4 * n);
}

TEST(MemoryReportTest, BadRequestsAreRefused) {
  const ExperimentConfig c = Tiny("ADAMW");
  EXPECT_FALSE(PredictMemoryPerRank(c, {.ranks = 0}).ok());
  EXPECT_FALSE(PredictMemoryPerRank(c, {.ranks = 2, .zero_stage = 2}).ok());
  EXPECT_FALSE(PredictMemoryPerRank(c, {.ranks = 2, .rank = 2}).ok());
}

}  // namespace
}  // namespace headroom
