// A BERT encoder with a fine-tuning head: SQuAD's span head, or a classifier on the pooled
// [CLS] token (GLUE, sentence classification), forward and backward on any Ops<T> backend.
//
// The heads are Google BERT's (run_squad.py create_model, run_classifier.py create_model), their
// parameters named as Hugging Face's BertForQuestionAnswering / BertForSequenceClassification
// and kept in the model's flat buffers after the pre-training heads (ParameterLayout, TaskHead):
//
//   span:        [start | end] = h_L W^T + b, W = qa_outputs.weight [2, d], b = qa_outputs.bias
//                [2], one logit pair per token; start_logits [B, S], end_logits [B, S];
//                loss = (CE(start_logits[b], start_positions[b]) + CE(end_logits[b],
//                end_positions[b])) / 2, averaged over the batch. The softmax runs over all S
//                positions, padding included, as run_squad's does. No dropout.
//   classifier:  pooled = tanh(h_L[b, 0] Wp^T + bp) (BERT's pooler, bert.pooler.dense),
//                logits = dropout(pooled) Wc^T + bc, Wc = classifier.weight [num_labels, d],
//                bc = classifier.bias; loss = mean over the batch of CE(logits[b], labels[b]).
//                The dropout rate is model.hidden_dropout, with key {seed, step,
//                kTaskHeadDropoutLayer, 0}; none when not training.
// Rows whose targets are -1 contribute nothing and are not counted in the mean (evaluation
// batches carry no targets at all); training batches have targets on every row. Gradients
// accumulate into the model's buffer as Model::Backward's do, the encoder's included.
//
// Example (a training micro-batch of SQuAD features):
//   CpuOps<float> ops;
//   TaskHead head{TaskHead::Kind::kSpan};
//   auto m = TaskModel<float>::Create(config.model(), head, &ops, /*max_batch=*/32,
//                                     /*max_seq=*/384).value();
//   m->model().InitParameters(42);   // then copy pre-trained encoder weights over it
//   absl::StatusOr<TaskLoss> l = m->Forward(batch, /*training=*/true, {seed, step});
//   m->Backward();                   // grads() += d l->loss / d params
#ifndef HEADROOM_MODEL_TASK_MODEL_H_
#define HEADROOM_MODEL_TASK_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "model/batch.h"
#include "model/parameter_layout.h"
#include "model/transformer.h"

namespace headroom {

// DropoutKey::layer of the classifier's dropout (distinct from the layers and the embeddings).
inline constexpr uint32_t kTaskHeadDropoutLayer = 0xFFFFFE;

// A fine-tuning batch: the encoder's inputs and the head's targets.
struct TaskBatch {
  // batch_size, seq_length, input_ids, input_mask, segment_ids (the BERT fields of batch.h; the
  // pre-training ones are not read).
  Batch inputs;
  // Span head: [B] token positions of the answer's first and last token in [0, S), or -1 (both
  // or neither) for no target. Empty: no targets.
  std::vector<int32_t> start_positions, end_positions;
  // Classifier: [B] label indices in [0, num_labels), or -1 for no target. Empty: none.
  std::vector<int32_t> labels;
};

// What one Forward computed.
struct TaskLoss {
  double loss = 0;      // mean over the rows with targets (0 when there are none)
  int64_t count = 0;    // rows with targets
  int64_t correct = 0;  // classifier: rows whose argmax logit is the label
};

template <typename T>
class TaskModel {
 public:
  // The BERT model of `model` (validated as Model::Create does) with `head` (kSpan, or
  // kClassifier with num_labels >= 2), for batches of at most max_batch x max_seq. `ops` is not
  // owned and must outlive the model.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TaskModel<T>>> Create(
      const ModelConfig& model, const TaskHead& head, Ops<T>* ops, int max_batch, int max_seq,
      const ModelOptions& options = {});
  ~TaskModel();
  TaskModel(const TaskModel&) = delete;
  TaskModel& operator=(const TaskModel&) = delete;

  // Runs the encoder and the head on `batch` (validated; InvalidArgument names the field),
  // computes the loss over the rows with targets and, when training, the gradient of the loss
  // with respect to the head's output for Backward. Dropout as Model::Forward's.
  [[nodiscard]] absl::StatusOr<TaskLoss> Forward(const TaskBatch& batch, bool training,
                                                 const DropoutKey& base);
  // Adds loss_scale * d loss / d params of the last training Forward into grads() (head, pooler
  // and encoder). `hook` as Model::Backward's.
  void Backward(T loss_scale = T(1), const typename Model<T>::BackwardHook& hook = nullptr);

  // Host copies of the last Forward's logits. Span head: [B * S] start and end logits (row b,
  // position s at b * S + s). Classifier: [B * num_labels].
  void SpanLogits(std::vector<T>* start, std::vector<T>* end) const;
  std::vector<T> ClassLogits() const;

  // The encoder with every parameter (the head's included) in its flat buffers.
  Model<T>& model() { return *model_; }
  const Model<T>& model() const { return *model_; }
  const TaskHead& head() const { return head_; }

 private:
  TaskModel(std::unique_ptr<Model<T>> model, const TaskHead& head, Ops<T>* ops);
  absl::Status Validate(const TaskBatch& batch) const;
  T* Param(const char* name);
  T* Grad(const char* name);
  void ForwardSpan(const TaskBatch& batch, bool training, TaskLoss& out);
  void ForwardClassifier(const TaskBatch& batch, bool training, const DropoutKey& base,
                         TaskLoss& out);
  void BackwardSpan(T loss_scale);
  void BackwardClassifier(T loss_scale);

  std::unique_ptr<Model<T>> model_;
  TaskHead head_;
  Ops<T>* ops_;
  int d_ = 0, L_ = 0;  // L_: logits per row (2 for the span head's pair, num_labels)
  std::vector<void*> allocations_;
  // Device buffers, sized for max_batch (B) and max_seq (S).
  int32_t* labels_ = nullptr;           // [2B]: start, end positions / [B] labels
  int32_t* cls_rows_ = nullptr;         // [B] b * S
  T* logits_ = nullptr;                 // span: [2, B*S] start then end; classifier: [B, L]
  T* dlogits_ = nullptr;                // same shape: the loss gradient
  T* losses_ = nullptr;                 // [2B]
  T* ones_ = nullptr;                   // [2B]
  T* scalar_ = nullptr;                 // [1] sum of the losses
  T* cls_ = nullptr;                    // [B, d] the [CLS] rows of h_L
  T* pooled_ = nullptr;                 // [B, d] tanh output
  T* dropped_ = nullptr;                // [B, d] the classifier's input
  T* scratch_[2] = {nullptr, nullptr};  // [B, d] gradients
  // The last Forward.
  int B_ = 0, S_ = 0;
  int64_t count_ = 0;
  bool backward_ready_ = false;
  float dropout_rate_ = 0;
  DropoutKey dropout_key_;
};

extern template class TaskModel<float>;
extern template class TaskModel<double>;

}  // namespace headroom

#endif  // HEADROOM_MODEL_TASK_MODEL_H_
