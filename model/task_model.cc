// The fine-tuning heads over Model<T>'s encoder; see task_model.h for the functions computed.
// Gradients follow the model's rule: activation gradients overwrite, parameter gradients
// accumulate. The span head's two logit columns are computed as two [N, 1] products so that the
// start and end logits each come out as a contiguous [B, S] matrix for the softmax over
// positions.
#include "model/task_model.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"

namespace headroom {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("batch.", field, ": ", what));
}

// Every element of `v` is -1 or in [0, hi).
absl::Status CheckTargets(const std::string& field, const std::vector<int32_t>& v, int B, int hi) {
  if (v.empty()) return absl::OkStatus();
  if (static_cast<int>(v.size()) != B) {
    return Bad(field, absl::StrCat("has ", v.size(), " elements, expected ", B, " (or none)"));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < -1 || v[i] >= hi) {
      return Bad(field, absl::StrCat("element ", i, " is ", v[i], ", outside [0, ", hi,
                                     ") (or -1 for no target)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

template <typename T>
absl::StatusOr<std::unique_ptr<TaskModel<T>>> TaskModel<T>::Create(const ModelConfig& model,
                                                                   const TaskHead& head,
                                                                   Ops<T>* ops, int max_batch,
                                                                   int max_seq,
                                                                   const ModelOptions& options) {
  if (head.kind == TaskHead::Kind::kNone) {
    return absl::InvalidArgumentError("TaskModel needs a span or classifier head");
  }
  absl::StatusOr<std::unique_ptr<Model<T>>> m =
      Model<T>::Create(model, ops, {max_batch, max_seq, 0}, options, head);
  if (!m.ok()) return m.status();
  return std::unique_ptr<TaskModel<T>>(new TaskModel<T>(std::move(*m), head, ops));
}

template <typename T>
TaskModel<T>::TaskModel(std::unique_ptr<Model<T>> model, const TaskHead& head, Ops<T>* ops)
    : model_(std::move(model)), head_(head), ops_(ops), d_(model_->config().d_model()) {
  const int64_t B = model_->limits().max_batch, S = model_->limits().max_seq;
  const bool span = head.kind == TaskHead::Kind::kSpan;
  L_ = span ? 2 : head.num_labels;
  auto alloc = [&](int64_t n) {
    T* p = ops_->Alloc(std::max<int64_t>(n, 1));
    allocations_.push_back(p);
    return p;
  };
  labels_ = ops_->AllocInt(2 * B);
  allocations_.push_back(labels_);
  const int64_t logits = span ? 2 * B * S : B * L_;
  logits_ = alloc(logits);
  dlogits_ = alloc(logits);
  losses_ = alloc(2 * B);
  ones_ = alloc(2 * B);
  ops_->Fill(ones_, 2 * B, T(1));
  scalar_ = alloc(1);
  if (!span) {
    cls_rows_ = ops_->AllocInt(B);
    allocations_.push_back(cls_rows_);
    cls_ = alloc(B * d_);
    pooled_ = alloc(B * d_);
    dropped_ = alloc(B * d_);
    scratch_[0] = alloc(B * d_);
    scratch_[1] = alloc(B * d_);
  }
}

template <typename T>
TaskModel<T>::~TaskModel() {
  for (void* p : allocations_) ops_->Free(p);
}

template <typename T>
T* TaskModel<T>::Param(const char* name) {
  return model_->params() + model_->layout().Get(name).offset;
}

template <typename T>
T* TaskModel<T>::Grad(const char* name) {
  return model_->grads() + model_->layout().Get(name).offset;
}

template <typename T>
absl::Status TaskModel<T>::Validate(const TaskBatch& batch) const {
  const int B = batch.inputs.batch_size, S = batch.inputs.seq_length;
  if (head_.kind == TaskHead::Kind::kSpan) {
    absl::Status s = CheckTargets("start_positions", batch.start_positions, B, S);
    if (s.ok()) s = CheckTargets("end_positions", batch.end_positions, B, S);
    if (!s.ok()) return s;
    if (batch.start_positions.size() != batch.end_positions.size()) {
      return Bad("end_positions", "must have as many elements as start_positions");
    }
    for (size_t i = 0; i < batch.start_positions.size(); ++i) {
      if ((batch.start_positions[i] < 0) != (batch.end_positions[i] < 0)) {
        return Bad("end_positions",
                   absl::StrCat("element ", i, " is ", batch.end_positions[i],
                                " but the start position is ", batch.start_positions[i]));
      }
    }
    return absl::OkStatus();
  }
  return CheckTargets("labels", batch.labels, B, L_);
}

template <typename T>
absl::StatusOr<TaskLoss> TaskModel<T>::Forward(const TaskBatch& batch, bool training,
                                               const DropoutKey& base) {
  backward_ready_ = false;
  absl::Status valid = Validate(batch);
  if (!valid.ok()) return valid;
  absl::Status s = model_->ForwardEncoder(batch.inputs, training, base);
  if (!s.ok()) return s;
  B_ = batch.inputs.batch_size;
  S_ = batch.inputs.seq_length;
  TaskLoss out;
  if (head_.kind == TaskHead::Kind::kSpan) {
    ForwardSpan(batch, training, out);
  } else {
    ForwardClassifier(batch, training, base, out);
  }
  count_ = out.count;
  backward_ready_ = training;
  return out;
}

template <typename T>
void TaskModel<T>::ForwardSpan(const TaskBatch& batch, bool training, TaskLoss& out) {
  const int B = B_, S = S_, N = B * S;
  const T* h = model_->hidden();
  const T* w = Param("qa_outputs.weight");
  const T* bias = Param("qa_outputs.bias");
  T* start = logits_;
  T* end = logits_ + N;
  ops_->Linear(h, w, bias, N, 1, d_, start);
  ops_->Linear(h, w + d_, bias + 1, N, 1, d_, end);
  // Targets: start positions then end positions, -1 where there is none.
  std::vector<int32_t> targets(2 * B, -1);
  for (int b = 0; b < B && !batch.start_positions.empty(); ++b) {
    targets[b] = batch.start_positions[b];
    targets[B + b] = batch.end_positions[b];
    out.count += batch.start_positions[b] >= 0 ? 1 : 0;
  }
  ops_->CopyToDevice(labels_, targets.data(), sizeof(int32_t) * 2 * B);
  // loss = (mean start CE + mean end CE) / 2: each logit row's gradient is scaled 0.5 / count.
  const T scale = out.count > 0 ? static_cast<T>(0.5 / static_cast<double>(out.count)) : T(0);
  for (int which = 0; which < 2; ++which) {
    ops_->SoftmaxCrossEntropy(logits_ + which * N, labels_ + which * B, nullptr, B, S,
                              losses_ + which * B, training ? dlogits_ + which * N : nullptr,
                              scale);
  }
  ops_->Dot(losses_, ones_, 2 * B, scalar_);
  T sum = T(0);
  ops_->CopyToHost(&sum, scalar_, sizeof(T));
  out.loss = out.count > 0 ? static_cast<double>(sum) / (2.0 * static_cast<double>(out.count)) : 0;
}

template <typename T>
void TaskModel<T>::ForwardClassifier(const TaskBatch& batch, bool training, const DropoutKey& base,
                                     TaskLoss& out) {
  const int B = B_, S = S_, L = L_;
  std::vector<int32_t> rows(B), labels(B, -1);
  for (int b = 0; b < B; ++b) {
    rows[b] = b * S;
    if (!batch.labels.empty()) labels[b] = batch.labels[b];
    out.count += labels[b] >= 0 ? 1 : 0;
  }
  ops_->CopyToDevice(cls_rows_, rows.data(), sizeof(int32_t) * B);
  ops_->CopyToDevice(labels_, labels.data(), sizeof(int32_t) * B);
  const int64_t bd = static_cast<int64_t>(B) * d_;
  ops_->GatherRows(model_->hidden(), cls_rows_, B, d_, cls_);
  ops_->Linear(cls_, Param("bert.pooler.dense.weight"), Param("bert.pooler.dense.bias"), B, d_, d_,
               pooled_);
  ops_->TanhForward(pooled_, pooled_, bd);
  dropout_rate_ = training ? model_->config().hidden_dropout() : 0.0f;
  dropout_key_ = {base.seed, base.step, kTaskHeadDropoutLayer, 0};
  ops_->Dropout(pooled_, dropped_, bd, dropout_rate_, dropout_key_);  // rate 0 copies
  ops_->Linear(dropped_, Param("classifier.weight"), Param("classifier.bias"), B, L, d_, logits_);
  const T scale = out.count > 0 ? static_cast<T>(1.0 / static_cast<double>(out.count)) : T(0);
  ops_->SoftmaxCrossEntropy(logits_, labels_, nullptr, B, L, losses_, training ? dlogits_ : nullptr,
                            scale);
  ops_->Dot(losses_, ones_, B, scalar_);
  T sum = T(0);
  ops_->CopyToHost(&sum, scalar_, sizeof(T));
  out.loss = out.count > 0 ? static_cast<double>(sum) / static_cast<double>(out.count) : 0;
  const std::vector<T> logits = ClassLogits();
  for (int b = 0; b < B; ++b) {
    if (labels[b] < 0) continue;
    const T* row = logits.data() + static_cast<size_t>(b) * L;
    // The first maximum on ties, as tf.argmax.
    if (std::max_element(row, row + L) - row == labels[b]) ++out.correct;
  }
}

template <typename T>
void TaskModel<T>::Backward(T loss_scale, const typename Model<T>::BackwardHook& hook) {
  assert(backward_ready_ && "Backward needs a preceding Forward with training = true");
  backward_ready_ = false;
  if (head_.kind == TaskHead::Kind::kSpan) {
    BackwardSpan(loss_scale);
  } else {
    BackwardClassifier(loss_scale);
  }
  model_->BackwardEncoder(hook);
}

template <typename T>
void TaskModel<T>::BackwardSpan(T loss_scale) {
  const int N = B_ * S_;
  if (loss_scale != T(1)) ops_->Scale(dlogits_, 2 * static_cast<int64_t>(N), loss_scale);
  const T* h = model_->hidden();
  const T* w = Param("qa_outputs.weight");
  T* dw = Grad("qa_outputs.weight");
  T* db = Grad("qa_outputs.bias");
  T* dh = model_->hidden_grad();
  for (int which = 0; which < 2; ++which) {
    const T* dl = dlogits_ + static_cast<int64_t>(which) * N;  // [N, 1]
    ops_->LinearBackwardWeights(dl, h, N, 1, d_, dw + which * d_, db + which);
    // dh (+)= dl w_which: an outer product, [N, 1] x [1, d].
    ops_->Gemm(Trans::kNo, Trans::kNo, N, d_, 1, T(1), dl, 1, w + which * d_, d_,
               which == 0 ? T(0) : T(1), dh, d_);
  }
}

template <typename T>
void TaskModel<T>::BackwardClassifier(T loss_scale) {
  const int B = B_, L = L_, N = B_ * S_;
  const int64_t bd = static_cast<int64_t>(B) * d_;
  if (loss_scale != T(1)) ops_->Scale(dlogits_, static_cast<int64_t>(B) * L, loss_scale);
  T* s1 = scratch_[0];
  T* s2 = scratch_[1];
  ops_->LinearBackwardWeights(dlogits_, dropped_, B, L, d_, Grad("classifier.weight"),
                              Grad("classifier.bias"));
  ops_->Gemm(Trans::kNo, Trans::kNo, B, d_, L, T(1), dlogits_, L, Param("classifier.weight"), d_,
             T(0), s1, d_);
  if (dropout_rate_ > 0) ops_->Dropout(s1, s1, bd, dropout_rate_, dropout_key_);
  ops_->TanhBackward(pooled_, s1, s1, bd);
  ops_->LinearBackwardWeights(s1, cls_, B, d_, d_, Grad("bert.pooler.dense.weight"),
                              Grad("bert.pooler.dense.bias"));
  ops_->Gemm(Trans::kNo, Trans::kNo, B, d_, d_, T(1), s1, d_, Param("bert.pooler.dense.weight"), d_,
             T(0), s2, d_);
  T* dh = model_->hidden_grad();
  ops_->Fill(dh, static_cast<int64_t>(N) * d_, T(0));
  ops_->ScatterAddRows(s2, cls_rows_, B, d_, dh);
}

template <typename T>
void TaskModel<T>::SpanLogits(std::vector<T>* start, std::vector<T>* end) const {
  assert(head_.kind == TaskHead::Kind::kSpan);
  const size_t n = static_cast<size_t>(B_) * S_;
  start->resize(n);
  end->resize(n);
  ops_->CopyToHost(start->data(), logits_, sizeof(T) * n);
  ops_->CopyToHost(end->data(), logits_ + n, sizeof(T) * n);
}

template <typename T>
std::vector<T> TaskModel<T>::ClassLogits() const {
  assert(head_.kind == TaskHead::Kind::kClassifier);
  std::vector<T> out(static_cast<size_t>(B_) * L_);
  ops_->CopyToHost(out.data(), logits_, sizeof(T) * out.size());
  return out;
}

template class TaskModel<float>;
template class TaskModel<double>;

}  // namespace headroom
