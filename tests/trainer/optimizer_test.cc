// The optimizer on CpuOps<double> against hand-computed updates: AdamW with and without bias
// correction (one and two steps), no weight decay for LayerNorm and biases, LAMB's per-tensor
// trust ratio, global-norm clipping, accumulation equal to one big batch, non-finite gradients,
// and the checkpoint state round trip. Reference numbers were computed by hand (and checked in
// a Python shell) from the formulas in kernels/ops.h, not recorded from this code.
#include "trainer/optimizer.h"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "config/load.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/parameter_layout.h"

namespace headroom {
namespace {

// The config's hyper-parameters are floats (0.9f = 0.8999999761581421, 0.999f, 1e-6f, 0.1f, 0.01f)
// and reach the double kernels as such; the references below use those rounded values.
constexpr double kTol = 1e-12;

ModelConfig TinyBert() {
  ModelConfig m;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(R"pb(
                                                              objective: BERT
                                                              vocab_size: 5
                                                              max_positions: 4
                                                              type_vocab_size: 2
                                                              num_layers: 1
                                                              d_model: 2
                                                              num_heads: 1
                                                              ffn_size: 2
                                                            )pb",
                                                            &m));
  ExperimentConfig c;
  *c.mutable_model() = m;
  FillDefaults(c);
  return c.model();
}

// Decay applies to weights only: names of LayerNorm parameters and biases, by HF convention.
bool ExpectDecay(const std::string& name) {
  return !absl::StrContains(name, "LayerNorm") && !absl::EndsWith(name, "bias");
}

OptimizerConfig Adam(bool bias_correction, float max_grad_norm = 0) {
  OptimizerConfig o;
  o.set_type(OptimizerConfig::ADAMW);
  o.set_beta1(0.9f);
  o.set_beta2(0.999f);
  o.set_epsilon(1e-6f);
  o.set_weight_decay(0.01f);
  o.set_bias_correction(bias_correction);
  o.set_max_grad_norm(max_grad_norm);
  return o;
}

class OptimizerTest : public ::testing::Test {
 protected:
  OptimizerTest() : layout_(ParameterLayout::ForModel(TinyBert())), n_(layout_.total()) {
    params_ = ops_.Alloc(n_);
    grads_ = ops_.Alloc(n_);
  }
  ~OptimizerTest() override {
    ops_.Free(params_);
    ops_.Free(grads_);
  }
  void Set(double* dst, const std::vector<double>& host) {
    ops_.CopyToDevice(dst, host.data(), host.size() * sizeof(double));
  }
  std::vector<double> Get(const double* src, int64_t n) {
    std::vector<double> h(static_cast<size_t>(n));
    ops_.CopyToHost(h.data(), src, h.size() * sizeof(double));
    return h;
  }

  CpuOps<double> ops_{1};
  ParameterLayout layout_;
  int64_t n_;
  double* params_;
  double* grads_;
};

TEST_F(OptimizerTest, AdamWithoutBiasCorrectionTwoSteps) {
  Optimizer<double> opt(ops_, layout_, Adam(/*bias_correction=*/false));
  ops_.Fill(params_, n_, 1.0);
  ops_.Fill(grads_, n_, 0.5);
  OptimizerStats st = opt.Step(params_, grads_, 0.1);
  ASSERT_TRUE(st.applied);
  EXPECT_EQ(opt.step(), 1);
  // m = (1-b1) 0.5 ~ 0.05, v = (1-b2) 0.25 ~ 0.00025:
  // w = 1 - 0.1 * (0.05 / (sqrt(0.00025) + 1e-6) [+ 0.01 * 1]) ~ 0.68279 [0.68379].
  std::vector<double> w = Get(params_, n_);
  for (const TensorSpec& t : layout_.tensors()) {
    const double want = ExpectDecay(t.name) ? 0.682790117207844 : 0.6837901172003934;
    for (int64_t i = 0; i < t.numel; ++i) {
      ASSERT_NEAR(w[t.offset + i], want, kTol) << t.name;
    }
  }
  // Second step with g = -0.25 on the pooler weight: m = 0.02, v = 0.00031225.
  const TensorSpec& pw = layout_.Get("bert.pooler.dense.weight");
  ops_.Fill(grads_ + pw.offset, pw.numel, -0.25);
  opt.Step(params_, grads_, 0.1);
  w = Get(params_, n_);
  EXPECT_NEAR(w[pw.offset], 0.5689306150081244, kTol);
  std::vector<double> m = Get(opt.m(), n_), v = Get(opt.v(), n_);
  EXPECT_NEAR(m[pw.offset], 0.020000003576278402, kTol);
  EXPECT_NEAR(v[pw.offset], 0.00031224598312373786, kTol);
}

TEST_F(OptimizerTest, AdamWithBiasCorrection) {
  Optimizer<double> opt(ops_, layout_, Adam(/*bias_correction=*/true));
  ops_.Fill(params_, n_, 1.0);
  ops_.Fill(grads_, n_, 0.5);
  opt.Step(params_, grads_, 0.1);
  // Step 1: m_hat = g, v_hat = g^2, so u = 0.5 / (0.5 + 1e-6) [+ 0.01].
  std::vector<double> w = Get(params_, n_);
  const TensorSpec& pw = layout_.Get("bert.pooler.dense.weight");
  const TensorSpec& ln = layout_.Get("bert.embeddings.LayerNorm.weight");
  EXPECT_NEAR(w[pw.offset], 0.8990001985169369, kTol);
  EXPECT_NEAR(w[ln.offset], 0.9000001985094863, kTol);
  // Step 2 with g = -0.25: m = 0.02 / (1 - 0.81), v = 0.00031225 / (1 - 0.998001).
  ops_.Fill(grads_ + pw.offset, pw.numel, -0.25);
  opt.Step(params_, grads_, 0.1);
  w = Get(params_, n_);
  EXPECT_NEAR(w[pw.offset], 0.8714675626554645, kTol);
}

TEST_F(OptimizerTest, LambTrustRatioPerTensorAndPlainAdamForLayerNormAndBias) {
  OptimizerConfig o = Adam(/*bias_correction=*/true);
  o.set_type(OptimizerConfig::LAMB);
  o.set_weight_decay(0.5f);
  Optimizer<double> opt(ops_, layout_, o);
  ops_.Fill(params_, n_, 1.0);
  std::vector<double> g(static_cast<size_t>(n_));
  for (int64_t i = 0; i < n_; ++i) g[i] = (i % 2 == 0) ? 1.0 : -1.0;
  Set(grads_, g);
  const TensorSpec& pw = layout_.Get("bert.pooler.dense.weight");  // 2 x 2
  ASSERT_EQ(pw.numel, 4);
  ASSERT_EQ(pw.offset % 2, 0);  // so its gradient is [1, -1, 1, -1]
  Set(params_ + pw.offset, {3, 4, 0, 0});
  opt.Step(params_, grads_, 0.1);
  std::vector<double> w = Get(params_, n_);
  // u = s [1,-1,1,-1] + 0.5 w with s = 1/(1+1e-6): ~[2.5, 1, 1, -1]; ||w|| = 5;
  // r = 5 / ||u|| = 1.64399...; w -= 0.1 r u.
  EXPECT_NEAR(w[pw.offset + 0], 2.589002534498753, kTol);
  EXPECT_NEAR(w[pw.offset + 1], 3.835600783641059, kTol);
  EXPECT_NEAR(w[pw.offset + 2], -0.16439888756116652, kTol);
  EXPECT_NEAR(w[pw.offset + 3], 0.16439888756116652, kTol);
  // LayerNorm gain: no decay, no trust ratio: w = 1 -/+ 0.1 * s.
  const TensorSpec& ln = layout_.Get("bert.embeddings.LayerNorm.weight");
  const double s = 1.0 / (1.0 + static_cast<double>(1e-6f));
  const double lr = static_cast<double>(0.1f);
  EXPECT_NEAR(w[ln.offset], 1 - lr * g[ln.offset] * s, kTol);
  const TensorSpec& nb = layout_.Get("cls.seq_relationship.bias");
  EXPECT_NEAR(w[nb.offset], 1 - lr * g[nb.offset] * s, kTol);
}

TEST_F(OptimizerTest, ClipsToTheGlobalNorm) {
  Optimizer<double> opt(ops_, layout_, Adam(/*bias_correction=*/false, /*max_grad_norm=*/1.0f));
  ops_.Fill(params_, n_, 1.0);
  ops_.Fill(grads_, n_, 0.5);
  OptimizerStats st = opt.Step(params_, grads_, 0.1);
  const double norm = 0.5 * std::sqrt(static_cast<double>(n_));
  ASSERT_GT(norm, 1.0);
  EXPECT_NEAR(st.grad_norm, norm, 1e-12);
  EXPECT_NEAR(st.clip_factor, 1.0 / norm, 1e-12);
  // The clipped gradient is 1/sqrt(n) everywhere; m = (1 - 0.9) * g' shows it directly.
  std::vector<double> m = Get(opt.m(), n_);
  for (int64_t i = 0; i < n_; ++i) {
    ASSERT_NEAR(m[i], (1 - static_cast<double>(0.9f)) / std::sqrt(static_cast<double>(n_)), 1e-9);
  }
  // Under the limit nothing is clipped.
  ops_.Fill(grads_, n_, 0.5 / static_cast<double>(n_));
  st = opt.Step(params_, grads_, 0.1);
  EXPECT_EQ(st.clip_factor, 1.0);
  EXPECT_NEAR(st.grad_norm, 0.5 / std::sqrt(static_cast<double>(n_)), 1e-12);
}

TEST_F(OptimizerTest, GradScaleEntersTheNormAndTheUpdate) {
  Optimizer<double> opt(ops_, layout_, Adam(/*bias_correction=*/false));
  ops_.Fill(params_, n_, 1.0);
  ops_.Fill(grads_, n_, 2.0);  // the sum of four micro-batch gradients of 0.5
  OptimizerStats st = opt.Step(params_, grads_, 0.1, /*grad_scale=*/0.25);
  EXPECT_NEAR(st.grad_norm, 0.5 * std::sqrt(static_cast<double>(n_)), 1e-12);
  std::vector<double> w = Get(params_, n_);
  const TensorSpec& pw = layout_.Get("bert.pooler.dense.weight");
  EXPECT_NEAR(w[pw.offset], 0.682790117207844, kTol);  // as a single gradient of 0.5
}

TEST_F(OptimizerTest, AccumulatedMicroBatchesEqualOneBigBatch) {
  for (OptimizerConfig::Type type : {OptimizerConfig::ADAMW, OptimizerConfig::LAMB}) {
    OptimizerConfig o = Adam(/*bias_correction=*/true, /*max_grad_norm=*/0.5f);
    o.set_type(type);
    double* params_b = ops_.Alloc(n_);
    Optimizer<double> accumulated(ops_, layout_, o), big(ops_, layout_, o);
    std::mt19937_64 rng(7);
    std::normal_distribution<double> normal;
    std::vector<double> w0(static_cast<size_t>(n_));
    for (double& x : w0) x = normal(rng);
    Set(params_, w0);
    Set(params_b, w0);
    for (int step = 0; step < 3; ++step) {
      std::vector<double> g1(w0.size()), g2(w0.size()), mean(w0.size());
      for (size_t i = 0; i < w0.size(); ++i) {
        g1[i] = normal(rng);
        g2[i] = normal(rng);
        mean[i] = (g1[i] + g2[i]) / 2;
      }
      // Two micro-batches accumulate into the buffer, then one step with grad_scale 1/2 ...
      Set(grads_, g1);
      double* tmp = ops_.Alloc(n_);
      Set(tmp, g2);
      ops_.Add(grads_, tmp, grads_, n_);
      ops_.Free(tmp);
      OptimizerStats a = accumulated.Step(params_, grads_, 0.01, 0.5);
      // ... equals one step on the mean gradient of the whole batch.
      Set(grads_, mean);
      OptimizerStats b = big.Step(params_b, grads_, 0.01, 1.0);
      EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-12 * b.grad_norm);
    }
    std::vector<double> wa = Get(params_, n_), wb = Get(params_b, n_);
    std::vector<double> va = Get(accumulated.v(), n_), vb = Get(big.v(), n_);
    for (int64_t i = 0; i < n_; ++i) {
      ASSERT_NEAR(wa[i], wb[i], 1e-9) << OptimizerConfig::Type_Name(type) << " element " << i;
      ASSERT_NEAR(va[i], vb[i], 1e-6 * vb[i]);
    }
    ops_.Free(params_b);
  }
}

TEST_F(OptimizerTest, NonFiniteGradientChangesNothing) {
  Optimizer<double> opt(ops_, layout_, Adam(/*bias_correction=*/false, 1.0f));
  ops_.Fill(params_, n_, 1.0);
  ops_.Fill(grads_, n_, 0.5);
  std::vector<double> g = Get(grads_, n_);
  g[3] = std::numeric_limits<double>::quiet_NaN();
  Set(grads_, g);
  OptimizerStats st = opt.Step(params_, grads_, 0.1);
  EXPECT_FALSE(st.applied);
  EXPECT_TRUE(std::isnan(st.grad_norm));
  EXPECT_EQ(opt.step(), 0);
  for (double x : Get(params_, n_)) ASSERT_EQ(x, 1.0);
  for (double x : Get(opt.m(), n_)) ASSERT_EQ(x, 0.0);
  g[3] = std::numeric_limits<double>::infinity();
  Set(grads_, g);
  EXPECT_FALSE(opt.Step(params_, grads_, 0.1).applied);
}

TEST_F(OptimizerTest, ExportedStateResumesTheSameTrajectory) {
  // float, as checkpoints: export after one step, import into a fresh optimizer, continue both.
  CpuOps<float> fops(1);
  float* pa = fops.Alloc(n_);
  float* pb = fops.Alloc(n_);
  float* g = fops.Alloc(n_);
  fops.Fill(pa, n_, 1.0f);
  fops.Fill(g, n_, 0.25f);
  Optimizer<float> a(fops, layout_, Adam(true));
  a.Step(pa, g, 0.1);
  std::vector<float> m, v;
  a.ExportState(&m, &v);
  ASSERT_EQ(m.size(), static_cast<size_t>(n_));
  EXPECT_NEAR(m[0], 0.1f * 0.25f, 1e-8);
  fops.CopyDevice(pb, pa, n_ * sizeof(float));
  Optimizer<float> b(fops, layout_, Adam(true));
  b.ImportState(m.data(), v.data(), a.step());
  EXPECT_EQ(b.step(), 1);
  fops.Fill(g, n_, -0.5f);
  a.Step(pa, g, 0.1);
  b.Step(pb, g, 0.1);
  std::vector<float> ha(n_), hb(n_);
  fops.CopyToHost(ha.data(), pa, n_ * sizeof(float));
  fops.CopyToHost(hb.data(), pb, n_ * sizeof(float));
  EXPECT_EQ(ha, hb);  // bitwise
  fops.Free(pa);
  fops.Free(pb);
  fops.Free(g);
}

}  // namespace
}  // namespace headroom
