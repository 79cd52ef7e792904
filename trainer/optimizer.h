// The optimizer: AdamW or LAMB over the flat parameter buffer (model/parameter_layout.h), with
// global-norm gradient clipping and gradient-accumulation scaling, on any Ops<T> backend.
//
// One Step() does, in order:
//   1. grad norm: ||grad_scale * g|| over the whole flat gradient buffer, one Dot(g, g) on the
//      device and one scalar read back (the only host synchronisation of a step);
//   2. clipping (Google BERT's tf.clip_by_global_norm): with max_grad_norm > 0 the gradient is
//      further multiplied by max_grad_norm / max(norm, max_grad_norm);
//   3. the update through the backend's AdamW / Lamb ops (kernels/ops.h gives the formulas),
//      the combined factor passed as OptimizerStep::grad_scale so the gradient buffer is read
//      once and never written:
//      - AdamW: one op per contiguous range of tensors with the same TensorSpec::weight_decay
//        (decay = config.weight_decay for weights, 0 for LayerNorm parameters and biases);
//      - LAMB: one Lamb op per tensor that takes weight decay (trust ratio ||w|| / ||u|| per
//        tensor); LayerNorm parameters and biases get the plain Adam update (trust ratio 1, no
//        decay), as Google's LAMB (exclude_from_layer_adaptation defaults to the weight-decay
//        exclusions) and NVIDIA apex's FusedLAMB (use_nvlamb=False) do.
//
// Gradient accumulation: the model's backward ACCUMULATES into the gradient buffer (ops.h), so
// k micro-batches whose losses are each a mean over their micro-batch leave the sum of k mean
// gradients; Step(..., grad_scale = 1/k) then equals one step on the mean over all k micro-batches
// (each of the same size). The caller zeroes the gradient buffer after each Step.
//
// A non-finite gradient norm (NaN/Inf anywhere in the gradients) leaves parameters, moments and
// the step count untouched and reports applied = false: the trainer stops or skips the step.
//
// State for checkpoints: the first and second moments m, v (device buffers in the flat layout,
// zero at construction) and step() = updates applied so far (bias correction uses step() + 1 for
// the next update). The step count carries over BERT's phases (moments do too).
//
// Example:
//   Optimizer<float> opt(ops, layout, config.train().optimizer());
//   ... zero grads, k x (forward, backward) ...
//   OptimizerStats st = opt.Step(params, grads, schedule.LearningRate(opt.step()), 1.0 / k);
//   if (!st.applied) return absl::InternalError("non-finite gradient");
#ifndef HEADROOM_TRAINER_OPTIMIZER_H_
#define HEADROOM_TRAINER_OPTIMIZER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "config/config.pb.h"
#include "kernels/ops.h"
#include "model/parameter_layout.h"

namespace headroom {

struct OptimizerStats {
  // ||grad_scale * g||, before clipping (what BERT and Megatron log as the grad norm).
  double grad_norm = 0;
  // The clipping factor applied on top of grad_scale (1 when not clipped).
  double clip_factor = 1;
  // False when grad_norm was not finite and nothing was updated.
  bool applied = false;
};

template <typename T>
class Optimizer {
 public:
  // `ops` and `layout` must outlive the optimizer. Allocates m, v (layout.total() elements each,
  // zero), a device scalar and, for LAMB, a scratch buffer of the largest tensor's size.
  Optimizer(Ops<T>& ops, const ParameterLayout& layout, const OptimizerConfig& config);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of `params` (device, layout.total() elements) from `grads` (same layout; read
  // only) at learning rate `lr`; gradients are first multiplied by `grad_scale` (1/k for k
  // accumulated micro-batches). Increments step() when applied.
  OptimizerStats Step(T* params, const T* grads, double lr, double grad_scale = 1.0);

  // ||grad_scale * g|| over the flat buffer (one Dot and one read back).
  double GradNorm(const T* grads, double grad_scale = 1.0);

  // Moments (device buffers, layout.total() elements) and the number of updates applied.
  T* m() { return m_; }
  T* v() { return v_; }
  const T* m() const { return m_; }
  const T* v() const { return v_; }
  int64_t step() const { return step_; }

  // Checkpoint support: copies of the moments on the host (as float, the checkpoint dtype), and
  // their restoration with the step count. `m`, `v` must hold layout.total() elements.
  void ExportState(std::vector<float>* m, std::vector<float>* v);
  void ImportState(const float* m, const float* v, int64_t step);

  const OptimizerConfig& config() const { return config_; }

 private:
  // A run of the flat buffer updated by one op call.
  struct Segment {
    int64_t offset = 0;
    int64_t numel = 0;
    bool decay = false;  // takes config.weight_decay
    bool lamb = false;   // Lamb op (trust ratio) instead of AdamW
  };

  Ops<T>& ops_;
  OptimizerConfig config_;
  int64_t total_ = 0;
  std::vector<Segment> segments_;
  T* m_ = nullptr;
  T* v_ = nullptr;
  T* scalar_ = nullptr;   // Dot output
  T* scratch_ = nullptr;  // LAMB only
  int64_t step_ = 0;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace headroom

#endif  // HEADROOM_TRAINER_OPTIMIZER_H_
