// The optimizer on CpuOps<double> against hand-computed updates: AdamW with and without bias
// correction (one and two steps), no weight decay for LayerNorm and biases, LAMB's per-tensor
// trust ratio, global-norm clipping, accumulation equal to one big batch, non-finite gradients,
// and the checkpoint state round trip. ZeRO-1: R optimizers on R threads (the ranks), each
// owning its shard, reproduce the unsharded optimizer (the reference) for AdamW and LAMB with
// clipping, and hold about 1/R of its memory. Reference numbers were computed by hand (and checked
// in a Python shell) from the formulas in kernels/ops.h, not recorded from this code.
#include "trainer/optimizer.h"

#include <barrier>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "base/bf16.h"
#include "config/load.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu_bf16_ops.h"
#include "model/parameter_layout.h"
#include "trainer/zero_shard.h"

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
  OptimizerStats st = opt.Step(params_, grads_, 0.1).value();
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
  opt.Step(params_, grads_, 0.1).value();
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
  opt.Step(params_, grads_, 0.1).value();
  // Step 1: m_hat = g, v_hat = g^2, so u = 0.5 / (0.5 + 1e-6) [+ 0.01].
  std::vector<double> w = Get(params_, n_);
  const TensorSpec& pw = layout_.Get("bert.pooler.dense.weight");
  const TensorSpec& ln = layout_.Get("bert.embeddings.LayerNorm.weight");
  EXPECT_NEAR(w[pw.offset], 0.8990001985169369, kTol);
  EXPECT_NEAR(w[ln.offset], 0.9000001985094863, kTol);
  // Step 2 with g = -0.25: m = 0.02 / (1 - 0.81), v = 0.00031225 / (1 - 0.998001).
  ops_.Fill(grads_ + pw.offset, pw.numel, -0.25);
  opt.Step(params_, grads_, 0.1).value();
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
  opt.Step(params_, grads_, 0.1).value();
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
  OptimizerStats st = opt.Step(params_, grads_, 0.1).value();
  const double norm = 0.5 * std::sqrt(static_cast<double>(n_));
  ASSERT_GT(norm, 1.0);
  EXPECT_NEAR(st.grad_norm, norm, 1e-12);
  EXPECT_NEAR(st.clip_factor, 1.0 / norm, 1e-12);
  // The clipped gradient is 1/sqrt(n) everywhere; m = (1 - 0.9) * g' shows it directly, on
  // every tensor (the layout's padding is no parameter: its moments stay 0).
  std::vector<double> m = Get(opt.m(), n_);
  int64_t updated = 0;
  for (const TensorSpec& t : layout_.tensors()) {
    for (int64_t i = t.offset; i < t.offset + t.reserved; ++i) {
      const double want = i < t.offset + t.numel
                              ? (1 - static_cast<double>(0.9f)) / std::sqrt(static_cast<double>(n_))
                              : 0.0;
      ASSERT_NEAR(m[i], want, 1e-9) << t.name;
      ++updated;
    }
  }
  EXPECT_EQ(updated, n_);
  // Under the limit nothing is clipped.
  ops_.Fill(grads_, n_, 0.5 / static_cast<double>(n_));
  st = opt.Step(params_, grads_, 0.1).value();
  EXPECT_EQ(st.clip_factor, 1.0);
  EXPECT_NEAR(st.grad_norm, 0.5 / std::sqrt(static_cast<double>(n_)), 1e-12);
}

TEST_F(OptimizerTest, GradScaleEntersTheNormAndTheUpdate) {
  Optimizer<double> opt(ops_, layout_, Adam(/*bias_correction=*/false));
  ops_.Fill(params_, n_, 1.0);
  ops_.Fill(grads_, n_, 2.0);  // the sum of four micro-batch gradients of 0.5
  OptimizerStats st = opt.Step(params_, grads_, 0.1, /*grad_scale=*/0.25).value();
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
      OptimizerStats a = accumulated.Step(params_, grads_, 0.01, 0.5).value();
      // ... equals one step on the mean gradient of the whole batch.
      Set(grads_, mean);
      OptimizerStats b = big.Step(params_b, grads_, 0.01, 1.0).value();
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
  OptimizerStats st = opt.Step(params_, grads_, 0.1).value();
  EXPECT_FALSE(st.applied);
  EXPECT_TRUE(std::isnan(st.grad_norm));
  EXPECT_EQ(opt.step(), 0);
  for (double x : Get(params_, n_)) ASSERT_EQ(x, 1.0);
  for (double x : Get(opt.m(), n_)) ASSERT_EQ(x, 0.0);
  g[3] = std::numeric_limits<double>::infinity();
  Set(grads_, g);
  EXPECT_FALSE(opt.Step(params_, grads_, 0.1)->applied);
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
  a.Step(pa, g, 0.1).value();
  std::vector<float> m, v;
  a.ExportState(&m, &v);
  ASSERT_EQ(m.size(), static_cast<size_t>(n_));
  EXPECT_NEAR(m[0], 0.1f * 0.25f, 1e-8);
  fops.CopyDevice(pb, pa, n_ * sizeof(float));
  Optimizer<float> b(fops, layout_, Adam(true));
  b.ImportState(m.data(), v.data(), a.step());
  EXPECT_EQ(b.step(), 1);
  fops.Fill(g, n_, -0.5f);
  a.Step(pa, g, 0.1).value();
  b.Step(pb, g, 0.1).value();
  std::vector<float> ha(n_), hb(n_);
  fops.CopyToHost(ha.data(), pa, n_ * sizeof(float));
  fops.CopyToHost(hb.data(), pb, n_ * sizeof(float));
  EXPECT_EQ(ha, hb);  // bitwise
  fops.Free(pa);
  fops.Free(pb);
  fops.Free(g);
}

// OptimizerShard::sum_over_ranks for R threads: each thread posts its values, waits for all,
// and every thread adds the R posts in rank order (so all get bitwise the same sums).
class ThreadSum {
 public:
  explicit ThreadSum(int ranks) : posts_(static_cast<size_t>(ranks)), barrier_(ranks) {}
  absl::Status Sum(int rank, double* values, int n) {
    posts_[static_cast<size_t>(rank)].assign(values, values + n);
    barrier_.arrive_and_wait();
    for (int i = 0; i < n; ++i) {
      double total = 0;
      for (const std::vector<double>& p : posts_) total += p[static_cast<size_t>(i)];
      values[i] = total;
    }
    barrier_.arrive_and_wait();  // nobody posts the next sum before all have read this one
    return absl::OkStatus();
  }

 private:
  std::vector<std::vector<double>> posts_;
  std::barrier<> barrier_;
};

// One rank of the sharded test: its own ops, full parameters w0 and the shard of `rank`; the
// gradients arrive as the reduced shard (what the reduce-scatter delivers). Writes the updated
// shard ranges into *gathered (as the all-gather would) and returns the optimizer's bytes.
int64_t RunShardedRank(const ParameterLayout& layout, const OptimizerConfig& o,
                       const std::vector<GradientBucket>& buckets, int rank, int ranks,
                       ThreadSum* sum, const std::vector<double>& w0,
                       const std::vector<std::vector<double>>& grads,
                       std::vector<double>* gathered) {
  CpuOps<double> ops(1);
  const int64_t n = layout.total();
  const ZeroShard plan = PlanZeroShard(buckets, rank, ranks);
  OptimizerShard<double> shard;
  shard.ranges = plan.ranges;
  shard.sum_over_ranks = [sum, rank](double* v, int k) { return sum->Sum(rank, v, k); };
  double* workspace = ops.Alloc(n);  // as the trainer: the model's full gradient buffer
  shard.workspace = workspace;
  Optimizer<double> opt(ops, layout, o, shard);
  double* w = ops.Alloc(n);
  double* g = ops.Alloc(std::max<int64_t>(plan.numel, 1));
  ops.CopyToDevice(w, w0.data(), w0.size() * sizeof(double));
  for (const auto& full : grads) {
    for (const ShardRange& range : plan.ranges) {
      ops.CopyToDevice(g + range.offset, full.data() + range.begin, range.numel() * sizeof(double));
    }
    // Parameters outside the shard stay stale: the update reads only the shard's own (LAMB's
    // ||w|| of a tensor is summed from its pieces on all ranks).
    absl::StatusOr<OptimizerStats> st = opt.Step(w, g, 0.01);
    EXPECT_TRUE(st.ok() && st->applied);
  }
  std::vector<double> mine(w0.size());
  ops.CopyToHost(mine.data(), w, mine.size() * sizeof(double));
  for (const ShardRange& range : plan.ranges) {
    for (int64_t i = range.begin; i < range.end; ++i) (*gathered)[i] = mine[i];
  }
  ops.Free(w);
  ops.Free(g);
  ops.Free(workspace);
  return opt.allocated_bytes();
}

TEST_F(OptimizerTest, ShardedOverThreeRanksEqualsTheWholeBuffer) {
  constexpr int kRanks = 3;
  std::vector<GradientTensor> tensors;
  for (const TensorSpec& t : layout_.tensors()) tensors.push_back({t.offset, t.reserved, t.layer});
  // Buckets of >= 11 elements: most are not a multiple of 3, so tails are exercised.
  auto buckets = GradientBuckets::Plan(tensors, 11 * sizeof(float));
  ASSERT_TRUE(buckets.ok()) << buckets.status();
  ASSERT_GT(buckets->size(), 3u);
  for (OptimizerConfig::Type type : {OptimizerConfig::ADAMW, OptimizerConfig::LAMB}) {
    OptimizerConfig o = Adam(/*bias_correction=*/true, /*max_grad_norm=*/0.5f);
    o.set_type(type);
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal;
    std::vector<double> w0(static_cast<size_t>(n_));
    for (double& x : w0) x = normal(rng);
    std::vector<std::vector<double>> grads(3, std::vector<double>(w0.size()));
    for (auto& g : grads) {
      for (double& x : g) x = normal(rng);
    }
    // The reference: the whole buffer, 3 steps.
    Optimizer<double> whole(ops_, layout_, o);
    Set(params_, w0);
    for (const auto& g : grads) {
      Set(grads_, g);
      OptimizerStats st = whole.Step(params_, grads_, 0.01).value();
      ASSERT_LT(st.clip_factor, 1.0) << "the test means to clip";
    }
    const std::vector<double> reference = Get(params_, n_);
    ThreadSum sum(kRanks);
    std::vector<double> gathered(w0.size(), std::nan(""));
    std::vector<int64_t> optimizer_bytes(kRanks);
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] {
        optimizer_bytes[r] =
            RunShardedRank(layout_, o, *buckets, r, kRanks, &sum, w0, grads, &gathered);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int64_t i = 0; i < n_; ++i) {
      ASSERT_NEAR(gathered[i], reference[i], 1e-12 * std::max(1.0, std::fabs(reference[i])))
          << OptimizerConfig::Type_Name(type) << " element " << i;
    }
    // Memory: m and v for the shard only, about 1/3 each (the tails of this tiny layout's
    // many small buckets make the last rank's larger); for AdamW the ranks' moments partition
    // the whole buffer's exactly, each rank adding only its own norm scalar.
    int64_t sum_bytes = 0;
    for (int r = 0; r < kRanks; ++r) {
      EXPECT_LT(optimizer_bytes[r], whole.allocated_bytes() / 2) << "rank " << r;
      sum_bytes += optimizer_bytes[r];
    }
    if (type == OptimizerConfig::ADAMW) {
      EXPECT_EQ(sum_bytes, whole.allocated_bytes() + (kRanks - 1) * int64_t{sizeof(double)});
    }
    EXPECT_EQ(whole.allocated_bytes(),
              Optimizer<double>::AllocatedBytes(layout_, o, {}, /*workspace_given=*/false));
  }
}

// The bf16 weight mirror written by the update (kernels/mixed_ops.h's MirroredUpdate): on the
// CPU's Ops<float, Bf16>, a mirrored step updates the parameters and moments exactly as the plain
// one, and leaves in the mirror every parameter rounded to nearest even (a reference written out
// here from the bits, not the Bf16 class); ZeRO-1 optimizers do not use it.
uint16_t NearestEvenBf16Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);  // finite x only
}

TEST(OptimizerMirrorTest, MirroredStepsUpdateAsThePlainOnesAndWriteTheRoundedParameters) {
  const ParameterLayout layout = ParameterLayout::ForModel(TinyBert());
  const int64_t n = layout.total();
  CpuOps<float> cpu(1);
  std::unique_ptr<CpuBf16Ops> ops = CpuBf16Ops::Create(&cpu).value();
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> w0(static_cast<size_t>(n)), g(w0.size());
  for (float& x : w0) x = normal(rng);
  for (OptimizerConfig::Type type : {OptimizerConfig::ADAMW, OptimizerConfig::LAMB}) {
    SCOPED_TRACE(OptimizerConfig::Type_Name(type));
    OptimizerConfig o = Adam(/*bias_correction=*/true, /*max_grad_norm=*/1.0f);
    o.set_type(type);
    std::vector<float> plain = w0, mirrored = w0;
    // A mirror that holds -7 wherever the update does not write it.
    std::vector<Bf16> mirror(w0.size(), Bf16(-7.0f));
    MirroredUpdateOn<float, Bf16> update(*ops, mirrored.data(), mirror.data());
    Optimizer<float> a(*ops, layout, o);
    Optimizer<float> b(*ops, layout, o, {}, &update);
    EXPECT_FALSE(a.writes_mirror());
    EXPECT_TRUE(b.writes_mirror());
    for (int step = 0; step < 3; ++step) {
      for (float& x : g) x = normal(rng);
      ASSERT_TRUE(a.Step(plain.data(), g.data(), 0.05).value().applied);
      ASSERT_TRUE(b.Step(mirrored.data(), g.data(), 0.05).value().applied);
    }
    for (const TensorSpec& t : layout.tensors()) {
      for (int64_t i = t.offset; i < t.offset + t.numel; ++i) {
        ASSERT_EQ(mirrored[i], plain[i]) << t.name << " element " << i - t.offset;
        ASSERT_NE(mirrored[i], w0[i]) << t.name << ": the steps must change every parameter";
        ASSERT_EQ(mirror[i].bits(), NearestEvenBf16Bits(plain[i]))
            << t.name << " element " << i - t.offset;
      }
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(a.m()[i], b.m()[i]) << i;
    // ZeRO-1: the shard's optimizer leaves the mirror to the model (after the gather).
    OptimizerShard<float> shard;
    shard.ranges = {ShardRange{0, n}};
    shard.sum_over_ranks = [](double*, int) { return absl::OkStatus(); };
    Optimizer<float> sharded(*ops, layout, o, shard, &update);
    EXPECT_FALSE(sharded.writes_mirror());
  }
}

}  // namespace
}  // namespace headroom
