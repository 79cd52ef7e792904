// IgnoredSettings (trainer/ignored_settings.h) on configs parsed here: what each backend does not
// apply as written is named, and nothing is named when everything applies.
#include "trainer/ignored_settings.h"

#include <string>
#include <vector>

#include "config/load.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;

ExperimentConfig Config(const std::vector<std::string>& overrides) {
  absl::StatusOr<ExperimentConfig> c = ParseConfig(R"pb(
                                                     model {
                                                       objective: CAUSAL_LM
                                                       vocab_size: 100
                                                       max_positions: 16
                                                       num_layers: 1
                                                       d_model: 16
                                                       num_heads: 2
                                                       ffn_size: 32
                                                     }
                                                     train { steps: 1 global_batch_size: 2 }
                                                   )pb",
                                                   "test.textproto", overrides);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ExperimentConfig();
}

TEST(IgnoredSettingsTest, TheCpuAppliesBf16AndFusedAttention) {
  EXPECT_TRUE(IgnoredSettings(Config({}), DeviceKind::kCpu, "").empty());
  EXPECT_TRUE(IgnoredSettings(Config({"train.precision=bf16"}), DeviceKind::kCpu, "").empty());
  EXPECT_TRUE(IgnoredSettings(Config({"train.attention=fused"}), DeviceKind::kCpu, "").empty());
}

TEST(IgnoredSettingsTest, OnCudaTheEnvironmentAndFusedAttentionOverridePrecision) {
  EXPECT_TRUE(IgnoredSettings(Config({"train.precision=bf16"}), DeviceKind::kCuda, "bf16").empty());
  EXPECT_TRUE(IgnoredSettings(Config({"train.precision=bf16", "train.attention=fused"}),
                              DeviceKind::kCuda, "")
                  .empty());
  const std::vector<std::string> env =
      IgnoredSettings(Config({"train.precision=bf16"}), DeviceKind::kCuda, "fp32");
  ASSERT_EQ(env.size(), 1u);
  EXPECT_THAT(env[0], HasSubstr("train.precision=bf16 is overridden for the matrix products by "
                                "HEADROOM_CUDA_GEMM_PRECISION=fp32"));
  const std::vector<std::string> fused =
      IgnoredSettings(Config({"train.attention=fused"}), DeviceKind::kCuda, "");
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_THAT(fused[0], HasSubstr("train.attention=fused multiplies in bf16 on CUDA"));
}

}  // namespace
}  // namespace headroom
