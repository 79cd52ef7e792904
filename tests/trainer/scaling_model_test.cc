// The scaling model (trainer/scaling_model.h) against numbers worked by hand from its formulas:
// two buckets of 160 and 240 MB at 100 GB/s, alpha 1 us, 3 ms of forward+backward, 1e8 AdamW
// parameters over 1000 GB/s of HBM; the tail term at R = 3; the NIC bandwidth beyond a node.
#include "trainer/scaling_model.h"

#include <vector>

#include "gtest/gtest.h"

namespace headroom {
namespace {

constexpr double kTol = 1e-9;  // ms

std::vector<GradientBucket> TwoBuckets() {
  // Launch order: the top of the buffer first.
  return {{60000000, 100000000, {1}}, {0, 60000000, {0}}};
}

ScalingInputs Inputs() {
  ScalingInputs in;
  in.nvlink_gbs = 100;
  in.ib_gbs = 50;
  in.gpus_per_node = 8;
  in.latency_us = 1;
  in.hbm_gbs = 1000;
  return in;
}

TEST(ScalingModelTest, TwoRanksByHand) {
  const StepPrediction p =
      PredictStep(TwoBuckets(), 100000000, 3.0, 2, OptimizerConfig::ADAMW, Inputs());
  EXPECT_NEAR(p.bandwidth_gbs, 100, kTol);
  // All-reduce: 2 (1)/2 x 160 MB / 100 GB/s + 2 alpha = 1.602 ms; 240 MB: 2.402 ms.
  EXPECT_NEAR(p.allreduce_ms, 1.602 + 2.402, kTol);
  // Optimizer: 1e8 x 28 B / 1000 GB/s.
  EXPECT_NEAR(p.optimizer_ms, 2.8, kTol);
  EXPECT_NEAR(p.step_no_overlap_ms, 3 + 4.004 + 2.8, kTol);
  // Backward 2 ms: bucket 0 ready at 0.8 ms, ends 2.402; bucket 1 ready at 2, starts 2.402,
  // ends 4.804; step = forward 1 + 4.804 + 2.8.
  EXPECT_NEAR(p.step_overlap_ms, 1 + 4.804 + 2.8, kTol);
  // ZeRO-1: reduce-scatter 1/2 x 160 MB / 100 GB/s + alpha = 0.801, 1.201 (no tails: both
  // even); ends 1.601 then max(2, 1.601) + 1.201 = 3.201; all-gather the same 2.002 after the
  // optimizer's half, 1.4 ms.
  EXPECT_NEAR(p.reduce_scatter_ms, 2.002, kTol);
  EXPECT_NEAR(p.all_gather_ms, 2.002, kTol);
  EXPECT_NEAR(p.step_zero1_ms, 1 + 3.201 + 1.4 + 2.002, kTol);
}

TEST(ScalingModelTest, ATailCostsTwoTreeLatencies) {
  // R = 3: 4e7 elements leave a tail of 1, 6e7 none. Chunks: 13333333 x 3 and 2e7 x 3.
  const StepPrediction p =
      PredictStep(TwoBuckets(), 100000000, 3.0, 3, OptimizerConfig::ADAMW, Inputs());
  const double rs0 = 2.0 / 3 * 13333333 * 3 * 4 / 100e9 * 1e3 + 2 * 1e-3;
  const double rs1 = 2.0 / 3 * 20000000 * 3 * 4 / 100e9 * 1e3 + 2 * 1e-3;
  const double tail = 2 * 2 * 1e-3;  // 2 ceil(log2 3) alpha
  EXPECT_NEAR(p.reduce_scatter_ms, rs0 + rs1 + tail, kTol);
  EXPECT_NEAR(p.all_gather_ms, rs0 + rs1 + tail, kTol);
}

TEST(ScalingModelTest, BeyondANodeTheNicsSetTheBandwidthAndTreeLatencyIsLogarithmic) {
  ScalingInputs in = Inputs();
  in.tree_latency = true;
  const StepPrediction p =
      PredictStep(TwoBuckets(), 100000000, 3.0, 16, OptimizerConfig::ADAMW, in);
  EXPECT_NEAR(p.bandwidth_gbs, 50, kTol);
  // 2 (15)/16 x 400 MB / 50 GB/s + 2 buckets x 2 log2(16) alpha.
  EXPECT_NEAR(p.allreduce_ms, 2.0 * 15 / 16 * 400e6 / 50e9 * 1e3 + 2 * 8 * 1e-3, kTol);
}

TEST(ScalingModelTest, LambMovesMoreBytesThanAdamW) {
  EXPECT_EQ(OptimizerBytesPerParameter(OptimizerConfig::ADAMW, false), 28);
  EXPECT_EQ(OptimizerBytesPerParameter(OptimizerConfig::ADAMW, true), 28);
  EXPECT_EQ(OptimizerBytesPerParameter(OptimizerConfig::LAMB, false), 48);
  EXPECT_EQ(OptimizerBytesPerParameter(OptimizerConfig::LAMB, true), 64);
}

}  // namespace
}  // namespace headroom
