// Model<T> against independent references: the loss of a naive host transformer
// (model_test_util.h), finite-difference gradients of every parameter tensor in float64, the
// attention masks' exact independence properties, and dropout determinism.
#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/init.h"
#include "tests/model/finite_difference_check.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

using testing::RandomParameters;
using testing::ReferenceModel;
using testing::ReferenceResult;
using testing::RiddersDerivative;
using testing::TinyBert;
using testing::TinyLm;

constexpr int kBatch = 2, kSeq = 6, kPred = 3;

// A BERT batch with padding in both sequences, a masked slot left empty (weight 0), and
// non-unit weights.
Batch TinyBertBatch(const ModelConfig& m, uint64_t seed) {
  Batch b = RandomBatch(m, kBatch, kSeq, kPred, seed);
  // Sequence 0 has 4 real tokens, sequence 1 has 5, whatever lengths RandomBatch drew.
  const int real[kBatch] = {4, 5};
  for (int i = 0; i < kBatch; ++i) {
    for (int s = 0; s < kSeq; ++s) {
      const int k = i * kSeq + s;
      if (s < real[i] && b.input_mask[k] == 0) b.input_mask[k] = 1, b.input_ids[k] = 1 + s;
      if (s >= real[i]) b.input_mask[k] = 0, b.input_ids[k] = 0, b.segment_ids[k] = 0;
    }
  }
  const int pos[kBatch][kPred] = {{1, 3, 0}, {2, 4, 1}};
  const float w[kBatch][kPred] = {{1.0f, 0.5f, 0.0f}, {1.0f, 1.0f, 2.0f}};
  for (int i = 0; i < kBatch; ++i) {
    for (int j = 0; j < kPred; ++j) {
      b.masked_lm_positions[i * kPred + j] = pos[i][j];
      b.masked_lm_weights[i * kPred + j] = w[i][j];
      b.masked_lm_ids[i * kPred + j] = 1 + (3 * i + 5 * j) % (m.vocab_size() - 1);
    }
  }
  b.next_sentence_labels = {0, 1};
  return b;
}

// An LM batch whose second sequence ends in two padding targets.
Batch TinyLmBatch(const ModelConfig& m, uint64_t seed) {
  Batch b = RandomBatch(m, kBatch, kSeq, 0, seed);
  for (int s = 0; s < kSeq; ++s) {
    if (b.targets[s] == 0) b.targets[s] = 1 + s;  // sequence 0 fully real
  }
  b.targets[kSeq + 4] = 0;
  b.targets[kSeq + 5] = 0;
  return b;
}

Batch TinyBatch(const ModelConfig& m, uint64_t seed) {
  return m.objective() == ModelConfig::BERT ? TinyBertBatch(m, seed) : TinyLmBatch(m, seed);
}

std::unique_ptr<Model<double>> MakeModel(const ModelConfig& m, CpuOps<double>* ops, uint64_t seed,
                                         AttentionPath path = AttentionPath::kAuto,
                                         bool recompute = false, float label_smoothing = 0) {
  // recompute: both activation-memory options (GELU output, LayerNorm inputs; the latter only
  // exists for POST_LN).
  const bool ln_from_output = recompute && m.norm() != ModelConfig::PRE_LN;
  auto model = Model<double>::Create(m, ops, {kBatch, kSeq, kPred},
                                     {path, recompute, ln_from_output, label_smoothing});
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->SetParameters(RandomParameters((*model)->layout(), m.initializer_range(), seed));
  return std::move(*model);
}

// ---- Forward against the naive reference -------------------------------------------------

void ExpectMatchesReference(const ModelConfig& m, AttentionPath path = AttentionPath::kAuto) {
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 7, path);
  EXPECT_EQ(model->fused_attention(), path == AttentionPath::kFused);
  Batch batch = TinyBatch(m, 3);
  absl::StatusOr<LossStats> got = model->Forward(batch, /*training=*/false, {}, true);
  ASSERT_TRUE(got.ok()) << got.status();
  ReferenceResult want = ReferenceModel(m, model->GetParameters()).Run(batch);
  EXPECT_NEAR(got->loss, want.loss, 1e-10 * std::fabs(want.loss));
  if (m.objective() == ModelConfig::BERT) {
    EXPECT_NEAR(got->mlm_loss, want.mlm_loss, 1e-10 * want.mlm_loss);
    EXPECT_NEAR(got->nsp_loss, want.nsp_loss, 1e-10 * want.nsp_loss);
    EXPECT_EQ(got->mlm_correct, want.mlm_correct);
    EXPECT_EQ(got->nsp_correct, want.nsp_correct);
    EXPECT_EQ(got->mlm_count, 5);  // slots with weight > 0 in TinyBertBatch
    EXPECT_DOUBLE_EQ(got->mlm_weight_sum, 5.5);
    EXPECT_EQ(got->nsp_count, kBatch);
  } else {
    EXPECT_NEAR(got->lm_loss, want.lm_loss, 1e-10 * want.lm_loss);
    EXPECT_EQ(got->lm_correct, want.lm_correct);
    EXPECT_EQ(got->lm_tokens, 2 * kSeq - 2);
  }
  std::vector<double> hidden(want.hidden.size());
  ops.CopyToHost(hidden.data(), model->hidden(), sizeof(double) * hidden.size());
  for (size_t i = 0; i < hidden.size(); ++i) {
    ASSERT_NEAR(hidden[i], want.hidden[i], 1e-10) << "hidden element " << i;
  }
}

TEST(ModelForward, OneLayerBertLossMatchesNaiveReference) {
  ExpectMatchesReference(TinyBert(1, 8, 3, 5, 12));
}
// The fused attention path (Ops::AttentionForward) computes the same function.
TEST(ModelForward, FusedAttentionBertAndLmMatchNaiveReference) {
  ExpectMatchesReference(TinyBert(2, 8, 3, 5, 12), AttentionPath::kFused);
  ExpectMatchesReference(TinyLm(1, 8, 2, 6, 12), AttentionPath::kFused);
}

TEST(ModelForward, TwoLayerStandardBertLossMatchesNaiveReference) {
  ExpectMatchesReference(TinyBert(2, 8, 2, 0, 12));
}

TEST(ModelForward, OneLayerCausalLmLossMatchesNaiveReference) {
  ExpectMatchesReference(TinyLm(1, 8, 3, 5, 12));
}

TEST(ModelForward, UntiedDecoderMatchesNaiveReference) {
  ModelConfig m = TinyLm(1, 8, 2, 0, 12);
  m.set_tie_output_embedding(false);
  ExpectMatchesReference(m);
  ModelConfig b = TinyBert(1, 8, 2, 0, 12);
  b.set_tie_output_embedding(false);
  ExpectMatchesReference(b);
}

// ---- tensor2tensor's options against the naive reference -----------------------------------

ModelConfig PreLn(ModelConfig m) {
  m.set_norm(ModelConfig::PRE_LN);
  return m;
}

// transformer_base's LM: pre-LN, sinusoidal positions, ReLU, sqrt(d)-scaled embeddings, no
// output bias.
ModelConfig T2tLm(ModelConfig m) {
  m.set_norm(ModelConfig::PRE_LN);
  m.set_position(ModelConfig::SINUSOIDAL);
  m.set_activation(ModelConfig::RELU);
  m.set_scale_embeddings(true);
  m.set_output_bias(false);
  return m;
}

TEST(ModelOptions, PreLnMatchesNaiveReference) {
  ExpectMatchesReference(PreLn(TinyLm(2, 8, 2, 6, 12)));
  ExpectMatchesReference(PreLn(TinyBert(2, 8, 3, 5, 12)));
  ExpectMatchesReference(PreLn(TinyBert(1, 8, 2, 0, 12)), AttentionPath::kFused);
}

TEST(ModelOptions, EachOptionMatchesNaiveReference) {
  ModelConfig sinusoid = TinyLm(1, 8, 2, 0, 12);
  sinusoid.set_position(ModelConfig::SINUSOIDAL);
  ExpectMatchesReference(sinusoid);
  ModelConfig relu = TinyBert(1, 8, 2, 0, 12);
  relu.set_activation(ModelConfig::RELU);  // FFN and the MLM transform
  ExpectMatchesReference(relu);
  ModelConfig gelu_tanh = TinyBert(1, 8, 2, 0, 12);
  gelu_tanh.set_activation(ModelConfig::GELU_TANH);
  ExpectMatchesReference(gelu_tanh);
  ModelConfig scaled = TinyLm(1, 8, 2, 0, 12);
  scaled.set_scale_embeddings(true);
  ExpectMatchesReference(scaled);
  ModelConfig no_bias = TinyBert(1, 8, 2, 0, 12);
  no_bias.set_output_bias(false);
  ExpectMatchesReference(no_bias);
  ExpectMatchesReference(T2tLm(TinyLm(2, 9, 3, 3, 12)));  // odd d: a zero last timing channel
  ExpectMatchesReference(T2tLm(TinyLm(2, 8, 2, 0, 12)), AttentionPath::kFused);
}

TEST(ModelOptions, DroppedTensorsAreNotInTheLayout) {
  const ModelConfig m = T2tLm(TinyLm(2, 8, 2, 0, 12));
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 1);
  const ParameterLayout& layout = model->layout();
  EXPECT_EQ(layout.Find("lm.embeddings.position_embeddings.weight"), nullptr);
  EXPECT_EQ(layout.Find("lm.embeddings.LayerNorm.weight"), nullptr);
  EXPECT_EQ(layout.Find("lm.output.bias"), nullptr);
  EXPECT_EQ(layout.Find("lm.encoder.layer.0.attention.output.LayerNorm.weight"), nullptr);
  EXPECT_NE(layout.Find("lm.encoder.layer.1.attention.LayerNorm.weight"), nullptr);
  EXPECT_NE(layout.Find("lm.encoder.layer.1.intermediate.LayerNorm.bias"), nullptr);
  EXPECT_NE(layout.Find("lm.encoder.LayerNorm.weight"), nullptr);
  // Default LM minus the position table [8, 8] and the output bias [13]; the LayerNorms are as
  // many (the embedding one became the final one).
  auto standard = MakeModel(TinyLm(2, 8, 2, 0, 12), &ops, 1);
  EXPECT_EQ(standard->layout().num_parameters() - layout.num_parameters(), 8 * 8 + 13);
}

// The timing signal against tensor2tensor's formula by hand: with all parameters zero, a
// pre-LN model's h_0 is the signal itself. d = 4: two timescales 1 and 1e4, so position p is
// (sin p, sin(p / 1e4), cos p, cos(p / 1e4)).
TEST(ModelOptions, SinusoidalPositionsAreTensor2tensorsTimingSignal) {
  ModelConfig m = PreLn(TinyLm(1, 4, 1, 0, 4));
  m.set_position(ModelConfig::SINUSOIDAL);
  CpuOps<double> ops(1);
  auto model = Model<double>::Create(m, &ops, {1, kSeq, 0}).value();  // parameters all zero
  Batch b = RandomBatch(m, 1, kSeq, 0, 1);
  ASSERT_TRUE(model->Forward(b, false, {}).ok());
  std::vector<double> h0(kSeq * 4);
  ops.CopyToHost(h0.data(), model->hidden(0), sizeof(double) * h0.size());
  for (int p = 0; p < kSeq; ++p) {
    EXPECT_NEAR(h0[p * 4 + 0], std::sin(p), 1e-15) << p;
    EXPECT_NEAR(h0[p * 4 + 1], std::sin(p * 1e-4), 1e-15) << p;
    EXPECT_NEAR(h0[p * 4 + 2], std::cos(p), 1e-15) << p;
    EXPECT_NEAR(h0[p * 4 + 3], std::cos(p * 1e-4), 1e-15) << p;
  }
}

// Label smoothing: a training Forward (no dropout) gives the smoothed loss of the reference, an
// evaluation Forward the plain cross-entropy; by hand, all-zero parameters give uniform
// predictions over V = 13, so the smoothed token loss is log 13 - H(q) for every target.
TEST(ModelOptions, LabelSmoothingMatchesReferenceAndHandValue) {
  for (const ModelConfig& m : {TinyLm(2, 8, 2, 6, 12), TinyBert(1, 8, 2, 0, 12)}) {
    CpuOps<double> ops(1);
    auto model = MakeModel(m, &ops, 7, AttentionPath::kAuto, false, 0.1f);
    const Batch batch = TinyBatch(m, 3);
    const double eps = static_cast<double>(0.1f);
    const double smoothed = model->Forward(batch, /*training=*/true, {}).value().loss;
    const double plain = model->Forward(batch, /*training=*/false, {}).value().loss;
    const std::vector<double> w = model->GetParameters();
    EXPECT_NEAR(smoothed, ReferenceModel(m, w, eps).Run(batch).loss, 1e-10 * smoothed);
    EXPECT_NEAR(plain, ReferenceModel(m, w).Run(batch).loss, 1e-10 * plain);
    EXPECT_NE(smoothed, plain);
  }
  const ModelConfig m = TinyLm(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto zero = Model<double>::Create(m, &ops, {kBatch, kSeq, kPred}, {.label_smoothing = 0.1f});
  ASSERT_TRUE(zero.ok()) << zero.status();
  const double eps = static_cast<double>(0.1f), V = 13;
  const double entropy = -(1 - eps) * std::log(1 - eps) - eps * std::log(eps / (V - 1));
  EXPECT_NEAR((*zero)->Forward(TinyLmBatch(m, 1), true, {}).value().loss, std::log(V) - entropy,
              1e-12);
}

// A hand-computed value: with all weights zero every hidden state is the LayerNorm bias (zero),
// so all logits are zero and each cross-entropy is log(V). MLM mean over weights 5.5 is
// log(17) * 5.5 / (5.5 + 1e-5); NSP is log(2).
TEST(ModelForward, ZeroWeightsGiveUniformPredictions) {
  ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto model = Model<double>::Create(m, &ops, {kBatch, kSeq, kPred}).value();
  absl::StatusOr<LossStats> got = model->Forward(TinyBertBatch(m, 1), false, {});
  ASSERT_TRUE(got.ok());
  EXPECT_NEAR(got->mlm_loss, std::log(17.0) * 5.5 / (5.5 + 1e-5), 1e-12);
  EXPECT_NEAR(got->nsp_loss, std::log(2.0), 1e-12);
  EXPECT_NEAR(got->loss, got->mlm_loss + got->nsp_loss, 1e-15);
}

// ---- Finite-difference gradient checks ---------------------------------------------------

// The check of tests/model/finite_difference_check.h on a tiny model with random weights.
//
// ReLU's kink: a model with ReLU FFNs is piecewise smooth, and a difference quotient whose
// stencil moves some pre-activation across 0 is off by the slope jump. Its checks start
// Ridders at h = 1e-4 instead of 1e-2, so the stencil crosses no kink (the pre-activations
// move by ~h) and the smooth-function estimate holds; rounding noise grows as 1 / h, so the
// floor `tiny` is 1e-4 there.
void CheckGradients(const ModelConfig& m, AttentionPath path = AttentionPath::kAuto,
                    bool recompute = false, float label_smoothing = 0) {
  const bool training = true;  // dropout at the config's rates (0 unless a test sets it)
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 11, path, recompute, label_smoothing);
  const Batch batch = TinyBatch(m, 5);
  const DropoutKey key{42, 3, 0, 0};
  model->ZeroGrads();
  ASSERT_TRUE(model->Forward(batch, training, key).ok());
  model->Backward();
  const std::vector<double> analytic = model->GetGradients();
  std::vector<double> w = model->GetParameters();
  auto loss_at = [&](int64_t i, double value) {
    const double saved = w[i];
    w[i] = value;
    model->SetParameters(w);
    w[i] = saved;
    return model->Forward(batch, training, key).value().loss;
  };
  testing::FiniteDifferenceOptions o;
  o.first_step = m.activation() == ModelConfig::RELU ? 1e-4 : 1e-2;
  o.tiny = 1e-6 * (1e-2 / o.first_step);  // the noise floor grows as 1 / h
  testing::CheckGradientsAgainstRidders(model->layout(), analytic, w, loss_at, o);
  model->SetParameters(w);
}

TEST(ModelGradient, BertStandardHeads) { CheckGradients(TinyBert(2, 8, 2, 0, 12)); }
TEST(ModelGradient, BertHeadSizeLargerThanDOverH) { CheckGradients(TinyBert(2, 8, 2, 6, 12)); }
TEST(ModelGradient, BertHeadSizeSmallerThanDOverH) { CheckGradients(TinyBert(2, 8, 2, 3, 12)); }
TEST(ModelGradient, BertHeadsNotDividingDModel) { CheckGradients(TinyBert(2, 8, 3, 5, 12)); }
TEST(ModelGradient, BertUntiedDecoder) {
  ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  m.set_tie_output_embedding(false);
  CheckGradients(m);
}
TEST(ModelGradient, CausalLmStandardHeads) { CheckGradients(TinyLm(2, 8, 2, 0, 12)); }
TEST(ModelGradient, CausalLmHeadSizeLargerThanDOverH) { CheckGradients(TinyLm(2, 8, 2, 6, 12)); }
TEST(ModelGradient, CausalLmHeadsNotDividingDModel) { CheckGradients(TinyLm(2, 8, 3, 3, 12)); }
// Dropout masks depend only on their keys, so with training on the loss is a smooth function
// of the parameters and the check covers the dropout backward too.
TEST(ModelGradient, BertWithDropout) { CheckGradients(TinyBert(2, 8, 3, 5, 12, 0.3f)); }
TEST(ModelGradient, CausalLmWithDropout) { CheckGradients(TinyLm(2, 8, 2, 6, 12, 0.3f)); }
// The fused attention path (the GPU's in bf16 mode), through CpuOps' twin of the fused ops:
// padding, causal masks, dropout and head sizes either side of d/h.
TEST(ModelGradient, BertFusedAttentionWithDropout) {
  CheckGradients(TinyBert(2, 8, 3, 5, 12, 0.3f), AttentionPath::kFused);
}
TEST(ModelGradient, CausalLmFusedAttentionWithDropout) {
  CheckGradients(TinyLm(2, 8, 2, 6, 12, 0.3f), AttentionPath::kFused);
}
// Recomputing the GELU output and the LayerNorm inputs in backward (train.recompute_gelu,
// train.layernorm_from_output) keeps the gradients exact and keeps N * (ffn_size + 2 d) fewer
// elements per layer.
TEST(ModelGradient, RecomputedActivationsWithFusedAttention) {
  CheckGradients(TinyBert(2, 8, 3, 5, 12, 0.3f), AttentionPath::kFused, /*recompute=*/true);
  CheckGradients(TinyLm(2, 8, 2, 6, 12), AttentionPath::kAuto, /*recompute=*/true);
  // An FFN narrower than d and a small attention: the rebuilt LayerNorm inputs ([N, d]) are
  // the largest thing the workspace holds.
  CheckGradients(TinyBert(1, 8, 1, 2, 4, 0.2f), AttentionPath::kFused, /*recompute=*/true);
}
TEST(ModelMemory, RecomputedActivationsKeepLessAndGiveTheSameGradients) {
  const ModelConfig m = TinyBert(2, 8, 3, 5, 12, 0.2f);
  CpuOps<double> ops(1);
  auto kept = MakeModel(m, &ops, 4);
  auto recomputed = MakeModel(m, &ops, 4, AttentionPath::kAuto, /*recompute=*/true);
  EXPECT_EQ(kept->ActivationElements() - recomputed->ActivationElements(),
            int64_t{m.num_layers()} * kBatch * kSeq * (m.ffn_size() + 2 * m.d_model()));
  const Batch batch = TinyBatch(m, 2);
  std::vector<double> grads[2];
  int i = 0;
  for (Model<double>* model : {kept.get(), recomputed.get()}) {
    model->ZeroGrads();
    ASSERT_TRUE(model->Forward(batch, /*training=*/true, {5, 1, 0, 0}).ok());
    model->Backward();
    grads[i++] = model->GetGradients();
  }
  // The GELU output recomputes to the same bits; the LayerNorm inputs to rounding.
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    ASSERT_NEAR(grads[1][i], grads[0][i], 1e-11 * (1 + std::fabs(grads[0][i]))) << i;
  }
}
TEST(ModelGradient, BertFusedAttentionStandardHeads) {
  CheckGradients(TinyBert(2, 8, 2, 0, 12), AttentionPath::kFused);
}

// tensor2tensor's options, each on its own and together (transformer_base's LM), with dropout
// on the pre-LN residual paths and through both attention paths.
TEST(ModelGradient, PreLnBertAndLmWithDropout) {
  CheckGradients(PreLn(TinyBert(2, 8, 3, 5, 12, 0.3f)));
  CheckGradients(PreLn(TinyLm(2, 8, 2, 6, 12, 0.3f)), AttentionPath::kFused);
}
TEST(ModelGradient, SinusoidalPositionsAndScaledEmbeddings) {
  ModelConfig m = TinyLm(2, 8, 2, 0, 12);
  m.set_position(ModelConfig::SINUSOIDAL);
  m.set_scale_embeddings(true);
  CheckGradients(m);
}
TEST(ModelGradient, ReluAndGeluTanhActivations) {
  ModelConfig relu = TinyBert(2, 8, 2, 6, 12);
  relu.set_activation(ModelConfig::RELU);
  CheckGradients(relu);
  ModelConfig gelu_tanh = TinyBert(2, 8, 2, 6, 12);
  gelu_tanh.set_activation(ModelConfig::GELU_TANH);
  CheckGradients(gelu_tanh, AttentionPath::kAuto, /*recompute=*/true);
}
TEST(ModelGradient, NoOutputBias) {
  ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  m.set_output_bias(false);
  CheckGradients(m);
}
TEST(ModelGradient, LabelSmoothing) {
  CheckGradients(TinyLm(2, 8, 2, 0, 12), AttentionPath::kAuto, false, 0.1f);
  CheckGradients(TinyBert(1, 8, 2, 0, 12, 0.2f), AttentionPath::kAuto, false, 0.2f);
}
// The FFN dropout (tensor2tensor's relu_dropout) on its own, kept and recomputed activations.
TEST(ModelGradient, FfnDropout) {
  ModelConfig bert = TinyBert(2, 8, 2, 6, 12);
  bert.set_ffn_dropout(0.4f);
  CheckGradients(bert);
  ModelConfig lm = T2tLm(TinyLm(2, 8, 2, 0, 12, 0.2f));
  lm.set_ffn_dropout(0.3f);
  CheckGradients(lm, AttentionPath::kFused, /*recompute=*/true);
}
TEST(ModelGradient, Tensor2tensorLmWithDropoutAndLabelSmoothing) {
  CheckGradients(T2tLm(TinyLm(2, 8, 2, 6, 12, 0.2f)), AttentionPath::kFused, /*recompute=*/true,
                 0.1f);
}

// ForwardAsync + Backward + ReadLossStats (the trainer's order) gives the synchronous Forward's
// statistics and the same gradients, for BERT and the LM.
TEST(ModelForward, AsyncForwardThenReadLossStatsEqualsForward) {
  for (const ModelConfig& m : {TinyBert(2, 8, 3, 5, 12, 0.2f), TinyLm(2, 8, 2, 6, 12, 0.2f)}) {
    CpuOps<double> ops(1);
    auto model = MakeModel(m, &ops, 9);
    const Batch batch = TinyBatch(m, 4);
    const DropoutKey key{3, 1, 0, 0};
    model->ZeroGrads();
    const LossStats want = model->Forward(batch, /*training=*/true, key).value();
    model->Backward();
    const std::vector<double> want_grads = model->GetGradients();
    model->ZeroGrads();
    ASSERT_TRUE(model->ForwardAsync(batch, /*training=*/true, key).ok());
    model->Backward();
    const LossStats got = model->ReadLossStats();
    EXPECT_EQ(got.loss, want.loss);
    EXPECT_EQ(got.mlm_loss_sum, want.mlm_loss_sum);
    EXPECT_EQ(got.nsp_loss, want.nsp_loss);
    EXPECT_EQ(got.nsp_correct, want.nsp_correct);
    EXPECT_EQ(got.mlm_count, want.mlm_count);
    EXPECT_EQ(got.lm_loss_sum, want.lm_loss_sum);
    EXPECT_EQ(got.lm_tokens, want.lm_tokens);
    EXPECT_GT(got.loss, 0);
    EXPECT_EQ(model->GetGradients(), want_grads);
  }
}

TEST(ModelGradient, LossScaleScalesAndCallsAccumulate) {
  ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 3);
  const Batch batch = TinyBertBatch(m, 2);
  model->ZeroGrads();
  ASSERT_TRUE(model->Forward(batch, true, {}).ok());
  model->Backward();
  const std::vector<double> once = model->GetGradients();
  model->ZeroGrads();
  for (double scale : {0.25, 0.5}) {
    ASSERT_TRUE(model->Forward(batch, true, {}).ok());
    model->Backward(scale);
  }
  const std::vector<double> twice = model->GetGradients();
  for (size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(twice[i], 0.75 * once[i], 1e-12);
}

// ---- Masks ------------------------------------------------------------------------------

std::vector<double> Hidden(Model<double>& model, CpuOps<double>& ops, const Batch& batch) {
  EXPECT_TRUE(model.Forward(batch, false, {}).ok());
  std::vector<double> h(static_cast<size_t>(batch.batch_size) * batch.seq_length *
                        model.config().d_model());
  ops.CopyToHost(h.data(), model.hidden(), sizeof(double) * h.size());
  return h;
}

TEST(ModelMask, ChangingAPaddedTokenChangesNoOtherPosition) {
  ModelConfig m = TinyBert(2, 8, 3, 5, 12);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 4);
  Batch batch = TinyBertBatch(m, 6);
  const std::vector<double> before = Hidden(*model, ops, batch);
  const double loss_before = model->Forward(batch, false, {}).value().loss;
  const int padded = 4;  // sequence 0, position 4 has input_mask 0
  ASSERT_EQ(batch.input_mask[padded], 0);
  batch.input_ids[padded] = 9;
  batch.segment_ids[padded] = 1;
  const std::vector<double> after = Hidden(*model, ops, batch);
  const int d = m.d_model();
  bool own_changed = false;
  for (size_t i = 0; i < before.size(); ++i) {
    if (static_cast<int>(i) / d == padded) {
      own_changed |= before[i] != after[i];
    } else {
      ASSERT_EQ(before[i], after[i]) << "row " << i / d << " changed";
    }
  }
  EXPECT_TRUE(own_changed) << "the padded position's own output should change";
  EXPECT_EQ(model->Forward(batch, false, {}).value().loss, loss_before);
}

TEST(ModelMask, ChangingAFutureTokenChangesNoEarlierPosition) {
  ModelConfig m = TinyLm(2, 8, 3, 3, 12);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 4);
  Batch batch = TinyLmBatch(m, 6);
  const std::vector<double> before = Hidden(*model, ops, batch);
  // targets[t] is the input at position t + 1.
  const int b = 1, t = 2, d = m.d_model();
  batch.targets[b * kSeq + t] = batch.targets[b * kSeq + t] % 12 + 1;
  const std::vector<double> after = Hidden(*model, ops, batch);
  for (int s = 0; s < kSeq; ++s) {
    const int row = b * kSeq + s;
    bool changed = false;
    for (int j = 0; j < d; ++j) changed |= before[row * d + j] != after[row * d + j];
    EXPECT_EQ(changed, s >= t + 1) << "position " << s;
  }
  for (int i = 0; i < kSeq * d; ++i) ASSERT_EQ(before[i], after[i]) << "other sequence changed";
}

// ---- Packed sequences ---------------------------------------------------------------------

// Sentences (targets, EOS-free for the test) laid out one per row of `S`, or packed into rows
// (prepare-lm --pack's layout: whole sentences while they fit, segment ids 1, 2, ... and
// positions restarting at 0, padding at the end of each row).
Batch LmRows(const std::vector<std::vector<int32_t>>& sentences, int S, bool pack) {
  std::vector<std::vector<std::vector<int32_t>>> rows;
  for (const auto& sentence : sentences) {
    int used = 0;
    if (pack && !rows.empty()) {
      for (const auto& s : rows.back()) used += static_cast<int>(s.size());
    }
    if (rows.empty() || !pack || used + static_cast<int>(sentence.size()) > S) rows.emplace_back();
    rows.back().push_back(sentence);
  }
  Batch b;
  b.batch_size = static_cast<int>(rows.size());
  b.seq_length = S;
  b.targets.assign(rows.size() * S, 0);
  if (pack) {
    b.targets_segmentation.assign(rows.size() * S, 0);
    b.targets_position.assign(rows.size() * S, 0);
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    int s = 0;
    for (size_t k = 0; k < rows[r].size(); ++k) {
      for (size_t j = 0; j < rows[r][k].size(); ++j, ++s) {
        b.targets[r * S + s] = rows[r][k][j];
        if (pack) {
          b.targets_segmentation[r * S + s] = static_cast<int32_t>(k + 1);
          b.targets_position[r * S + s] = static_cast<int32_t>(j);
        }
      }
    }
  }
  return b;
}

const std::vector<std::vector<int32_t>> kSentences = {
    {3, 7, 1}, {5, 9, 2, 1}, {4, 4, 6, 11, 1}, {8, 1}, {12, 3, 5, 7, 10, 1}, {2}};

// Packed LM training equals unpacked training of the same sentences: the same loss sum over the
// same tokens and the same gradients, on both attention paths, for BERT's architecture and for
// tensor2tensor's (pre-LN, sinusoidal positions) with label smoothing.
TEST(ModelPacking, PackedRowsGiveTheLossesAndGradientsOfOneSentencePerRow) {
  const int S = 8;
  const Batch packed = LmRows(kSentences, S, true), unpacked = LmRows(kSentences, S, false);
  ASSERT_EQ(packed.batch_size, 3);
  ASSERT_EQ(unpacked.batch_size, 6);
  for (const ModelConfig& m : {TinyLm(2, 8, 2, 6, 12), T2tLm(TinyLm(2, 8, 3, 3, 12))}) {
    for (AttentionPath path : {AttentionPath::kMaterialized, AttentionPath::kFused}) {
      SCOPED_TRACE(absl::StrCat("norm ", m.norm(), " fused ", path == AttentionPath::kFused));
      CpuOps<double> ops(1);
      auto model = Model<double>::Create(m, &ops, {6, S, 0}, {path, false, false, 0.1f}).value();
      model->SetParameters(RandomParameters(model->layout(), m.initializer_range(), 5));
      LossStats stats[2];
      std::vector<double> grads[2];
      int i = 0;
      for (const Batch* b : {&packed, &unpacked}) {
        model->ZeroGrads();
        stats[i] = model->Forward(*b, /*training=*/true, {1, 2, 0, 0}).value();
        model->Backward();
        grads[i++] = model->GetGradients();
      }
      EXPECT_EQ(stats[0].lm_tokens, 21);
      EXPECT_EQ(stats[1].lm_tokens, 21);
      EXPECT_NEAR(stats[0].lm_loss_sum, stats[1].lm_loss_sum, 1e-12 * stats[1].lm_loss_sum);
      EXPECT_NEAR(stats[0].loss, stats[1].loss, 1e-12 * stats[1].loss);
      for (size_t j = 0; j < grads[0].size(); ++j) {
        ASSERT_NEAR(grads[0][j], grads[1][j], 1e-12 * (1 + std::fabs(grads[1][j]))) << j;
      }
      // Evaluation (unsmoothed) agrees too.
      EXPECT_NEAR(model->Forward(packed, false, {}).value().lm_loss_sum,
                  model->Forward(unpacked, false, {}).value().lm_loss_sum, 1e-12 * 60);
    }
  }
}

// Attention across sentences is exactly 0: changing every token of the other sentences of a
// packed row leaves a sentence's outputs bitwise unchanged, on both paths.
TEST(ModelPacking, OtherSentencesOfARowChangeNothing) {
  const ModelConfig m = TinyLm(2, 8, 2, 0, 12);
  for (AttentionPath path : {AttentionPath::kMaterialized, AttentionPath::kFused}) {
    CpuOps<double> ops(1);
    auto model = MakeModel(m, &ops, 4, path);
    const int d = m.d_model();
    Batch batch = LmRows({{3, 7, 1}, {5, 9, 1}}, kSeq, true);  // sentence 1 at 0..2, 2 at 3..5
    ASSERT_EQ(batch.batch_size, 1);
    const std::vector<double> before = Hidden(*model, ops, batch);
    for (int s = 3; s < 6; ++s) batch.targets[s] = batch.targets[s] % 12 + 1;  // sentence 2
    const std::vector<double> after = Hidden(*model, ops, batch);
    for (int i = 0; i < 3 * d; ++i) ASSERT_EQ(before[i], after[i]) << "sentence 1 changed at " << i;
    bool changed = false;
    for (int i = 3 * d; i < 6 * d; ++i) changed |= before[i] != after[i];
    EXPECT_TRUE(changed);
  }
}

TEST(ModelPacking, InconsistentPackedFeaturesAreRejected) {
  const ModelConfig m = TinyLm(1, 8, 2, 0, 12);
  const Batch good = LmRows(kSentences, 8, true);
  EXPECT_TRUE(ValidateBatch(m, good).ok());
  Batch no_position = good;
  no_position.targets_position.clear();
  EXPECT_NE(ValidateBatch(m, no_position).message().find("targets_position"), std::string::npos);
  Batch bad_position = good;
  bad_position.targets_position[4] = 0;  // row 0, second token of sentence 2
  EXPECT_NE(ValidateBatch(m, bad_position).message().find("restart"), std::string::npos);
  Batch padding_in_segment = good;
  padding_in_segment.targets_segmentation[7] = 2;  // row 0's padding slot
  EXPECT_NE(ValidateBatch(m, padding_in_segment).message().find("targets_segmentation"),
            std::string::npos);
  Batch split = good;  // row 1: 1 1 1 1 1 2 2 0 -> sentence 1 again after sentence 2
  split.targets_segmentation[8 + 6] = 1;
  split.targets_position[8 + 6] = 0;
  EXPECT_NE(ValidateBatch(m, split).message().find("two runs"), std::string::npos);
}

// ---- Dropout ----------------------------------------------------------------------------

TEST(ModelDropout, SameKeyGivesSameLossAndGradients) {
  ModelConfig m = TinyBert(2, 8, 2, 6, 12, 0.2f);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 8);
  const Batch batch = TinyBertBatch(m, 9);
  auto run = [&](const DropoutKey& key) {
    model->ZeroGrads();
    double loss = model->Forward(batch, true, key).value().loss;
    model->Backward();
    return std::make_pair(loss, model->GetGradients());
  };
  const auto a = run({5, 10, 0, 0});
  const auto b = run({5, 10, 0, 0});
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
  const auto other_step = run({5, 11, 0, 0});
  const auto other_seed = run({6, 10, 0, 0});
  EXPECT_NE(a.first, other_step.first);
  EXPECT_NE(a.first, other_seed.first);
  const double eval1 = model->Forward(batch, false, {5, 10, 0, 0}).value().loss;
  const double eval2 = model->Forward(batch, false, {9, 99, 0, 0}).value().loss;
  EXPECT_EQ(eval1, eval2) << "evaluation must not depend on the dropout key";
  EXPECT_NE(eval1, a.first);
}

TEST(ModelDropout, ZeroRateTrainingEqualsEvaluation) {
  ModelConfig m = TinyLm(1, 8, 2, 0, 12, 0.0f);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 8);
  const Batch batch = TinyLmBatch(m, 9);
  EXPECT_EQ(model->Forward(batch, true, {1, 2, 0, 0}).value().loss,
            model->Forward(batch, false, {}).value().loss);
}

// The FFN dropout drops the activations between the FFN's two dense layers, with the mask of
// its definition (site 3 of each layer): training equals the reference with that mask, for the
// post-LN BERT and the pre-LN ReLU LM, and evaluation has none.
TEST(ModelDropout, FfnDropoutMatchesTheReferenceWithItsMask) {
  for (ModelConfig m : {TinyBert(2, 8, 2, 6, 12), T2tLm(TinyLm(2, 8, 2, 0, 12))}) {
    m.set_ffn_dropout(0.4f);
    CpuOps<double> ops(1);
    auto model = MakeModel(m, &ops, 8);
    const Batch batch = TinyBatch(m, 9);
    const DropoutKey key{5, 10, 0, 0};
    const double trained = model->Forward(batch, true, key).value().loss;
    ReferenceModel reference(m, model->GetParameters());
    const double evaluated = reference.Run(batch).loss;
    reference.SetFfnDropout(key);
    const double want = reference.Run(batch).loss;
    EXPECT_NEAR(trained, want, 1e-10 * std::fabs(want));
    EXPECT_GT(std::fabs(want - evaluated), 1e-6) << "the mask must change the loss";
    EXPECT_NEAR(model->Forward(batch, false, key).value().loss, evaluated,
                1e-10 * std::fabs(evaluated));
  }
}

// ---- Errors and bookkeeping ---------------------------------------------------------------

TEST(ModelCreate, RejectsLimitsBeyondTheModel) {
  CpuOps<double> ops(1);
  auto too_long = Model<double>::Create(TinyBert(1, 8, 2, 0, 12), &ops, {2, 9, 3});
  EXPECT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("max_positions"), std::string::npos);
  ModelConfig bad = TinyBert(1, 8, 3, 0, 12);  // 3 does not divide 8 and no head_size
  EXPECT_FALSE(Model<double>::Create(bad, &ops, {2, 6, 3}).ok());
}

// A model that does not fit is an error naming the allocation, never a model with null
// buffers; the parameters (2^46 floats, 256 TiB, beyond any address space) fail first, so
// nothing else is allocated.
TEST(ModelCreate, AnAllocationThatFailsIsAnErrorNotAModel) {
  ModelConfig m = TinyLm(1, 1 << 16, 1, 0, 4);
  m.set_vocab_size(1 << 30);
  const ParameterLayout layout = ParameterLayout::ForModel(m);
  CpuOps<float> ops(1);
  auto model = Model<float>::Create(m, &ops, {2, 8, 0});
  ASSERT_FALSE(model.ok());
  const std::string msg(model.status().message());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted) << msg;
  EXPECT_NE(msg.find("cannot create the model (" + std::to_string(layout.num_parameters()) +
                     " parameters"),
            std::string::npos)
      << msg;
  EXPECT_NE(
      msg.find("cannot allocate " + std::to_string(layout.total() * 4) + " bytes of host memory"),
      std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

// A backend failure after the model was made (here an allocation of someone else's; on CUDA a
// kernel fault or a failed copy) is what Forward returns, and the status-free ReadLossStats
// gives NaN losses, never the zeros a failed copy would leave.
TEST(ModelForward, ABackendFailureIsTheErrorNotALossOfZero) {
  ModelConfig m = TinyLm(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 1);
  Batch batch = TinyLmBatch(m, 1);
  auto good = model->Forward(batch, false, {});
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_GT(good->loss, 0);
  EXPECT_EQ(ops.AllocBytes(size_t{1} << 62), nullptr);
  auto failed = model->Forward(batch, false, {});
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("reading the loss back: the backend failed: cannot "
                                           "allocate"),
            absl::string_view::npos)
      << failed.status();
  ASSERT_TRUE(model->ForwardAsync(batch, true, {}).ok());
  const LossStats stats = model->ReadLossStats();
  EXPECT_TRUE(std::isnan(stats.loss));
  EXPECT_TRUE(std::isnan(stats.lm_loss));
}

TEST(ModelForward, RejectsOutOfRangeIdsAndOversizedBatches) {
  ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto model = MakeModel(m, &ops, 1);
  Batch batch = TinyBertBatch(m, 1);
  batch.input_ids[3] = 17;
  absl::StatusOr<LossStats> s = model->Forward(batch, false, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("input_ids"), std::string::npos) << s.status();
  Batch big = RandomBatch(m, 3, kSeq, kPred, 1);
  EXPECT_FALSE(model->Forward(big, false, {}).ok());
}

TEST(ModelInit, BertInitialisationIsSeededAndTruncated) {
  ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  m.set_initializer_range(0.02f);
  CpuOps<float> ops(1);
  auto a = Model<float>::Create(m, &ops, {1, 4, 1}).value();
  auto b = Model<float>::Create(m, &ops, {1, 4, 1}).value();
  a->InitParameters(5);
  b->InitParameters(5);
  const std::vector<float> wa = a->GetParameters(), wb = b->GetParameters();
  EXPECT_EQ(wa, wb);
  b->InitParameters(6);
  EXPECT_NE(wa, b->GetParameters());
  double sum_sq = 0;
  int64_t count = 0;
  for (const TensorSpec& t : a->layout().tensors()) {
    for (int64_t i = 0; i < t.numel; ++i) {
      const float v = wa[t.offset + i];
      switch (t.init) {
        case ParamInit::kZeros:
          ASSERT_EQ(v, 0.0f) << t.name;
          break;
        case ParamInit::kOnes:
          ASSERT_EQ(v, 1.0f) << t.name;
          break;
        case ParamInit::kMatrix:
        case ParamInit::kEmbedding:
          ASSERT_LE(std::fabs(v), 0.04f + 1e-7f) << t.name;
          sum_sq += static_cast<double>(v) * v;
          ++count;
          break;
      }
    }
  }
  // A normal truncated at 2 sigma has variance 0.774 sigma^2.
  EXPECT_NEAR(std::sqrt(sum_sq / count), 0.02 * std::sqrt(0.774), 0.002);
}

}  // namespace
}  // namespace headroom

namespace headroom {
namespace {

// tensor2tensor's uniform_unit_scaling (variance_scaling_initializer, fan_avg, uniform, gain 1):
// each matrix [out, in] inside +-L = sqrt(6 / (in + out)) with variance L^2 / 3, embedding
// tables N(0, 1/d) (untruncated: some beyond 2 sigma), biases 0 and gains 1.
TEST(ModelInit, UniformUnitScalingFollowsTensor2tensor) {
  ModelConfig m = TinyLm(1, 64, 4, 0, 256);
  m.set_vocab_size(512);
  m.set_max_positions(256);  // every table 16k+ draws
  m.set_initializer(ModelConfig::UNIFORM_UNIT_SCALING);
  CpuOps<float> ops(1);
  auto model = Model<float>::Create(m, &ops, {1, 4, 1}).value();
  model->InitParameters(3);
  const std::vector<float> w = model->GetParameters();
  int matrices = 0, tables = 0;
  for (const TensorSpec& t : model->layout().tensors()) {
    double sum_sq = 0, largest = 0;
    for (int64_t i = 0; i < t.numel; ++i) {
      const double v = w[t.offset + i];
      sum_sq += v * v;
      largest = std::max(largest, std::fabs(v));
    }
    const double stddev = std::sqrt(sum_sq / static_cast<double>(t.numel));
    if (t.init == ParamInit::kMatrix) {
      const double limit = std::sqrt(6.0 / static_cast<double>(t.shape[0] + t.shape[1]));
      EXPECT_LE(largest, limit) << t.name;
      EXPECT_GT(largest, 0.95 * limit) << t.name;
      // The sample stddev of n >= 16384 uniform draws is within 2% of L / sqrt(3) (its relative
      // standard error is about 0.45 / sqrt(n) < 0.4%).
      EXPECT_NEAR(stddev, limit / std::sqrt(3.0), 0.02 * limit / std::sqrt(3.0)) << t.name;
      ++matrices;
    } else if (t.init == ParamInit::kEmbedding) {
      EXPECT_NEAR(stddev, 1.0 / 8.0, 0.02 / 8.0) << t.name;  // 1 / sqrt(d), d = 64
      EXPECT_GT(largest, 2.5 / 8.0) << t.name << ": a normal of 16k+ draws exceeds 2.5 sigma";
      ++tables;
    } else {
      EXPECT_EQ(largest, t.init == ParamInit::kOnes ? 1.0 : 0.0) << t.name;
    }
  }
  EXPECT_EQ(matrices, 6);  // q, k, v, attention output, intermediate, output
  EXPECT_EQ(tables, 2);    // word and position embeddings
}

// Keeping the dropped attention probabilities (the CPU's choice) and redrawing them from the
// Philox key in backward (the GPU's) must give identical outputs and gradients, in either head
// layout of the materialised path; the two head layouts (sequence-major, the CPU's, and
// qkv-major, the GPU's) and the fused path the same values up to rounding. Two shapes, so that
// the sequence-major products loop over the sequences (h > B) and over the heads (h < B). The
// CPU's layout is the one the model tests compare with the float64 reference and finite
// differences.
TEST(AttentionDropout, KeptRedrawnBothHeadLayoutsAndFusedGiveTheSameGradients) {
  struct Shape {
    int h, B;
  };
  for (const Shape shape : {Shape{3, 2}, Shape{2, 3}}) {
    CpuOps<double> ops(1);
    const int d = 8, h = shape.h, dp = 5, B = shape.B, S = 6, I = h * dp, N = B * S;
    SCOPED_TRACE(absl::StrCat("h ", h, " B ", B));
    std::mt19937_64 rng(3);
    std::normal_distribution<double> normal(0.0, 0.5);
    auto random = [&](int64_t n) {
      std::vector<double> v(n);
      for (double& e : v) e = normal(rng);
      double* p = ops.Alloc(n);
      ops.CopyToDevice(p, v.data(), sizeof(double) * n);
      return p;
    };
    AttentionParams<double> p{random(3 * I * d), random(3 * I), random(d * I), random(d)};
    const double* x = random(N * d);
    const double* dout = random(N * d);
    const DropoutKey key{9, 4, 1, 0};
    struct Variant {
      bool keep, fused;
      HeadLayout heads;
    };
    const Variant variants[] = {{false, false, HeadLayout::kSequenceMajor},
                                {true, false, HeadLayout::kSequenceMajor},
                                {false, false, HeadLayout::kQkvMajor},
                                {true, false, HeadLayout::kQkvMajor},
                                {false, true, HeadLayout::kAuto}};
    std::vector<double> results[5];
    for (int i = 0; i < 5; ++i) {
      const Variant& v = variants[i];
      FixedHeadAttention<double> attn(&ops, d, h, dp, B, S, v.keep, v.fused, v.heads);
      EXPECT_EQ(attn.sequence_major_heads(), v.heads == HeadLayout::kSequenceMajor);
      double* scratch =
          ops.Alloc(FixedHeadAttention<double>::ScratchElements(h, dp, B, S, v.fused));
      double* grads = ops.Alloc(4 * I * d + 3 * I + d);
      AttentionGrads<double> g{grads, grads + 3 * I * d, grads + 3 * I * d + 3 * I,
                               grads + 4 * I * d + 3 * I};
      double* out = ops.Alloc(N * d);
      double* dx = ops.Alloc(N * d);
      attn.Forward(p, x, B, S, nullptr, /*causal=*/true, 0.4f, key, out, scratch);
      attn.Backward(p, g, x, dout, dx, scratch);
      std::vector<double>& r = results[i];
      r.resize(N * d * 2 + 4 * I * d + 3 * I + d);
      ops.CopyToHost(r.data(), out, sizeof(double) * N * d);
      ops.CopyToHost(r.data() + N * d, dx, sizeof(double) * N * d);
      ops.CopyToHost(r.data() + 2 * N * d, grads, sizeof(double) * (4 * I * d + 3 * I + d));
      for (double* q : {scratch, grads, out, dx}) ops.Free(q);
    }
    EXPECT_EQ(results[0], results[1]);
    EXPECT_EQ(results[2], results[3]);
    for (int i : {2, 4}) {
      SCOPED_TRACE(i == 2 ? "qkv-major" : "fused");
      ASSERT_EQ(results[i].size(), results[0].size());
      for (size_t j = 0; j < results[0].size(); ++j) {
        ASSERT_NEAR(results[i][j], results[0][j], 1e-12 * (1 + std::fabs(results[0][j]))) << j;
      }
    }
  }
}

}  // namespace
}  // namespace headroom
