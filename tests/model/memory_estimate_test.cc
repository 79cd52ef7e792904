// ActivationElements (model/memory_estimate.h), computed without allocating, against the
// accounting of a Model actually created on the CPU (Model::ActivationElements(), summed as its
// constructor allocates): equal on BERT and LM shapes, standard and fixed head sizes, both
// attention paths, with and without attention dropout (the CPU keeps the dropped probabilities),
// and every recompute option.
#include "model/memory_estimate.h"

#include <memory>
#include <string>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu_bf16_ops.h"
#include "kernels/forwarding_ops.h"
#include "model/transformer.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

TEST(MemoryEstimateTest, ActivationElementsEqualTheModelsOwnAccounting) {
  CpuOps<float> ops(1);
  int cases = 0;
  for (const ModelConfig& m :
       {testing::TinyBert(2, 8, 2, 0, 12), testing::TinyBert(3, 8, 3, 5, 12, 0.1f),
        testing::TinyLm(2, 8, 2, 6, 12), testing::TinyLm(1, 8, 4, 0, 20, 0.2f)}) {
    for (AttentionPath path :
         {AttentionPath::kAuto, AttentionPath::kFused, AttentionPath::kMaterialized}) {
      for (int recompute = 0; recompute < 4; ++recompute) {
        ModelOptions o;
        o.attention = path;
        o.recompute_gelu = recompute & 1;
        o.layernorm_from_output = recompute & 2;
        const ModelLimits limits{3, 7, 2};
        SCOPED_TRACE(::testing::Message()
                     << (m.objective() == ModelConfig::BERT ? "BERT" : "LM") << " layers "
                     << m.num_layers() << " dropout " << m.attention_dropout() << " path "
                     << static_cast<int>(path) << " recompute " << recompute);
        auto model = Model<float>::Create(m, &ops, limits, o);
        ASSERT_TRUE(model.ok()) << model.status();
        const bool fused = (*model)->fused_attention();
        EXPECT_EQ(ActivationElements(m, limits, o, fused, m.attention_dropout() > 0),
                  (*model)->ActivationElements());
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 48);
}

// The same for Model<float, Bf16> (bf16 activation storage on CpuBf16Ops): ActivationBytes with
// bf16_activations against the model's typed accounting, post-LN and pre-LN (whose hidden states
// and LayerNorm outputs swap types), both attention paths, every recompute option.
TEST(MemoryEstimateTest, Bf16ActivationBytesEqualTheTypedModelsOwnAccounting) {
  CpuOps<float> cpu(1);
  auto ops = CpuBf16Ops::Create(&cpu).value();
  ModelConfig pre_ln = testing::TinyLm(2, 8, 2, 6, 12);
  pre_ln.set_norm(ModelConfig::PRE_LN);
  int cases = 0;
  for (const ModelConfig& m :
       {testing::TinyBert(2, 8, 2, 0, 12), testing::TinyBert(3, 8, 3, 5, 12, 0.1f), pre_ln,
        testing::TinyLm(1, 8, 4, 0, 20, 0.2f)}) {
    for (AttentionPath path : {AttentionPath::kFused, AttentionPath::kMaterialized}) {
      for (int recompute = 0; recompute < 4; ++recompute) {
        ModelOptions o;
        o.attention = path;
        o.recompute_gelu = recompute & 1;
        o.layernorm_from_output = recompute & 2;
        if (o.layernorm_from_output && m.norm() == ModelConfig::PRE_LN) continue;
        const ModelLimits limits{3, 7, 2};
        SCOPED_TRACE(::testing::Message()
                     << (m.objective() == ModelConfig::BERT ? "BERT" : "LM") << " pre-LN "
                     << (m.norm() == ModelConfig::PRE_LN) << " path " << static_cast<int>(path)
                     << " recompute " << recompute);
        auto model = Model<float, Bf16>::Create(m, ops.get(), limits, o);
        ASSERT_TRUE(model.ok()) << model.status();
        EXPECT_EQ(ActivationBytes(m, limits, o, (*model)->fused_attention(),
                                  m.attention_dropout() > 0, /*bf16_activations=*/true),
                  (*model)->ActivationBytes());
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 28);
}

// A backend whose fused attention backward takes scratch of its own (CUDA: the stored dS): the
// estimate's workspace counts it once (the layers' backwards run one after another), and only
// where the layers take the fused path.
class AttentionScratchOps final : public ForwardingOps<float> {
 public:
  using ForwardingOps<float>::ForwardingOps;
  int64_t AttentionBackwardScratchBytes(int B, int S, int H, int D) const override {
    return int64_t{B} * H * S * S * 2 + D;
  }
};

TEST(MemoryEstimateTest, CountsTheFusedAttentionBackwardsScratchOnce) {
  CpuOps<float> cpu(1);
  AttentionScratchOps ops(&cpu);
  const ModelConfig m = testing::TinyLm(3, 8, 2, 6, 12);  // 3 layers, 2 heads of 6
  const ModelLimits limits{3, 7, 2};
  const OptimizerConfig adam;
  for (bool bf16 : {false, true}) {
    const MemoryEstimate base =
        EstimateTrainingMemory(m, limits, {.attention = AttentionPath::kFused}, cpu, adam, bf16);
    const MemoryEstimate fused =
        EstimateTrainingMemory(m, limits, {.attention = AttentionPath::kFused}, ops, adam, bf16);
    EXPECT_EQ(fused.workspace - base.workspace, 3 * 2 * 7 * 7 * 2 + 6) << "bf16 " << bf16;
    EXPECT_EQ(fused.total() - base.total(), fused.workspace - base.workspace);
    const MemoryEstimate materialized = EstimateTrainingMemory(
        m, limits, {.attention = AttentionPath::kMaterialized}, ops, adam, bf16);
    EXPECT_EQ(materialized.workspace,
              EstimateTrainingMemory(m, limits, {.attention = AttentionPath::kMaterialized}, cpu,
                                     adam, bf16)
                  .workspace);
  }
}

}  // namespace
}  // namespace headroom
