// AdamW / LAMB over the flat parameter buffer, whole or a ZeRO-1 shard; see optimizer.h for the
// contract.
#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>

#include "base/status_macros.h"

namespace headroom {

template <typename T>
std::vector<typename Optimizer<T>::Segment> Optimizer<T>::PlanSegments(
    const ParameterLayout& layout, const OptimizerConfig& config,
    const std::vector<ShardRange>& ranges, int* lamb_tensors, int64_t* largest) {
  const bool lamb = config.type() == OptimizerConfig::LAMB;
  const std::vector<ShardRange> whole = {{0, layout.total(), 0}};
  const std::vector<ShardRange>& rs = ranges.empty() ? whole : ranges;
  std::vector<Segment> segments;
  *lamb_tensors = 0;
  *largest = 0;
  for (const TensorSpec& t : layout.tensors()) {
    const bool tensor_lamb = lamb && t.weight_decay;
    const int lamb_index = tensor_lamb ? (*lamb_tensors)++ : -1;
    for (const ShardRange& r : rs) {
      const int64_t begin = std::max(t.offset, r.begin), end = std::min(t.offset + t.numel, r.end);
      if (begin >= end) continue;
      const int64_t state = r.offset + (begin - r.begin);
      if (tensor_lamb) *largest = std::max(*largest, end - begin);
      // Merge into the previous segment when both are AdamW runs with the same decay, adjacent
      // in the flat buffer and in the state: fewer, longer op calls (~2 segments per layer).
      if (!segments.empty() && !tensor_lamb && !segments.back().lamb &&
          segments.back().decay == t.weight_decay &&
          segments.back().offset + segments.back().numel == begin &&
          segments.back().state + segments.back().numel == state) {
        segments.back().numel += end - begin;
        continue;
      }
      segments.push_back(
          Segment{begin, state, end - begin, t.weight_decay, tensor_lamb, lamb_index});
    }
  }
  return segments;
}

template <typename T>
int64_t Optimizer<T>::AllocatedBytes(const ParameterLayout& layout, const OptimizerConfig& config,
                                     const std::vector<ShardRange>& ranges, bool workspace_given) {
  int lamb_tensors = 0;
  int64_t largest_piece = 0;
  const std::vector<Segment> segments =
      PlanSegments(layout, config, ranges, &lamb_tensors, &largest_piece);
  int64_t state = 0, lamb_segments = 0, largest_tensor = 0;
  for (const Segment& s : segments) lamb_segments += s.lamb ? 1 : 0;
  // The state is indexed like the shard: every element of its ranges, the layout's padding
  // between tensors included (model/parameter_layout.h), not only the segments.
  for (const ShardRange& r : ranges) state += r.numel();
  for (const TensorSpec& t : layout.tensors()) largest_tensor = std::max(largest_tensor, t.numel);
  if (ranges.empty()) state = layout.total();
  int64_t elements = 2 * state + 1;  // m, v, the Dot scalar
  if (config.type() == OptimizerConfig::LAMB) {
    if (ranges.empty()) {
      elements += largest_tensor;
    } else {
      elements += (workspace_given ? 0 : state) + 2 * lamb_segments;
    }
  }
  return elements * static_cast<int64_t>(sizeof(T));
}

template <typename T>
T* Optimizer<T>::Allocate(int64_t n) {
  T* p = ops_.Alloc(n);
  allocations_.push_back(p);
  allocated_bytes_ += n * static_cast<int64_t>(sizeof(T));
  return p;
}

template <typename T>
Optimizer<T>::Optimizer(Ops<T>& ops, const ParameterLayout& layout, const OptimizerConfig& config,
                        OptimizerShard<T> shard, MirroredUpdate<T>* mirror)
    : ops_(ops),
      mirror_(shard.ranges.empty() ? mirror : nullptr),
      config_(config),
      shard_(std::move(shard)),
      sharded_(!shard_.ranges.empty()) {
  int64_t largest_piece = 0;
  segments_ = PlanSegments(layout, config, shard_.ranges, &lamb_tensors_, &largest_piece);
  int64_t lamb_segments = 0;
  for (const Segment& s : segments_) lamb_segments += s.lamb ? 1 : 0;
  // As AllocatedBytes: the shard's size, padding included (segments index it by range offset).
  for (const ShardRange& r : shard_.ranges) state_elements_ += r.numel();
  if (!sharded_) state_elements_ = layout.total();
  m_ = Allocate(state_elements_);
  v_ = Allocate(state_elements_);
  scalar_ = Allocate(1);
  if (config.type() != OptimizerConfig::LAMB) return;
  if (!sharded_) {
    int64_t largest = 0;
    for (const TensorSpec& t : layout.tensors()) largest = std::max(largest, t.numel);
    scratch_ = Allocate(largest);
    return;
  }
  scratch_ = shard_.workspace != nullptr ? shard_.workspace : Allocate(state_elements_);
  norms_ = Allocate(2 * lamb_segments);
}

template <typename T>
Optimizer<T>::~Optimizer() {
  for (void* p : allocations_) ops_.Free(p);
}

template <typename T>
absl::StatusOr<double> Optimizer<T>::GradNorm(const T* grads, double grad_scale) {
  ops_.Dot(grads, grads, state_elements_, scalar_);
  T partial = 0;
  ops_.CopyToHost(&partial, scalar_, sizeof(T));
  double sum_sq = static_cast<double>(partial);
  if (sharded_) HR_RETURN_IF_ERROR(shard_.sum_over_ranks(&sum_sq, 1));
  return std::sqrt(sum_sq) * std::abs(grad_scale);
}

template <typename T>
absl::StatusOr<OptimizerStats> Optimizer<T>::Step(T* params, const T* grads, double lr,
                                                  double grad_scale) {
  OptimizerStats stats;
  HR_ASSIGN_OR_RETURN(stats.grad_norm, GradNorm(grads, grad_scale));
  if (!std::isfinite(stats.grad_norm)) return stats;
  const double max_norm = config_.max_grad_norm();
  if (max_norm > 0 && stats.grad_norm > max_norm) stats.clip_factor = max_norm / stats.grad_norm;

  OptimizerStep s;
  s.lr = static_cast<float>(lr);
  s.beta1 = config_.beta1();
  s.beta2 = config_.beta2();
  s.eps = config_.epsilon();
  s.bias_correction = config_.bias_correction();
  s.step = step_ + 1;
  s.grad_scale = static_cast<float>(grad_scale * stats.clip_factor);
  for (const Segment& seg : segments_) {
    if (seg.lamb && sharded_) continue;  // ShardedLamb below
    s.weight_decay = seg.decay ? config_.weight_decay() : 0.0f;
    T* w = params + seg.offset;
    const T* g = grads + seg.state;
    if (seg.lamb && mirror_ != nullptr) {
      mirror_->Lamb(w, g, m_ + seg.state, v_ + seg.state, seg.numel, s, scratch_);
    } else if (seg.lamb) {
      ops_.Lamb(w, g, m_ + seg.state, v_ + seg.state, seg.numel, s, scratch_);
    } else if (mirror_ != nullptr) {
      mirror_->AdamW(w, g, m_ + seg.state, v_ + seg.state, seg.numel, s);
    } else {
      ops_.AdamW(w, g, m_ + seg.state, v_ + seg.state, seg.numel, s);
    }
  }
  if (sharded_ && lamb_tensors_ > 0) HR_RETURN_IF_ERROR(ShardedLamb(params, grads, s));
  ++step_;
  stats.applied = true;
  return stats;
}

template <typename T>
absl::Status Optimizer<T>::ShardedLamb(T* params, const T* grads, const OptimizerStep& step) {
  // 1. Per LAMB segment: m, v and u = m_hat / (sqrt(v_hat) + eps) into the scratch (a zero
  // "weight" updated with lr = -1 and no decay is u exactly), + decay * w, and the partial
  // squared norms of w and u.
  OptimizerStep direction = step;
  direction.lr = -1.0f;
  direction.weight_decay = 0.0f;
  int k = 0;
  for (const Segment& seg : segments_) {
    if (!seg.lamb) continue;
    T* u = scratch_ + seg.state;
    const T* w = params + seg.offset;
    ops_.Fill(u, seg.numel, T(0));
    ops_.AdamW(u, grads + seg.state, m_ + seg.state, v_ + seg.state, seg.numel, direction);
    if (seg.decay) ops_.Axpy(static_cast<T>(config_.weight_decay()), w, u, seg.numel);
    ops_.Dot(w, w, seg.numel, norms_ + 2 * k);
    ops_.Dot(u, u, seg.numel, norms_ + 2 * k + 1);
    ++k;
  }
  // 2. The partial sums per tensor, summed over the ranks (tensors this rank has no piece of
  // contribute zeros).
  std::vector<T> partial(static_cast<size_t>(2 * k));
  ops_.CopyToHost(partial.data(), norms_, partial.size() * sizeof(T));
  std::vector<double> sums(static_cast<size_t>(2 * lamb_tensors_), 0.0);
  k = 0;
  for (const Segment& seg : segments_) {
    if (!seg.lamb) continue;
    sums[2 * seg.lamb_tensor] += static_cast<double>(partial[2 * k]);
    sums[2 * seg.lamb_tensor + 1] += static_cast<double>(partial[2 * k + 1]);
    ++k;
  }
  HR_RETURN_IF_ERROR(shard_.sum_over_ranks(sums.data(), static_cast<int>(sums.size())));
  // 3. w -= lr * r * u with r = ||w|| / ||u|| of the whole tensor (1 when either is 0).
  for (const Segment& seg : segments_) {
    if (!seg.lamb) continue;
    const double ws = sums[2 * seg.lamb_tensor], us = sums[2 * seg.lamb_tensor + 1];
    const double ratio = (ws > 0 && us > 0) ? std::sqrt(ws) / std::sqrt(us) : 1.0;
    const T lr_ratio = static_cast<T>(static_cast<double>(step.lr) * ratio);
    ops_.Axpy(-lr_ratio, scratch_ + seg.state, params + seg.offset, seg.numel);
  }
  return absl::OkStatus();
}

template <typename T>
void Optimizer<T>::ExportState(std::vector<float>* m, std::vector<float>* v) {
  const size_t n = static_cast<size_t>(state_elements_);
  m->resize(n);
  v->resize(n);
  if constexpr (std::is_same_v<T, float>) {
    ops_.CopyToHost(m->data(), m_, n * sizeof(float));
    ops_.CopyToHost(v->data(), v_, n * sizeof(float));
  } else {
    std::vector<T> tmp(n);
    ops_.CopyToHost(tmp.data(), m_, n * sizeof(T));
    std::transform(tmp.begin(), tmp.end(), m->begin(), [](T x) { return static_cast<float>(x); });
    ops_.CopyToHost(tmp.data(), v_, n * sizeof(T));
    std::transform(tmp.begin(), tmp.end(), v->begin(), [](T x) { return static_cast<float>(x); });
  }
}

template <typename T>
void Optimizer<T>::ImportState(const float* m, const float* v, int64_t step) {
  const size_t n = static_cast<size_t>(state_elements_);
  if constexpr (std::is_same_v<T, float>) {
    ops_.CopyToDevice(m_, m, n * sizeof(float));
    ops_.CopyToDevice(v_, v, n * sizeof(float));
  } else {
    std::vector<T> tmp(m, m + n);
    ops_.CopyToDevice(m_, tmp.data(), n * sizeof(T));
    tmp.assign(v, v + n);
    ops_.CopyToDevice(v_, tmp.data(), n * sizeof(T));
  }
  step_ = step;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace headroom
