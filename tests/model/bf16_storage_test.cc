// Model<float, Bf16> (activations stored in bf16, model/transformer.h) on CpuBf16Ops against
// Model<float> on the bf16 twin, Bf16ActivationOps, which keeps bf16-rounded values in float
// buffers and decides what to round by each op's role (kernels/bf16_activation_ops.h). The
// typed model decides by the type of each buffer instead, and reads its weights from a mirror
// rounded once per update instead of at every read; the two must give the same bits: losses,
// encoder output, every parameter gradient, and the argmax counts of an evaluation Forward. Over
// BERT and the causal LM (post-LN and pre-LN), both attention paths, dropout on, the recomputing
// options, and two micro-batches accumulated. A buffer typed bf16 where the twin keeps fp32, a
// GEMM weight read from the parameters instead of the mirror, or a stale mirror shows as a
// difference. The typed model must also hold its activations in fewer bytes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "config/load.h"
#include "gtest/gtest.h"
#include "kernels/bf16_activation_ops.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu_bf16_ops.h"
#include "model/batch.h"
#include "model/transformer.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

using testing::MiniModel;

constexpr int kBatch = 2;
constexpr int kSeq = 64;
constexpr int kPredictions = 10;

// What one model computed on the two batches: a training step of two micro-batches, then an
// evaluation Forward that counts correct predictions.
struct Run {
  std::vector<double> losses;
  std::vector<float> hidden;  // the encoder output after the first micro-batch, widened
  std::vector<float> grads;
  int64_t eval_correct = -1;
  int64_t activation_bytes = 0;
};

std::vector<float> Widened(const std::vector<float>& v) { return v; }
std::vector<float> Widened(const std::vector<Bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

template <typename A>
Run Train(const ModelConfig& m, const ModelOptions& options, Ops<float, A>* ops,
          const std::vector<float>& w, const std::vector<Batch>& batches) {
  Run run;
  auto created = Model<float, A>::Create(m, ops, {kBatch, kSeq, kPredictions}, options);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok()) return run;
  Model<float, A>& model = **created;
  run.activation_bytes = model.ActivationBytes();
  model.SetParameters(w);
  model.ZeroGrads();
  for (size_t i = 0; i < batches.size(); ++i) {
    const DropoutKey key{.seed = 11, .step = 3 + i};
    absl::StatusOr<LossStats> loss = model.Forward(batches[i], /*training=*/true, key);
    EXPECT_TRUE(loss.ok()) << loss.status();
    if (!loss.ok()) return run;
    run.losses.push_back(loss->loss);
    if (i == 0) {
      std::vector<A> h(static_cast<size_t>(kBatch) * kSeq * m.d_model());
      ops->CopyToHost(h.data(), model.hidden(), sizeof(A) * h.size());
      run.hidden = Widened(h);
    }
    model.Backward(0.5f);
  }
  run.grads = model.GetGradients();
  absl::StatusOr<LossStats> eval = model.Forward(batches[0], /*training=*/false, {}, true);
  EXPECT_TRUE(eval.ok()) << eval.status();
  if (eval.ok()) {
    run.losses.push_back(eval->loss);
    run.eval_correct = m.objective() == ModelConfig::BERT ? eval->mlm_correct : eval->lm_correct;
  }
  return run;
}

uint32_t Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// Bitwise equality of two float vectors, naming the first difference.
void ExpectSameBits(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(Bits(got[i]), Bits(want[i]))
        << what << "[" << i << "]: " << got[i] << " vs " << want[i];
  }
}

void ExpectTypedModelMatchesTwin(const ModelConfig& m, const ModelOptions& options) {
  CpuOps<float> cpu_a, cpu_b;
  std::vector<float> w;
  {
    auto init = Model<float>::Create(m, &cpu_a, {kBatch, kSeq, kPredictions});
    ASSERT_TRUE(init.ok()) << init.status();
    (*init)->InitParameters(5);
    w = (*init)->GetParameters();
  }
  const std::vector<Batch> batches = {RandomBatch(m, kBatch, kSeq, kPredictions, 9),
                                      RandomBatch(m, kBatch, kSeq, kPredictions, 10)};
  auto twin = Bf16ActivationOps::Create(&cpu_a).value();
  auto typed_ops = CpuBf16Ops::Create(&cpu_b).value();
  const Run want = Train<float>(m, options, twin.get(), w, batches);
  const Run got = Train<Bf16>(m, options, typed_ops.get(), w, batches);
  ASSERT_EQ(got.losses.size(), 3u);
  EXPECT_EQ(got.losses, want.losses);
  ExpectSameBits(got.hidden, want.hidden, "encoder output");
  ExpectSameBits(got.grads, want.grads, "gradient");
  EXPECT_EQ(got.eval_correct, want.eval_correct);
  EXPECT_GE(got.eval_correct, 0);
  // Most activations are bf16: well under the fp32 model's bytes.
  EXPECT_LT(got.activation_bytes, want.activation_bytes * 3 / 4);
}

TEST(Bf16Storage, BertPostLnMaterialisedAttentionWithDropout) {
  ExpectTypedModelMatchesTwin(MiniModel("bert_mini_std"),
                              {.attention = AttentionPath::kMaterialized});
}

TEST(Bf16Storage, BertFusedAttentionRecomputingGeluAndLayerNormInputs) {
  ExpectTypedModelMatchesTwin(
      MiniModel("bert_mini_fixed"),
      {.attention = AttentionPath::kFused, .recompute_gelu = true, .layernorm_from_output = true});
}

TEST(Bf16Storage, BertWithoutDropout) {
  ExpectTypedModelMatchesTwin(
      MiniModel("bert_mini_std", {"model.hidden_dropout=0", "model.attention_dropout=0"}),
      {.attention = AttentionPath::kFused});
}

// tensor2tensor's transformer: pre-LN, the timing signal, scaled embeddings, FFN dropout.
TEST(Bf16Storage, CausalLmPreLnWithLabelSmoothing) {
  ExpectTypedModelMatchesTwin(
      MiniModel("lm_mini", {"model.norm=PRE_LN", "model.position=SINUSOIDAL",
                            "model.scale_embeddings=true", "model.ffn_dropout=0.1"}),
      {.attention = AttentionPath::kMaterialized, .label_smoothing = 0.1f});
}

TEST(Bf16Storage, CausalLmFusedAttention) {
  ExpectTypedModelMatchesTwin(MiniModel("lm_mini"), {.attention = AttentionPath::kFused});
}

}  // namespace
}  // namespace headroom
