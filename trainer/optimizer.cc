// AdamW / LAMB over the flat parameter buffer; see optimizer.h for the contract.
#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>

namespace headroom {

template <typename T>
Optimizer<T>::Optimizer(Ops<T>& ops, const ParameterLayout& layout, const OptimizerConfig& config)
    : ops_(ops), config_(config), total_(layout.total()) {
  const bool lamb = config.type() == OptimizerConfig::LAMB;
  int64_t largest = 0;
  for (const TensorSpec& t : layout.tensors()) {
    const bool tensor_lamb = lamb && t.weight_decay;
    largest = std::max(largest, t.numel);
    // Merge into the previous segment when both are AdamW ranges with the same decay: fewer,
    // longer op calls (the whole buffer is ~2 segments per layer).
    if (!segments_.empty() && !tensor_lamb && !segments_.back().lamb &&
        segments_.back().decay == t.weight_decay &&
        segments_.back().offset + segments_.back().numel == t.offset) {
      segments_.back().numel += t.numel;
      continue;
    }
    segments_.push_back(Segment{t.offset, t.numel, t.weight_decay, tensor_lamb});
  }
  m_ = ops_.Alloc(total_);
  v_ = ops_.Alloc(total_);
  scalar_ = ops_.Alloc(1);
  if (lamb) scratch_ = ops_.Alloc(largest);
}

template <typename T>
Optimizer<T>::~Optimizer() {
  ops_.Free(m_);
  ops_.Free(v_);
  ops_.Free(scalar_);
  ops_.Free(scratch_);
}

template <typename T>
double Optimizer<T>::GradNorm(const T* grads, double grad_scale) {
  ops_.Dot(grads, grads, total_, scalar_);
  T sum_sq = 0;
  ops_.CopyToHost(&sum_sq, scalar_, sizeof(T));
  return std::sqrt(static_cast<double>(sum_sq)) * std::abs(grad_scale);
}

template <typename T>
OptimizerStats Optimizer<T>::Step(T* params, const T* grads, double lr, double grad_scale) {
  OptimizerStats stats;
  stats.grad_norm = GradNorm(grads, grad_scale);
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
    s.weight_decay = seg.decay ? config_.weight_decay() : 0.0f;
    if (seg.lamb) {
      ops_.Lamb(params + seg.offset, grads + seg.offset, m_ + seg.offset, v_ + seg.offset,
                seg.numel, s, scratch_);
    } else {
      ops_.AdamW(params + seg.offset, grads + seg.offset, m_ + seg.offset, v_ + seg.offset,
                 seg.numel, s);
    }
  }
  ++step_;
  stats.applied = true;
  return stats;
}

template <typename T>
void Optimizer<T>::ExportState(std::vector<float>* m, std::vector<float>* v) {
  const size_t n = static_cast<size_t>(total_);
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
  const size_t n = static_cast<size_t>(total_);
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
