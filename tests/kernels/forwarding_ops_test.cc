// ForwardingOps (kernels/forwarding_ops.h): a wrapper over CpuOps computes exactly what CpuOps
// computes, op by op and through a whole model step (BERT, with dropout), and its hooks run once
// before and once after every forwarded op; ProfilingOps times the computations only.
#include "kernels/forwarding_ops.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/profiling_ops.h"
#include "model/batch.h"
#include "model/transformer.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

// Counts the hooks per op name and checks that they pair up: Before(x) then After(x), never
// nested (each forwarded op runs the inner op alone).
class CountingOps : public ForwardingOps<float> {
 public:
  using ForwardingOps<float>::ForwardingOps;
  std::map<std::string, int> before, after;
  std::string open;  // the op between its BeforeOp and AfterOp
  bool nested = false, unmatched = false;

 protected:
  void BeforeOp(const char* name) override {
    if (!open.empty()) nested = true;
    open = name;
    ++before[name];
  }
  void AfterOp(const char* name) override {
    if (open != name) unmatched = true;
    open.clear();
    ++after[name];
  }
};

std::vector<float> Host(Ops<float>& ops, const float* p, int64_t n) {
  std::vector<float> h(static_cast<size_t>(n));
  ops.CopyToHost(h.data(), p, sizeof(float) * h.size());
  return h;
}

// Runs a sequence of ops of different shapes of signature on `ops`; returns every output.
std::vector<std::vector<float>> RunOps(Ops<float>& ops) {
  const int M = 3, N = 4, K = 5;
  std::vector<float> ha(M * K), hb(N * K);
  for (size_t i = 0; i < ha.size(); ++i) ha[i] = 0.1f * static_cast<float>(i) - 0.6f;
  for (size_t i = 0; i < hb.size(); ++i) hb[i] = 0.05f * static_cast<float>(i * i % 7) - 0.1f;
  float* a = ops.Alloc(M * K);
  float* b = ops.Alloc(N * K);
  float* c = ops.Alloc(M * N);
  float* y = ops.Alloc(M * N);
  float* mean = ops.Alloc(M);
  float* rstd = ops.Alloc(M);
  float* dot = ops.Alloc(1);
  ops.CopyToDevice(a, ha.data(), sizeof(float) * ha.size());
  ops.CopyToDevice(b, hb.data(), sizeof(float) * hb.size());
  ops.Gemm(Trans::kNo, Trans::kYes, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
  ops.Linear(a, b, nullptr, M, N, K, y);
  ops.Scale(y, M * N, 2.0f);
  ops.Axpy(0.5f, c, y, M * N);
  ops.GeluForward(y, y, M * N);
  ops.LayerNormForward(c, b, b, M, N, 1e-5f, c, mean, rstd);
  ops.Dropout(c, c, M * N, 0.25f, DropoutKey{7, 1, 2, 3});
  ops.Dot(y, c, M * N, dot);
  ops.Synchronize();
  std::vector<std::vector<float>> out = {Host(ops, c, M * N), Host(ops, y, M * N),
                                         Host(ops, mean, M), Host(ops, rstd, M), Host(ops, dot, 1)};
  for (float* p : {a, b, c, y, mean, rstd, dot}) ops.Free(p);
  return out;
}

TEST(ForwardingOpsTest, SameResultsAsTheInnerOpsAndOneHookPairPerOp) {
  CpuOps<float> direct;
  const std::vector<std::vector<float>> want = RunOps(direct);
  CpuOps<float> cpu;
  CountingOps wrapped(&cpu);
  EXPECT_EQ(wrapped.device(), DeviceKind::kCpu);
  const std::vector<std::vector<float>> got = RunOps(wrapped);
  EXPECT_EQ(got, want);  // bit for bit: the same kernels on the same inputs
  EXPECT_FALSE(wrapped.nested);
  EXPECT_FALSE(wrapped.unmatched);
  // RunOps' calls, counted by hand: 7 Alloc + 2 CopyToDevice + 5 CopyToHost + 7 Free.
  const std::map<std::string, int> calls = {
      {"AllocBytes", 7}, {"CopyToDevice", 2}, {"Gemm", 1},        {"Linear", 1},
      {"Scale", 1},      {"Axpy", 1},         {"GeluForward", 1}, {"LayerNormForward", 1},
      {"Dropout", 1},    {"Dot", 1},          {"Synchronize", 1}, {"CopyToHost", 5},
      {"Free", 7}};
  EXPECT_EQ(wrapped.before, calls);
  EXPECT_EQ(wrapped.after, calls);
}

void ExpectAModelStepThroughTheWrapperEqualsTheDirectOne(bool t2t) {
  ModelConfig m = testing::TinyBert(2, 8, 2, 4, 16, /*dropout=*/0.1f);
  ModelOptions options;
  if (t2t) {
    m.set_norm(ModelConfig::PRE_LN);
    m.set_activation(ModelConfig::RELU);
    m.set_position(ModelConfig::SINUSOIDAL);
    options.label_smoothing = 0.1f;
  }
  const Batch batch = RandomBatch(m, 2, 8, 3, 5);
  auto step = [&](Ops<float>* ops, std::vector<float>* grads) {
    auto model = Model<float>::Create(m, ops, {2, 8, 3}, options);
    EXPECT_TRUE(model.ok()) << model.status();
    (*model)->InitParameters(3);
    auto s = (*model)->Forward(batch, /*training=*/true, DropoutKey{11, 0, 0, 0});
    EXPECT_TRUE(s.ok()) << s.status();
    (*model)->Backward();
    *grads = (*model)->GetGradients();
    return s.ok() ? s->loss : -1.0;
  };
  CpuOps<float> direct;
  std::vector<float> want_grads;
  const double want = step(&direct, &want_grads);
  CpuOps<float> cpu;
  CountingOps wrapped(&cpu);
  std::vector<float> got_grads;
  EXPECT_EQ(step(&wrapped, &got_grads), want);
  EXPECT_EQ(got_grads, want_grads);
  EXPECT_FALSE(wrapped.nested);
  EXPECT_FALSE(wrapped.unmatched);
  EXPECT_EQ(wrapped.before, wrapped.after);
  EXPECT_GT(wrapped.before["Gemm"] + wrapped.before["Linear"], 0);
  EXPECT_GT(wrapped.before["SoftmaxCrossEntropy"], 0);  // NSP
  EXPECT_GT(wrapped.before["LabelSmoothedCrossEntropy"], 0);
  EXPECT_GT(wrapped.before["ActivationForward"], 0);
  EXPECT_GT(wrapped.before["ActivationBackward"], 0);
}

// BERT's architecture, and (the second time) tensor2tensor's options with label smoothing,
// whose ops (ActivationForward/Backward, LabelSmoothedCrossEntropy) must be forwarded too.
TEST(ForwardingOpsTest, AModelStepThroughTheWrapperEqualsTheDirectOne) {
  for (bool t2t : {false, true}) {
    SCOPED_TRACE(t2t ? "tensor2tensor's options" : "BERT");
    ExpectAModelStepThroughTheWrapperEqualsTheDirectOne(t2t);
  }
}

TEST(ForwardingOpsTest, TheInnerStatusIsForwarded) {
  CpuOps<float> cpu;
  CountingOps wrapped(&cpu);
  EXPECT_TRUE(wrapped.status().ok());
  EXPECT_EQ(wrapped.AllocBytes(size_t{1} << 62), nullptr);  // fails inside CpuOps
  EXPECT_EQ(wrapped.status(), cpu.status());
  EXPECT_EQ(wrapped.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ForwardingOpsTest, ComputeOpsAreToldApartFromMemoryAndTransfers) {
  EXPECT_TRUE(IsComputeOp("Gemm"));
  EXPECT_TRUE(IsComputeOp("Lamb"));
  EXPECT_TRUE(IsComputeOp("Fill"));
  EXPECT_FALSE(IsComputeOp("AllocBytes"));
  EXPECT_FALSE(IsComputeOp("CopyToHost"));
  EXPECT_FALSE(IsComputeOp("Synchronize"));
  EXPECT_FALSE(IsComputeOp("NoSuchOp"));
}

TEST(ProfilingOpsTest, TimesEachComputationWithItsShapeAndFlops) {
  CpuOps<float> cpu;
  ProfilingOps profiler(&cpu);
  RunOps(profiler);
  const auto& e = profiler.entries();
  ASSERT_TRUE(e.count("Gemm 3x4x5 NT")) << "keys: " << e.size();
  EXPECT_EQ(e.at("Gemm 3x4x5 NT").calls, 1);
  EXPECT_EQ(e.at("Gemm 3x4x5 NT").flops, 2.0 * 3 * 4 * 5);
  EXPECT_EQ(e.at("Linear 3x4x5").flops, 2.0 * 3 * 4 * 5);
  EXPECT_EQ(e.at("Dropout").calls, 1);
  EXPECT_EQ(e.at("Dropout").flops, 0);
  EXPECT_EQ(e.count("AllocBytes"), 0u);  // memory and transfers are not timed
  EXPECT_EQ(e.count("CopyToHost"), 0u);
  EXPECT_EQ(e.count("Synchronize"), 0u);
  EXPECT_EQ(e.size(), 8u);  // Gemm, Linear, Scale, Axpy, Gelu, LayerNorm, Dropout, Dot
  profiler.Reset();
  EXPECT_TRUE(profiler.entries().empty());
}

}  // namespace
}  // namespace headroom
