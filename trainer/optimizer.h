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
// ZeRO-1 (OptimizerShard, trainer/zero_shard.h): the optimizer of one data-parallel rank owns
// the shard ranges only. m and v (and `grads` given to Step) are then the compact shard
// buffers; Step updates the parameters of the shard ranges in place (the caller all-gathers
// them afterwards) and needs two sums over the ranks, through OptimizerShard::sum_over_ranks:
//   - the grad norm: each rank's sum of squares of its shard gradient, summed (one double);
//   - LAMB: per tensor the partial ||w||^2 and ||u||^2 of the rank's piece of it, summed over
//     the ranks (one vector of 2 x LAMB tensors), then r = ||w|| / ||u|| as unsharded. The
//     update u of every LAMB piece is computed first (m, v updated, u kept in the workspace),
//     and applied once the sums are back; an AdamW op with a zero "weight" and lr = -1 writes
//     u exactly (0 - (-1) * u), the decay term is added with Axpy. One host read back per step
//     (all pieces' norms at once) instead of none.
// Everything else is per element, so a sharded step equals the unsharded one up to the
// summation order of the norms.
//
// The bf16 model's weight mirror (Model<T, A>, train.precision bf16): given the model's
// MirroredUpdate (kernels/mixed_ops.h), an unsharded Step updates through it, so each update
// kernel also writes the mirror of what it updated (rounded to nearest even) and the model's
// ParametersUpdated() is not needed after the step (writes_mirror()). A ZeRO-1 step updates the
// shard only; the mirror is then refreshed after the parameters' all-gather, by the model.
//
// Example:
//   Optimizer<float> opt(ops, layout, config.train().optimizer());
//   ... zero grads, k x (forward, backward) ...
//   HR_ASSIGN_OR_RETURN(OptimizerStats st,
//                       opt.Step(params, grads, schedule.LearningRate(opt.step()), 1.0 / k));
//   if (!st.applied) return absl::InternalError("non-finite gradient");
#ifndef HEADROOM_TRAINER_OPTIMIZER_H_
#define HEADROOM_TRAINER_OPTIMIZER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/mixed_ops.h"
#include "kernels/ops.h"
#include "model/parameter_layout.h"
#include "trainer/zero_shard.h"

namespace headroom {

struct OptimizerStats {
  // ||grad_scale * g||, before clipping (what BERT and Megatron log as the grad norm).
  double grad_norm = 0;
  // The clipping factor applied on top of grad_scale (1 when not clipped).
  double clip_factor = 1;
  // False when grad_norm was not finite and nothing was updated.
  bool applied = false;
};

// ZeRO-1: which part of the flat buffer this rank's optimizer updates (see the file comment).
template <typename T>
struct OptimizerShard {
  // The rank's ranges (PlanZeroShard); empty: the whole buffer, no sharding.
  std::vector<ShardRange> ranges;
  // Sums `n` doubles over the ranks in place (an all-reduce); required with `ranges`.
  std::function<absl::Status(double* values, int n)> sum_over_ranks;
  // LAMB with `ranges`: a device buffer of at least the shard's size that Step may overwrite
  // (the trainer passes the model's full gradient buffer, whose content is dead once it has
  // been reduce-scattered). nullptr: the optimizer allocates one.
  T* workspace = nullptr;
};

template <typename T>
class Optimizer {
 public:
  // `ops` and `layout` must outlive the optimizer. Allocates m, v (layout.total() elements each,
  // or the shard's size; zero), device scalars and, for LAMB, a scratch buffer of the largest
  // tensor's size (sharded: the shard's size, unless shard.workspace is given). `mirror` (not
  // owned; may be null): the model's mirrored updates (see the file comment), unused when sharded.
  Optimizer(Ops<T>& ops, const ParameterLayout& layout, const OptimizerConfig& config,
            OptimizerShard<T> shard = {}, MirroredUpdate<T>* mirror = nullptr);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of `params` (device, layout.total() elements; sharded: the shard ranges only)
  // from `grads` (same layout, or the compact shard gradient; read only) at learning rate `lr`;
  // gradients are first multiplied by `grad_scale` (1/k for k accumulated micro-batches).
  // Increments step() when applied. Errors come from shard.sum_over_ranks only.
  [[nodiscard]] absl::StatusOr<OptimizerStats> Step(T* params, const T* grads, double lr,
                                                    double grad_scale = 1.0);

  // ||grad_scale * g|| over the flat buffer (one Dot and one read back; sharded: over all the
  // ranks' shards, summed with shard.sum_over_ranks).
  [[nodiscard]] absl::StatusOr<double> GradNorm(const T* grads, double grad_scale = 1.0);

  // Moments (device buffers of state_elements() each) and the number of updates applied.
  T* m() { return m_; }
  T* v() { return v_; }
  const T* m() const { return m_; }
  const T* v() const { return v_; }
  int64_t step() const { return step_; }
  // Elements of m, v and of the gradient Step reads: layout.total(), or the shard's size.
  int64_t state_elements() const { return state_elements_; }
  bool sharded() const { return sharded_; }
  // True when Step's updates write the model's weight mirror (a mirror was given and the
  // optimizer is not sharded): the caller need not refresh it after an applied step.
  bool writes_mirror() const { return mirror_ != nullptr; }
  // Bytes this optimizer allocated (m, v, LAMB scratch and norms, scalars): its memory.
  int64_t allocated_bytes() const { return allocated_bytes_; }
  // What allocated_bytes() will be for `layout`, `config` and the shard `ranges` (empty: not
  // sharded; `workspace_given` as OptimizerShard::workspace != nullptr), without allocating.
  static int64_t AllocatedBytes(const ParameterLayout& layout, const OptimizerConfig& config,
                                const std::vector<ShardRange>& ranges, bool workspace_given);

  // Checkpoint support: copies of the moments on the host (as float, the checkpoint dtype), and
  // their restoration with the step count. `m`, `v` hold state_elements() elements (sharded:
  // the compact shard; the trainer gathers the full state, trainer/data_parallel.h).
  void ExportState(std::vector<float>* m, std::vector<float>* v);
  void ImportState(const float* m, const float* v, int64_t step);

  const OptimizerConfig& config() const { return config_; }

 private:
  // A run updated by one op call: params at `offset` of the flat buffer, gradient and moments at
  // `state` (== offset when not sharded).
  struct Segment {
    int64_t offset = 0;
    int64_t state = 0;
    int64_t numel = 0;
    bool decay = false;    // takes config.weight_decay
    bool lamb = false;     // trust ratio instead of plain AdamW
    int lamb_tensor = -1;  // LAMB: index among the layout's LAMB tensors (sharded norms)
  };
  // The segments for `layout` restricted to `ranges` (all of it when empty); *lamb_tensors
  // gets the number of the layout's LAMB tensors, *largest the largest LAMB segment.
  static std::vector<Segment> PlanSegments(const ParameterLayout& layout,
                                           const OptimizerConfig& config,
                                           const std::vector<ShardRange>& ranges, int* lamb_tensors,
                                           int64_t* largest);
  T* Allocate(int64_t n);
  // The sharded LAMB segments: directions, norms summed over the ranks, then the updates.
  absl::Status ShardedLamb(T* params, const T* grads, const OptimizerStep& s);

  Ops<T>& ops_;
  MirroredUpdate<T>* mirror_;  // null unless writes_mirror()
  OptimizerConfig config_;
  OptimizerShard<T> shard_;
  bool sharded_ = false;
  int64_t state_elements_ = 0;
  std::vector<Segment> segments_;
  int lamb_tensors_ = 0;
  T* m_ = nullptr;
  T* v_ = nullptr;
  T* scalar_ = nullptr;   // Dot output
  T* scratch_ = nullptr;  // LAMB only (sharded: u of every LAMB segment, unless shard.workspace)
  T* norms_ = nullptr;    // sharded LAMB: ||w||^2, ||u||^2 per segment
  std::vector<void*> allocations_;
  int64_t allocated_bytes_ = 0;
  int64_t step_ = 0;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace headroom

#endif  // HEADROOM_TRAINER_OPTIMIZER_H_
