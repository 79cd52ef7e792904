// The fine-tuning heads (TaskModel) on the CUDA backend against their CPU twin: the same
// parameters, batch and dropout keys must give the same loss, logits and gradients to fp32
// rounding, for the span head (a 384-position softmax as SQuAD's) and the classifier with
// dropout, standard and fixed head size. Skips without a usable GPU.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
#include "model/task_model.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

struct Run {
  TaskLoss loss;
  std::vector<float> logits, grads;
};

Run TrainStep(Ops<float>* ops, const ModelConfig& m, const TaskHead& head,
              const std::vector<float>& params, const TaskBatch& batch) {
  auto model =
      TaskModel<float>::Create(m, head, ops, batch.inputs.batch_size, batch.inputs.seq_length)
          .value();
  model->model().SetParameters(params);
  model->model().ZeroGrads();
  Run r;
  r.loss = model->Forward(batch, /*training=*/true, {77, 5, 0, 0}).value();
  if (head.kind == TaskHead::Kind::kSpan) {
    std::vector<float> end;
    model->SpanLogits(&r.logits, &end);
    r.logits.insert(r.logits.end(), end.begin(), end.end());
  } else {
    r.logits = model->ClassLogits();
  }
  model->Backward();
  r.grads = model->model().GetGradients();
  return r;
}

void ExpectSameOnBothBackends(const ModelConfig& m, const TaskHead& head, int seq) {
  std::string reason;
  if (!CudaAvailable(&reason)) GTEST_SKIP() << "no CUDA backend: " << reason;
  auto cuda = MakeOps(DeviceKind::kCuda);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  CpuOps<float> cpu;
  const ParameterLayout layout = ParameterLayout::ForModel(m, head);
  const std::vector<double> w64 = testing::RandomParameters(layout, 0.05, 3);
  const std::vector<float> w(w64.begin(), w64.end());
  TaskBatch batch;
  batch.inputs = RandomBatch(m, 4, seq, 0, 9);
  batch.start_positions = {3, 0, seq / 2, seq - 2};
  batch.end_positions = {5, 0, seq / 2 + 1, seq - 2};
  batch.labels = {1, 0, 2, 1};
  if (head.kind == TaskHead::Kind::kSpan) batch.labels.clear();
  if (head.kind == TaskHead::Kind::kClassifier)
    batch.start_positions.clear(), batch.end_positions.clear();
  const Run a = TrainStep(&cpu, m, head, w, batch);
  const Run b = TrainStep(cuda->get(), m, head, w, batch);
  EXPECT_NEAR(a.loss.loss, b.loss.loss, 1e-4 * std::fabs(a.loss.loss));
  EXPECT_EQ(a.loss.count, b.loss.count);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t i = 0; i < a.logits.size(); ++i) {
    EXPECT_NEAR(a.logits[i], b.logits[i], 1e-4 + 1e-3 * std::fabs(a.logits[i])) << i;
  }
  for (const TensorSpec& t : layout.tensors()) {
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < t.numel; ++i) {
      scale = std::max<double>(scale, std::fabs(a.grads[t.offset + i]));
      worst = std::max<double>(worst, std::fabs(a.grads[t.offset + i] - b.grads[t.offset + i]));
    }
    EXPECT_LE(worst, 1e-6 + 2e-3 * scale) << t.name << " (largest gradient " << scale << ")";
  }
}

ModelConfig Bert(int head_size, float dropout) {
  ModelConfig m = testing::TinyBert(2, 64, 4, head_size, 128, dropout);
  m.set_vocab_size(100);
  m.set_max_positions(384);
  return m;
}

TEST(TaskModelCuda, SpanHeadOver384PositionsMatchesTheCpu) {
  ExpectSameOnBothBackends(Bert(0, 0.0f), {TaskHead::Kind::kSpan, 0}, 384);
  ExpectSameOnBothBackends(Bert(32, 0.1f), {TaskHead::Kind::kSpan, 0}, 384);
}

TEST(TaskModelCuda, ClassifierWithDropoutMatchesTheCpu) {
  ExpectSameOnBothBackends(Bert(0, 0.1f), {TaskHead::Kind::kClassifier, 3}, 128);
  ExpectSameOnBothBackends(Bert(32, 0.1f), {TaskHead::Kind::kClassifier, 3}, 128);
}

}  // namespace
}  // namespace headroom
