// Fixed head size attention forward and backward over Ops<T>; see attention.h.
//
// Heads are split with PermuteHeads so every per-head product is one strided-batched GEMM over
// B*h independent [S, d_p] blocks. The 1/sqrt(d_p) scale is applied inside the softmax (and its
// backward), not by a separate pass over the B*h*S*S scores.
#include "model/attention.h"

#include <cassert>
#include <cmath>

namespace headroom {

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
  qh_ = ops_->Alloc(n_inner);
  kh_ = ops_->Alloc(n_inner);
  vh_ = ops_->Alloc(n_inner);
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
  for (T* p : {qh_, kh_, vh_, ctx_, probs_, dropped_, lse_}) ops_->Free(p);
}

template <typename T>
int64_t FixedHeadAttention<T>::ScratchElements(int num_heads, int head_size, int max_batch,
                                               int max_seq, bool fused) {
  // Backward is the larger user: materialised, two [N, I] buffers and two [B, h, S, S]
  // buffers; fused, four [N, I] buffers (dctx, dq, dk, dv) and delta [B, h, S].
  const int64_t n_inner = static_cast<int64_t>(max_batch) * max_seq * num_heads * head_size;
  const int64_t n_probs = static_cast<int64_t>(max_batch) * num_heads * max_seq * max_seq;
  if (fused) return 4 * n_inner + static_cast<int64_t>(max_batch) * num_heads * max_seq;
  return 2 * n_inner + 2 * n_probs;
}

template <typename T>
int64_t FixedHeadAttention<T>::KeptElements() const {
  const int64_t n_inner = static_cast<int64_t>(max_batch_) * max_seq_ * h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(max_batch_) * h_ * max_seq_ * max_seq_;
  if (fused_) return 4 * n_inner + static_cast<int64_t>(max_batch_) * h_ * max_seq_;
  return 4 * n_inner + (dropped_ != nullptr ? 2 : 1) * n_probs;
}

template <typename T>
void FixedHeadAttention<T>::ForwardFused(const AttentionParams<T>& p, const T* x,
                                         const int32_t* segments, T* out) {
  const int N = B_ * S_, I = h_ * dp_;
  const T* w[3] = {p.wq, p.wk, p.wv};
  const T* b[3] = {p.bq, p.bk, p.bv};
  T* y[3] = {qh_, kh_, vh_};
  for (int i = 0; i < 3; ++i) {
    ops_->Linear(x, w[i], b[i], N, I, d_, y[i]);
  }
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->AttentionForward(qh_, kh_, vh_, B_, S_, h_, dp_, scale, segments, causal_, rate_, key_,
                         ctx_, lse_);
  ops_->Linear(ctx_, p.wo, p.bo, N, d_, I, out);
}

template <typename T>
void FixedHeadAttention<T>::ProjectionBackward(const T* dy, const T* x, const T* w, T* gw, T* gb,
                                               T* dx, int N) {
  const int I = h_ * dp_;
  ops_->LinearBackwardWeights(dy, x, N, I, d_, gw, gb);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, d_, I, T(1), dy, I, w, d_, T(1), dx, d_);
}

template <typename T>
void FixedHeadAttention<T>::BackwardFused(const AttentionParams<T>& p, const AttentionGrads<T>& g,
                                          const T* x, const T* dout, T* dx, T* scratch) {
  const int N = B_ * S_, I = h_ * dp_;
  const int64_t n_inner = static_cast<int64_t>(N) * I;
  T* dctx = scratch;
  T* dq = scratch + n_inner;
  T* dk = dq + n_inner;
  T* dv = dk + n_inner;
  T* delta = dv + n_inner;  // [B, h, S]
  ops_->LinearBackwardWeights(dout, ctx_, N, d_, I, g.wo, g.bo);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, I, d_, T(1), dout, d_, p.wo, I, T(0), dctx, I);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->AttentionBackward(qh_, kh_, vh_, ctx_, dctx, lse_, B_, S_, h_, dp_, scale, segments_,
                          causal_, rate_, key_, dq, dk, dv, delta);
  ProjectionBackward(dv, x, p.wv, g.wv, g.bv, dx, N);
  ProjectionBackward(dq, x, p.wq, g.wq, g.bq, dx, N);
  ProjectionBackward(dk, x, p.wk, g.wk, g.bk, dx, N);
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
  if (fused_) {
    ForwardFused(p, x, segments, out);
    return;
  }
  const int N = B * S, I = h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(B) * h_ * S * S;
  T* proj = scratch;  // [N, I]
  T* dropped = dropped_ != nullptr ? dropped_ : scratch + static_cast<int64_t>(N) * I;

  // Projections, each split into heads.
  const T* w[3] = {p.wq, p.wk, p.wv};
  const T* b[3] = {p.bq, p.bk, p.bv};
  T* heads[3] = {qh_, kh_, vh_};
  for (int i = 0; i < 3; ++i) {
    ops_->Linear(x, w[i], b[i], N, I, d_, proj);
    ops_->PermuteHeads(proj, heads[i], B, S, h_, dp_, /*inverse=*/false);
  }

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
  T* buf_a = scratch;                 // [N, I]
  T* buf_b = scratch + n_inner;       // [N, I]
  T* dprobs = scratch + 2 * n_inner;  // [B, h, S, S]
  T* dropped = dprobs + n_probs;      // [B, h, S, S] (unless kept from Forward)

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
  T* dv_heads = buf_a;
  ops_->GemmStridedBatched(Trans::kYes, Trans::kNo, S, dp_, S, T(1), attend, S, score_stride,
                           dctx_heads, dp_, head_stride, T(0), dv_heads, dp_, head_stride, B * h_);
  // dctx_heads (buf_b) is free from here on.
  T* merged = buf_b;
  ops_->PermuteHeads(dv_heads, merged, B, S, h_, dp_, /*inverse=*/true);
  ProjectionBackward(merged, x, p.wv, g.wv, g.bv, dx, N);

  // Dropout and softmax backward, in place: dprobs becomes d loss / d (Q K^T).
  if (rate_ > 0) ops_->Dropout(dprobs, dprobs, n_probs, rate_, key_);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->SoftmaxBackward(probs_, dprobs, dprobs, static_cast<int64_t>(B) * h_ * S, S, scale);

  // Scores S = Q K^T: dQ = dS K, dK = dS^T Q; then through the projections.
  const T* w[2] = {p.wq, p.wk};
  T* gw[2] = {g.wq, g.wk};
  T* gb[2] = {g.bq, g.bk};
  for (int i = 0; i < 2; ++i) {
    if (i == 0) {
      ops_->GemmStridedBatched(Trans::kNo, Trans::kNo, S, dp_, S, T(1), dprobs, S, score_stride,
                               kh_, dp_, head_stride, T(0), buf_a, dp_, head_stride, B * h_);
    } else {
      ops_->GemmStridedBatched(Trans::kYes, Trans::kNo, S, dp_, S, T(1), dprobs, S, score_stride,
                               qh_, dp_, head_stride, T(0), buf_a, dp_, head_stride, B * h_);
    }
    ops_->PermuteHeads(buf_a, merged, B, S, h_, dp_, /*inverse=*/true);
    ProjectionBackward(merged, x, w[i], gw[i], gb[i], dx, N);
  }
}

template class FixedHeadAttention<float>;
template class FixedHeadAttention<double>;

}  // namespace headroom
