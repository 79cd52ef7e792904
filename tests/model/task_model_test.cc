// TaskModel<T> (the fine-tuning heads) against independent references: the span and classifier
// losses and logits recomputed from the naive reference encoder (model_test_util.h) with the
// heads' equations written out here, and finite-difference gradients in float64 of every
// parameter tensor (encoder included), for standard and fixed head size, with and without
// dropout; tensors a head does not use must get exactly zero gradient.
#include "model/task_model.h"

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
#include "tests/model/finite_difference_check.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace {

using testing::RandomParameters;
using testing::ReferenceModel;
using testing::RiddersDerivative;
using testing::TinyBert;

constexpr int kBatch = 3, kSeq = 6, kLabels = 3;

// Three sequences with 4, 6 and 5 real tokens, two segments each; targets per head.
TaskBatch TinyTaskBatch(const ModelConfig& m, const TaskHead& head) {
  TaskBatch t;
  Batch& b = t.inputs;
  b.batch_size = kBatch;
  b.seq_length = kSeq;
  const int real[kBatch] = {4, 6, 5};
  for (int i = 0; i < kBatch; ++i) {
    for (int s = 0; s < kSeq; ++s) {
      const bool on = s < real[i];
      b.input_ids.push_back(on ? 1 + (5 * i + 3 * s) % (m.vocab_size() - 1) : 0);
      b.input_mask.push_back(on ? 1 : 0);
      b.segment_ids.push_back(on && s >= 2 ? 1 : 0);
    }
  }
  if (head.kind == TaskHead::Kind::kSpan) {
    t.start_positions = {2, 0, 3};  // the second row: the answer is outside the window ([CLS])
    t.end_positions = {3, 0, 4};
  } else {
    t.labels = {2, 0, 1};
  }
  return t;
}

std::unique_ptr<TaskModel<double>> MakeTaskModel(const ModelConfig& m, const TaskHead& head,
                                                 CpuOps<double>* ops, uint64_t seed) {
  auto model = TaskModel<double>::Create(m, head, ops, kBatch, kSeq);
  EXPECT_TRUE(model.ok()) << model.status();
  const ParameterLayout& layout = (*model)->model().layout();
  (*model)->model().SetParameters(RandomParameters(layout, m.initializer_range(), seed));
  return std::move(*model);
}

double LogSumExp(const std::vector<double>& v) {
  const double mx = *std::max_element(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += std::exp(x - mx);
  return mx + std::log(sum);
}

// The heads' functions on the reference encoder output, in plain loops.
struct HeadReference {
  double loss = 0;
  int64_t correct = 0;
  std::vector<double> start, end;  // span: [B*S]
  std::vector<double> logits;      // classifier: [B*L]
};

HeadReference RunReference(const ModelConfig& m, const TaskHead& head, const std::vector<double>& w,
                           const TaskBatch& batch) {
  const ParameterLayout layout = ParameterLayout::ForModel(m, head);
  auto W = [&](const std::string& name) { return w.data() + layout.Get(name).offset; };
  Batch inputs = batch.inputs;  // the reference also runs the pre-training heads: give them
  inputs.next_sentence_labels.assign(kBatch, 0);  // labels, and no masked slots
  const std::vector<double> h = ReferenceModel(m, w).Run(inputs).hidden;
  const int d = m.d_model();
  HeadReference r;
  int count = 0;
  for (int b = 0; b < kBatch; ++b) {
    if (head.kind == TaskHead::Kind::kSpan) {
      std::vector<double> st(kSeq), en(kSeq);
      for (int s = 0; s < kSeq; ++s) {
        st[s] = W("qa_outputs.bias")[0];
        en[s] = W("qa_outputs.bias")[1];
        for (int j = 0; j < d; ++j) {
          st[s] += W("qa_outputs.weight")[j] * h[(b * kSeq + s) * d + j];
          en[s] += W("qa_outputs.weight")[d + j] * h[(b * kSeq + s) * d + j];
        }
      }
      r.start.insert(r.start.end(), st.begin(), st.end());
      r.end.insert(r.end.end(), en.begin(), en.end());
      if (batch.start_positions[b] < 0) continue;
      ++count;
      r.loss += 0.5 * (LogSumExp(st) - st[batch.start_positions[b]]) +
                0.5 * (LogSumExp(en) - en[batch.end_positions[b]]);
    } else {
      std::vector<double> pooled(d), logits(head.num_labels);
      for (int o = 0; o < d; ++o) {
        double acc = W("bert.pooler.dense.bias")[o];
        for (int j = 0; j < d; ++j)
          acc += W("bert.pooler.dense.weight")[o * d + j] * h[b * kSeq * d + j];
        pooled[o] = std::tanh(acc);
      }
      for (int c = 0; c < head.num_labels; ++c) {
        logits[c] = W("classifier.bias")[c];
        for (int j = 0; j < d; ++j) logits[c] += W("classifier.weight")[c * d + j] * pooled[j];
      }
      r.logits.insert(r.logits.end(), logits.begin(), logits.end());
      const int label = batch.labels[b];
      if (label < 0) continue;
      ++count;
      r.loss += LogSumExp(logits) - logits[label];
      r.correct += std::max_element(logits.begin(), logits.end()) - logits.begin() == label;
    }
  }
  r.loss /= std::max(count, 1);
  return r;
}

void ExpectMatchesReference(const ModelConfig& m, const TaskHead& head) {
  CpuOps<double> ops(1);
  auto model = MakeTaskModel(m, head, &ops, 7);
  TaskBatch batch = TinyTaskBatch(m, head);
  for (int variant = 0; variant < 2; ++variant) {
    if (variant == 1) {  // a row without a target counts neither in the loss nor in the mean
      if (head.kind == TaskHead::Kind::kSpan) {
        batch.start_positions[0] = batch.end_positions[0] = -1;
      } else {
        batch.labels[1] = -1;
      }
    }
    absl::StatusOr<TaskLoss> got = model->Forward(batch, /*training=*/false, {});
    ASSERT_TRUE(got.ok()) << got.status();
    const HeadReference want = RunReference(m, head, model->model().GetParameters(), batch);
    EXPECT_NEAR(got->loss, want.loss, 1e-10 * want.loss);
    EXPECT_EQ(got->count, variant == 0 ? kBatch : kBatch - 1);
    if (head.kind == TaskHead::Kind::kSpan) {
      std::vector<double> start, end;
      model->SpanLogits(&start, &end);
      for (size_t i = 0; i < start.size(); ++i) {
        EXPECT_NEAR(start[i], want.start[i], 1e-10) << i;
        EXPECT_NEAR(end[i], want.end[i], 1e-10) << i;
      }
    } else {
      EXPECT_EQ(got->correct, want.correct);
      const std::vector<double> logits = model->ClassLogits();
      for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(logits[i], want.logits[i], 1e-10);
    }
  }
}

const TaskHead kSpan{TaskHead::Kind::kSpan, 0};
const TaskHead kClassifier{TaskHead::Kind::kClassifier, kLabels};

TEST(TaskModelForward, SpanHeadMatchesNaiveReference) {
  ExpectMatchesReference(TinyBert(2, 8, 2, 0, 12), kSpan);
  ExpectMatchesReference(TinyBert(2, 8, 2, 6, 12), kSpan);
}

TEST(TaskModelForward, ClassifierMatchesNaiveReference) {
  ExpectMatchesReference(TinyBert(2, 8, 2, 0, 12), kClassifier);
  ExpectMatchesReference(TinyBert(2, 8, 3, 5, 12), kClassifier);
}

// Whether the head reads tensor `name` (pre-training heads never; the pooler for the classifier).
bool UsedBy(const TaskHead& head, const std::string& name) {
  if (name.rfind("cls.", 0) == 0) return false;
  if (name.rfind("bert.pooler.", 0) == 0) return head.kind == TaskHead::Kind::kClassifier;
  return true;
}

// The check of tests/model/finite_difference_check.h through the task head.
void CheckTaskGradients(const ModelConfig& m, const TaskHead& head) {
  CpuOps<double> ops(1);
  auto model = MakeTaskModel(m, head, &ops, 11);
  const TaskBatch batch = TinyTaskBatch(m, head);
  const DropoutKey key{42, 3, 0, 0};
  Model<double>& enc = model->model();
  enc.ZeroGrads();
  ASSERT_TRUE(model->Forward(batch, /*training=*/true, key).ok());
  model->Backward();
  const std::vector<double> analytic = enc.GetGradients();
  std::vector<double> w = enc.GetParameters();
  auto loss_at = [&](int64_t i, double value) {
    const double saved = w[i];
    w[i] = value;
    enc.SetParameters(w);
    w[i] = saved;
    return model->Forward(batch, /*training=*/true, key).value().loss;
  };
  // Exactly zero by symmetry: the attention key biases, and for the span head a constant
  // added to every start (end) logit of a row (its bias, and the last layer's LayerNorm bias,
  // which moves every row of h_L by the same vector).
  const std::string last_ln =
      absl::StrCat("bert.encoder.layer.", m.num_layers() - 1, ".output.LayerNorm.bias");
  testing::FiniteDifferenceOptions o;
  // Ridders' first step 3e-3: 1e-2 extrapolates to a 5e-6 error on the span head's token-type
  // table for some parameter draws; 3e-3 gives < 1e-8 on every tensor.
  o.first_step = 3e-3;
  o.kind = [&](const std::string& name) {
    if (!UsedBy(head, name)) return testing::GradientKind::kUnused;
    const bool vanishing =
        name.find("attention.self.key.bias") != std::string::npos ||
        (head.kind == TaskHead::Kind::kSpan && (name == "qa_outputs.bias" || name == last_ln));
    return vanishing ? testing::GradientKind::kVanishing : testing::GradientKind::kChecked;
  };
  testing::CheckGradientsAgainstRidders(enc.layout(), analytic, w, loss_at, o);
}

TEST(TaskModelGradient, SpanHeadStandardHeads) {
  CheckTaskGradients(TinyBert(2, 8, 2, 0, 12), kSpan);
}
TEST(TaskModelGradient, SpanHeadFixedHeadSize) {
  CheckTaskGradients(TinyBert(2, 8, 2, 6, 12), kSpan);
}
TEST(TaskModelGradient, ClassifierStandardHeads) {
  CheckTaskGradients(TinyBert(2, 8, 2, 0, 12), kClassifier);
}
TEST(TaskModelGradient, ClassifierFixedHeadSize) {
  CheckTaskGradients(TinyBert(2, 8, 3, 5, 12), kClassifier);
}
// Dropout (hidden, attention and the classifier's on the pooled output) with a fixed key.
TEST(TaskModelGradient, ClassifierWithDropout) {
  CheckTaskGradients(TinyBert(2, 8, 2, 6, 12, 0.3f), kClassifier);
}
TEST(TaskModelGradient, SpanHeadWithDropout) {
  CheckTaskGradients(TinyBert(2, 8, 2, 6, 12, 0.3f), kSpan);
}

TEST(TaskModelGradient, LossScaleScalesTheGradient) {
  const ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto model = MakeTaskModel(m, kClassifier, &ops, 5);
  const TaskBatch batch = TinyTaskBatch(m, kClassifier);
  model->model().ZeroGrads();
  ASSERT_TRUE(model->Forward(batch, true, {}).ok());
  model->Backward();
  const std::vector<double> once = model->model().GetGradients();
  model->model().ZeroGrads();
  ASSERT_TRUE(model->Forward(batch, true, {}).ok());
  model->Backward(0.25);
  const std::vector<double> quarter = model->model().GetGradients();
  for (size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(quarter[i], 0.25 * once[i], 1e-15);
}

TEST(TaskModelForward, RejectsBadTargetsAndHeads) {
  const ModelConfig m = TinyBert(1, 8, 2, 0, 12);
  CpuOps<double> ops(1);
  auto model = MakeTaskModel(m, kSpan, &ops, 5);
  TaskBatch batch = TinyTaskBatch(m, kSpan);
  batch.end_positions[2] = kSeq;
  absl::StatusOr<TaskLoss> r = model->Forward(batch, false, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "batch.end_positions: element 2 is 6, outside [0, 6) (or -1 for no target)");
  batch.end_positions[2] = -1;
  EXPECT_FALSE(model->Forward(batch, false, {}).ok());  // start without end
  EXPECT_FALSE(TaskModel<double>::Create(m, {TaskHead::Kind::kClassifier, 1}, &ops, 2, 4).ok());
  EXPECT_FALSE(TaskModel<double>::Create(m, {}, &ops, 2, 4).ok());
}

}  // namespace
}  // namespace headroom
