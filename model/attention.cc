// Fixed head size attention forward and backward over Ops<T>; see attention.h.
//
// Q, K and V come from one GEMM over the fused [3I, d] weight into [B*S, 3I], taken apart by
// PermuteHeads into [3, B*S, I]. Heads are split with PermuteHeads (all three at once, as 3B
// sequences) so every per-head product is one strided-batched GEMM over B*h independent
// [S, d_p] blocks. The 1/sqrt(d_p) scale is applied inside the softmax (and its
// backward), not by a separate pass over the B*h*S*S scores.
#include "model/attention.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "model/parameter_layout.h"

namespace headroom {

namespace {

// Where the pieces of the scratch workspace start, for N*I = n_inner and B*h*S*S = n_probs,
// each at a multiple of kTensorAlignment elements (model/parameter_layout.h). Materialised:
// buf_a [N, I] at 0, buf_b [N, I], dprobs and dropped [B, h, S, S]; fused: dctx [N, I] at 0,
// dq, dk, dv [3, N, I] (contiguous: QkvBackward reads them as one tensor), delta [B, h, S].
struct Pieces {
  int64_t buf_b, dprobs, dropped;  // materialised
  int64_t dq, delta;               // fused
  Pieces(int64_t n_inner, int64_t n_probs)
      : buf_b(AlignUp(n_inner, kTensorAlignment)),
        dprobs(2 * buf_b),
        dropped(dprobs + AlignUp(n_probs, kTensorAlignment)),
        dq(buf_b),
        delta(dq + AlignUp(3 * n_inner, kTensorAlignment)) {}
};

}  // namespace

template <typename T>
FixedHeadAttention<T>::FixedHeadAttention(Ops<T>* ops, int d_model, int num_heads, int head_size,
                                          int max_batch, int max_seq, bool keep_dropped_probs,
                                          bool fused)
    : ops_(ops),
      d_(d_model),
      h_(num_heads),
      dp_(head_size),
      max_batch_(max_batch),
      max_seq_(max_seq),
      fused_(fused) {
  const int64_t n_inner = static_cast<int64_t>(max_batch) * max_seq * h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(max_batch) * h_ * max_seq * max_seq;
  qkv_ = ops_->Alloc(3 * n_inner);
  ctx_ = ops_->Alloc(n_inner);
  if (fused_) {
    lse_ = ops_->Alloc(static_cast<int64_t>(max_batch) * h_ * max_seq);
    return;
  }
  probs_ = ops_->Alloc(n_probs);
  if (keep_dropped_probs) dropped_ = ops_->Alloc(n_probs);
}

template <typename T>
FixedHeadAttention<T>::~FixedHeadAttention() {
  for (T* p : {qkv_, ctx_, probs_, dropped_, lse_}) ops_->Free(p);
}

template <typename T>
int64_t FixedHeadAttention<T>::ScratchElements(int num_heads, int head_size, int max_batch,
                                               int max_seq, bool fused) {
  // Backward is the larger user: materialised, two [N, I] buffers and two [B, h, S, S]
  // buffers, or the [3, N, I] stage of the Q, K, V projection (forward and backward) when that
  // is larger; fused, dctx [N, I], dq, dk, dv [3, N, I] and delta [B, h, S]. Each piece starts
  // at a multiple of kTensorAlignment elements (Pieces).
  const int64_t n_inner = static_cast<int64_t>(max_batch) * max_seq * num_heads * head_size;
  const int64_t n_probs = static_cast<int64_t>(max_batch) * num_heads * max_seq * max_seq;
  const Pieces at(n_inner, n_probs);
  if (fused) return at.delta + static_cast<int64_t>(max_batch) * num_heads * max_seq;
  return std::max(at.dropped + n_probs, 3 * n_inner);
}

template <typename T>
int64_t FixedHeadAttention<T>::KeptElements() const {
  const int64_t n_inner = static_cast<int64_t>(max_batch_) * max_seq_ * h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(max_batch_) * h_ * max_seq_ * max_seq_;
  if (fused_) return 4 * n_inner + static_cast<int64_t>(max_batch_) * h_ * max_seq_;
  return 4 * n_inner + (dropped_ != nullptr ? 2 : 1) * n_probs;
}

template <typename T>
void FixedHeadAttention<T>::ProjectQkv(const AttentionParams<T>& p, const T* x, T* scratch) {
  const int N = B_ * S_, I = h_ * dp_;
  const int64_t n_inner = static_cast<int64_t>(N) * I;
  qh_ = qkv_;
  kh_ = qkv_ + n_inner;
  vh_ = qkv_ + 2 * n_inner;
  if (fused_) {  // [N, 3I] -> [3, N, I]: q, k, v token-major
    ops_->Linear(x, p.wqkv, p.bqkv, N, 3 * I, d_, scratch);
    ops_->PermuteHeads(scratch, qkv_, 1, N, 3, I, /*inverse=*/false);
    return;
  }
  // [N, 3I] -> [3, N, I] -> heads of the 3B sequences [3, B, h, S, d_p].
  ops_->Linear(x, p.wqkv, p.bqkv, N, 3 * I, d_, qkv_);
  ops_->PermuteHeads(qkv_, scratch, 1, N, 3, I, /*inverse=*/false);
  ops_->PermuteHeads(scratch, qkv_, 3 * B_, S_, h_, dp_, /*inverse=*/false);
}

template <typename T>
void FixedHeadAttention<T>::QkvBackward(const AttentionParams<T>& p, const AttentionGrads<T>& g,
                                        const T* x, const T* dqkv, T* dx) {
  const int N = B_ * S_, I = h_ * dp_;
  // [3, N, I] -> [N, 3I], into the kept q, k, v (no longer needed).
  ops_->PermuteHeads(dqkv, qkv_, 1, N, 3, I, /*inverse=*/true);
  ops_->LinearBackwardWeights(qkv_, x, N, 3 * I, d_, g.wqkv, g.bqkv);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, d_, 3 * I, T(1), qkv_, 3 * I, p.wqkv, d_, T(1), dx, d_);
}

template <typename T>
void FixedHeadAttention<T>::ForwardFused(const AttentionParams<T>& p, const int32_t* segments,
                                         T* out) {
  const int N = B_ * S_, I = h_ * dp_;
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->AttentionForward(qh_, kh_, vh_, B_, S_, h_, dp_, scale, segments, causal_, rate_, key_,
                         ctx_, lse_);
  ops_->Linear(ctx_, p.wo, p.bo, N, d_, I, out);
}

template <typename T>
void FixedHeadAttention<T>::BackwardFused(const AttentionParams<T>& p, const AttentionGrads<T>& g,
                                          const T* x, const T* dout, T* dx, T* scratch) {
  const int N = B_ * S_, I = h_ * dp_;
  const int64_t n_inner = static_cast<int64_t>(N) * I;
  const Pieces at(n_inner, 0);
  T* dctx = scratch;
  T* dq = scratch + at.dq;
  T* dk = dq + n_inner;
  T* dv = dk + n_inner;
  T* delta = scratch + at.delta;  // [B, h, S]
  ops_->LinearBackwardWeights(dout, ctx_, N, d_, I, g.wo, g.bo);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, I, d_, T(1), dout, d_, p.wo, I, T(0), dctx, I);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->AttentionBackward(qh_, kh_, vh_, ctx_, dctx, lse_, B_, S_, h_, dp_, scale, segments_,
                          causal_, rate_, key_, dq, dk, dv, delta);
  QkvBackward(p, g, x, dq, dx);  // dq, dk, dv are [3, N, I]
}

template <typename T>
void FixedHeadAttention<T>::Forward(const AttentionParams<T>& p, const T* x, int B, int S,
                                    const int32_t* segments, bool causal, float dropout_rate,
                                    const DropoutKey& key, T* out, T* scratch) {
  assert(B <= max_batch_ && S <= max_seq_);
  B_ = B;
  S_ = S;
  segments_ = segments;
  causal_ = causal;
  rate_ = dropout_rate;
  key_ = key;
  ProjectQkv(p, x, scratch);
  if (fused_) {
    ForwardFused(p, segments, out);
    return;
  }
  const int N = B * S, I = h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(B) * h_ * S * S;
  T* proj = scratch;  // [N, I]
  T* dropped = dropped_ != nullptr
                   ? dropped_
                   : scratch + AlignUp(static_cast<int64_t>(N) * I, kTensorAlignment);

  // Scores Q K^T per head, written straight into probs and normalised in place.
  const int64_t head_stride = static_cast<int64_t>(S) * dp_;
  const int64_t score_stride = static_cast<int64_t>(S) * S;
  ops_->GemmStridedBatched(Trans::kNo, Trans::kYes, S, S, dp_, T(1), qh_, dp_, head_stride, kh_,
                           dp_, head_stride, T(0), probs_, S, score_stride, B * h_);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->SoftmaxForward(probs_, probs_, B, h_, S, S, scale, segments, causal);

  const T* attend = probs_;
  if (rate_ > 0) {
    ops_->Dropout(probs_, dropped, n_probs, rate_, key_);
    attend = dropped;
  }
  // Context per head, then heads merged back to [N, I].
  T* ctx_heads = proj;
  ops_->GemmStridedBatched(Trans::kNo, Trans::kNo, S, dp_, S, T(1), attend, S, score_stride, vh_,
                           dp_, head_stride, T(0), ctx_heads, dp_, head_stride, B * h_);
  ops_->PermuteHeads(ctx_heads, ctx_, B, S, h_, dp_, /*inverse=*/true);

  ops_->Linear(ctx_, p.wo, p.bo, N, d_, I, out);
}

template <typename T>
void FixedHeadAttention<T>::Backward(const AttentionParams<T>& p, const AttentionGrads<T>& g,
                                     const T* x, const T* dout, T* dx, T* scratch) {
  if (fused_) {
    BackwardFused(p, g, x, dout, dx, scratch);
    return;
  }
  const int B = B_, S = S_, N = B * S, I = h_ * dp_;
  const int64_t n_inner = static_cast<int64_t>(N) * I;
  const int64_t n_probs = static_cast<int64_t>(B) * h_ * S * S;
  const int64_t head_stride = static_cast<int64_t>(S) * dp_;
  const int64_t score_stride = static_cast<int64_t>(S) * S;
  const Pieces at(n_inner, n_probs);
  T* buf_a = scratch;                 // [N, I]
  T* buf_b = scratch + at.buf_b;      // [N, I]
  T* dprobs = scratch + at.dprobs;    // [B, h, S, S]
  T* dropped = scratch + at.dropped;  // [B, h, S, S] (unless kept from Forward)

  // Output projection: dWo += dout^T ctx, dbo += colsum(dout), dctx = dout Wo.
  ops_->LinearBackwardWeights(dout, ctx_, N, d_, I, g.wo, g.bo);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, I, d_, T(1), dout, d_, p.wo, I, T(0), buf_a, I);
  T* dctx_heads = buf_b;
  ops_->PermuteHeads(buf_a, dctx_heads, B, S, h_, dp_, /*inverse=*/false);

  // Through C = dropout(P) V: dP' = dC V^T, dV = dropout(P)^T dC.
  const T* attend = probs_;
  if (rate_ > 0 && dropped_ != nullptr) {
    attend = dropped_;
  } else if (rate_ > 0) {
    ops_->Dropout(probs_, dropped, n_probs, rate_, key_);
    attend = dropped;
  }
  ops_->GemmStridedBatched(Trans::kNo, Trans::kYes, S, S, dp_, T(1), dctx_heads, dp_, head_stride,
                           vh_, dp_, head_stride, T(0), dprobs, S, score_stride, B * h_);
  // V is no longer needed: dV (heads) goes where V was.
  ops_->GemmStridedBatched(Trans::kYes, Trans::kNo, S, dp_, S, T(1), attend, S, score_stride,
                           dctx_heads, dp_, head_stride, T(0), vh_, dp_, head_stride, B * h_);

  // Dropout and softmax backward, in place: dprobs becomes d loss / d (Q K^T).
  if (rate_ > 0) ops_->Dropout(dprobs, dprobs, n_probs, rate_, key_);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->SoftmaxBackward(probs_, dprobs, dprobs, static_cast<int64_t>(B) * h_ * S, S, scale);

  // Scores S = Q K^T: dQ = dS K (parked in buf_a while Q is read), then dK = dS^T Q over K.
  ops_->GemmStridedBatched(Trans::kNo, Trans::kNo, S, dp_, S, T(1), dprobs, S, score_stride, kh_,
                           dp_, head_stride, T(0), buf_a, dp_, head_stride, B * h_);
  ops_->GemmStridedBatched(Trans::kYes, Trans::kNo, S, dp_, S, T(1), dprobs, S, score_stride, qh_,
                           dp_, head_stride, T(0), kh_, dp_, head_stride, B * h_);
  ops_->CopyDevice(qh_, buf_a, sizeof(T) * static_cast<size_t>(n_inner));
  // Heads of dq, dk, dv merged into [3, N, I] (the scratch is free), then through the projection.
  ops_->PermuteHeads(qkv_, scratch, 3 * B, S, h_, dp_, /*inverse=*/true);
  QkvBackward(p, g, x, scratch, dx);
}

template class FixedHeadAttention<float>;
template class FixedHeadAttention<double>;

}  // namespace headroom
