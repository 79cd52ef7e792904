// Fixed head size attention forward and backward over Ops<T, A>; see attention.h.
//
// Q, K and V come from one GEMM over the fused [3I, d] weight into [B*S, 3I]. The materialised
// path's per-head products see each operand as a HeadMatrices view (the matrix of sequence b,
// head j starts at p + b * seq + j * head, rows ld apart), so the same code runs on both head
// layouts (attention.h): kSequenceMajor, one PermuteHeads of [B, S, 3h, d_p] into
// [B, 3h, S, d_p]; kQkvMajor, two into [3, B, h, S, d_p]. The 1/sqrt(d_p) scale is applied inside
// the softmax (and its backward), not by a separate pass over the B*h*S*S scores.
#include "model/attention.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "base/bf16.h"
#include "kernels/mixed_ops.h"
#include "model/parameter_layout.h"

namespace headroom {

namespace {

// Where the pieces of the scratch workspace start, in bytes, for N*I = n_inner and
// B*h*S*S = n_probs elements of A (a bytes each) and a T alignment of t bytes: each piece at a
// multiple of kTensorAlignment T elements (model/parameter_layout.h). Materialised: buf_a
// [N, I] at 0, buf_b [N, I] (kQkvMajor only), dprobs and dropped [B, h, S, S], and the
// projection's [N, 3I] (forward) or its gradient (backward) at 0 once buf_a is spent; fused: dctx
// [N, I] at 0, dq, dk, dv [3, N, I] (contiguous: the projection's backward reads them as one
// tensor), delta [B, h, S] (T). The same for both head layouts; with A = T the offsets are
// today's element offsets times sizeof(T).
struct Pieces {
  int64_t buf_b, dprobs, dropped;  // materialised
  int64_t dq, delta;               // fused
  Pieces(int64_t n_inner, int64_t n_probs, int64_t a, int64_t t)
      : buf_b(AlignTensorBytes(n_inner * a, t)),
        dprobs(2 * buf_b),
        dropped(dprobs + AlignTensorBytes(n_probs * a, t)),
        dq(buf_b),
        delta(dq + AlignTensorBytes(3 * n_inner * a, t)) {}
};

}  // namespace

HeadLayout ResolveHeadLayout(HeadLayout layout, DeviceKind device) {
  if (layout != HeadLayout::kAuto) return layout;
  return device == DeviceKind::kCpu ? HeadLayout::kSequenceMajor : HeadLayout::kQkvMajor;
}

template <typename T, typename A>
FixedHeadAttention<T, A>::FixedHeadAttention(Ops<T, A>* ops, int d_model, int num_heads,
                                             int head_size, int max_batch, int max_seq,
                                             bool keep_dropped_probs, bool fused, HeadLayout heads)
    : ops_(ops),
      d_(d_model),
      h_(num_heads),
      dp_(head_size),
      max_batch_(max_batch),
      max_seq_(max_seq),
      fused_(fused),
      sequence_major_(!fused &&
                      ResolveHeadLayout(heads, ops->device()) == HeadLayout::kSequenceMajor) {
  const int64_t n_inner = static_cast<int64_t>(max_batch) * max_seq * h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(max_batch) * h_ * max_seq * max_seq;
  qkv_ = AllocActivations(3 * n_inner);
  ctx_ = AllocActivations(n_inner);
  if (fused_) {
    lse_ = ops_->Alloc(static_cast<int64_t>(max_batch) * h_ * max_seq);
    return;
  }
  probs_ = AllocActivations(n_probs);
  if (keep_dropped_probs) dropped_ = AllocActivations(n_probs);
}

template <typename T, typename A>
A* FixedHeadAttention<T, A>::AllocActivations(int64_t n) {
  return static_cast<A*>(ops_->AllocBytes(sizeof(A) * static_cast<size_t>(n)));
}

template <typename T, typename A>
FixedHeadAttention<T, A>::~FixedHeadAttention() {
  for (void* p : {static_cast<void*>(qkv_), static_cast<void*>(ctx_), static_cast<void*>(probs_),
                  static_cast<void*>(dropped_), static_cast<void*>(lse_)}) {
    ops_->Free(p);
  }
}

template <typename T, typename A>
int64_t FixedHeadAttention<T, A>::ScratchBytes(int num_heads, int head_size, int max_batch,
                                               int max_seq, bool fused) {
  // Backward is the larger user: materialised, two [N, I] buffers and two [B, h, S, S]
  // buffers, or the [N, 3I] stage of the Q, K, V projection (forward and backward) when that is
  // larger; fused, dctx [N, I], dq, dk, dv [3, N, I] and delta [B, h, S]. Each
  // piece starts at a multiple of kTensorAlignment elements (Pieces).
  const int64_t n_inner = static_cast<int64_t>(max_batch) * max_seq * num_heads * head_size;
  const int64_t n_probs = static_cast<int64_t>(max_batch) * num_heads * max_seq * max_seq;
  const int64_t a = sizeof(A), t = sizeof(T);
  const Pieces at(n_inner, n_probs, a, t);
  if (fused) return at.delta + static_cast<int64_t>(max_batch) * num_heads * max_seq * t;
  return std::max(at.dropped + n_probs * a, 3 * n_inner * a);
}

template <typename T, typename A>
int64_t FixedHeadAttention<T, A>::KeptBytes() const {
  const int64_t n_inner = static_cast<int64_t>(max_batch_) * max_seq_ * h_ * dp_;
  const int64_t n_probs = static_cast<int64_t>(max_batch_) * h_ * max_seq_ * max_seq_;
  const int64_t a = sizeof(A), t = sizeof(T);
  if (fused_) return 4 * n_inner * a + static_cast<int64_t>(max_batch_) * h_ * max_seq_ * t;
  return (4 * n_inner + (dropped_ != nullptr ? 2 : 1) * n_probs) * a;
}

template <typename T, typename A>
typename FixedHeadAttention<T, A>::HeadMatrices FixedHeadAttention<T, A>::TokenMajor(A* p,
                                                                                     int ld) const {
  return {p, ld, static_cast<int64_t>(S_) * ld, dp_};
}

template <typename T, typename A>
typename FixedHeadAttention<T, A>::HeadMatrices FixedHeadAttention<T, A>::Split(A* p,
                                                                                int cols) const {
  const int64_t head = static_cast<int64_t>(S_) * cols;
  return {p, cols, h_ * head, head};
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::HeadGemm(Trans ta, Trans tb, int M, int N, int K,
                                        const HeadMatrices& a, const HeadMatrices& b,
                                        const HeadMatrices& c) {
  // Every operand's sequences h heads apart (split heads): one batch over all B*h.
  if (a.seq == h_ * a.head && b.seq == h_ * b.head && c.seq == h_ * c.head) {
    ops_->GemmStridedBatched(ta, tb, M, N, K, T(1), a.p, a.ld, a.head, b.p, b.ld, b.head, T(0), c.p,
                             c.ld, c.head, B_ * h_);
    return;
  }
  // Otherwise one batch per head over the sequences, or per sequence over the heads: the fewer.
  if (h_ <= B_) {
    for (int j = 0; j < h_; ++j) {
      ops_->GemmStridedBatched(ta, tb, M, N, K, T(1), a.p + j * a.head, a.ld, a.seq,
                               b.p + j * b.head, b.ld, b.seq, T(0), c.p + j * c.head, c.ld, c.seq,
                               B_);
    }
    return;
  }
  for (int s = 0; s < B_; ++s) {
    ops_->GemmStridedBatched(ta, tb, M, N, K, T(1), a.p + s * a.seq, a.ld, a.head, b.p + s * b.seq,
                             b.ld, b.head, T(0), c.p + s * c.seq, c.ld, c.head, h_);
  }
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::ProjectQkv(const AttentionParams<A>& p, const A* x, A* scratch) {
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
  if (sequence_major_) {  // [B, S, 3h, d_p] -> [B, 3h, S, d_p]
    ops_->Linear(x, p.wqkv, p.bqkv, N, 3 * I, d_, scratch);
    ops_->PermuteHeads(scratch, qkv_, B_, S_, 3 * h_, dp_, /*inverse=*/false);
    const int64_t head = static_cast<int64_t>(S_) * dp_;
    q_ = {qkv_, dp_, 3 * h_ * head, head};
    k_ = {qkv_ + h_ * head, dp_, 3 * h_ * head, head};
    v_ = {qkv_ + 2 * h_ * head, dp_, 3 * h_ * head, head};
    return;
  }
  // [N, 3I] -> [3, N, I] -> heads of the 3B sequences [3, B, h, S, d_p].
  ops_->Linear(x, p.wqkv, p.bqkv, N, 3 * I, d_, qkv_);
  ops_->PermuteHeads(qkv_, scratch, 1, N, 3, I, /*inverse=*/false);
  ops_->PermuteHeads(scratch, qkv_, 3 * B_, S_, h_, dp_, /*inverse=*/false);
  q_ = Split(qh_, dp_);
  k_ = Split(kh_, dp_);
  v_ = Split(vh_, dp_);
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::QkvBackward(const AttentionParams<A>& p, const AttentionGrads<T>& g,
                                           const A* x, const A* dqkv, T* dx) {
  const int N = B_ * S_, I = h_ * dp_;
  ops_->LinearBackwardWeights(dqkv, x, N, 3 * I, d_, g.wqkv, g.bqkv);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, d_, 3 * I, T(1), dqkv, 3 * I, p.wqkv, d_, T(1), dx, d_);
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::ForwardFused(const AttentionParams<A>& p, const int32_t* segments,
                                            A* out) {
  const int N = B_ * S_, I = h_ * dp_;
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->AttentionForward(qh_, kh_, vh_, B_, S_, h_, dp_, scale, segments, causal_, rate_, key_,
                         ctx_, lse_);
  ops_->Linear(ctx_, p.wo, p.bo, N, d_, I, out);
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::BackwardFused(const AttentionParams<A>& p,
                                             const AttentionGrads<T>& g, const A* x, const A* dout,
                                             T* dx, unsigned char* scratch) {
  const int N = B_ * S_, I = h_ * dp_;
  const int64_t n_inner = static_cast<int64_t>(N) * I;
  const Pieces at(n_inner, 0, sizeof(A), sizeof(T));
  A* dctx = reinterpret_cast<A*>(scratch);
  A* dq = reinterpret_cast<A*>(scratch + at.dq);
  A* dk = dq + n_inner;
  A* dv = dk + n_inner;
  T* delta = reinterpret_cast<T*>(scratch + at.delta);  // [B, h, S]
  ops_->LinearBackwardWeights(dout, ctx_, N, d_, I, g.wo, g.bo);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, I, d_, T(1), dout, d_, p.wo, I, T(0), dctx, I);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->AttentionBackward(qh_, kh_, vh_, ctx_, dctx, lse_, B_, S_, h_, dp_, scale, segments_,
                          causal_, rate_, key_, dq, dk, dv, delta);
  // dq, dk, dv [3, N, I] -> [N, 3I], into the kept q, k, v (no longer needed).
  ops_->PermuteHeads(dq, qkv_, 1, N, 3, I, /*inverse=*/true);
  QkvBackward(p, g, x, qkv_, dx);
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::Forward(const AttentionParams<A>& p, const A* x, int B, int S,
                                       const int32_t* segments, bool causal, float dropout_rate,
                                       const DropoutKey& key, A* out, void* scratch_bytes) {
  unsigned char* bytes = static_cast<unsigned char*>(scratch_bytes);
  A* scratch = reinterpret_cast<A*>(bytes);
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
  const Pieces at(static_cast<int64_t>(N) * I, n_probs, sizeof(A), sizeof(T));
  A* dropped = dropped_ != nullptr ? dropped_ : reinterpret_cast<A*>(bytes + at.dropped);

  // Scores Q K^T per head, written straight into probs and normalised in place.
  const HeadMatrices probs = Split(probs_, S);
  HeadGemm(Trans::kNo, Trans::kYes, S, S, dp_, q_, k_, probs);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->SoftmaxForward(probs_, probs_, B, h_, S, S, scale, segments, causal);

  HeadMatrices attend = probs;
  if (rate_ > 0) {
    ops_->Dropout(probs_, dropped, n_probs, rate_, key_);
    attend.p = dropped;
  }
  // Context per head: sequence-major, straight into [N, I]; qkv-major, into scratch as heads
  // (one batched product), then merged back to [N, I].
  if (sequence_major_) {
    HeadGemm(Trans::kNo, Trans::kNo, S, dp_, S, attend, v_, TokenMajor(ctx_, I));
  } else {
    HeadGemm(Trans::kNo, Trans::kNo, S, dp_, S, attend, v_, Split(scratch, dp_));
    ops_->PermuteHeads(scratch, ctx_, B, S, h_, dp_, /*inverse=*/true);
  }
  ops_->Linear(ctx_, p.wo, p.bo, N, d_, I, out);
}

template <typename T, typename A>
void FixedHeadAttention<T, A>::Backward(const AttentionParams<A>& p, const AttentionGrads<T>& g,
                                        const A* x, const A* dout, T* dx, void* scratch_bytes) {
  unsigned char* bytes = static_cast<unsigned char*>(scratch_bytes);
  if (fused_) {
    BackwardFused(p, g, x, dout, dx, bytes);
    return;
  }
  A* scratch = reinterpret_cast<A*>(bytes);
  const int B = B_, S = S_, N = B * S, I = h_ * dp_;
  const int64_t n_inner = static_cast<int64_t>(N) * I;
  const int64_t n_probs = static_cast<int64_t>(B) * h_ * S * S;
  const Pieces at(n_inner, n_probs, sizeof(A), sizeof(T));
  A* dprobs = reinterpret_cast<A*>(bytes + at.dprobs);    // [B, h, S, S]
  A* dropped = reinterpret_cast<A*>(bytes + at.dropped);  // [B, h, S, S] (unless kept)
  // d/d context [N, I] in buf_a, read in place (sequence-major) or split into heads in buf_b
  // (qkv-major); dq parked in buf_a (heads, [B, h, S, d_p]) while q is read; dk and dv over k
  // and v.
  A* buf_a = scratch;
  A* buf_b = reinterpret_cast<A*>(bytes + at.buf_b);
  const HeadMatrices dctx = sequence_major_ ? TokenMajor(buf_a, I) : Split(buf_b, dp_);

  // Output projection: dWo += dout^T ctx, dbo += colsum(dout), dctx = dout Wo.
  ops_->LinearBackwardWeights(dout, ctx_, N, d_, I, g.wo, g.bo);
  ops_->Gemm(Trans::kNo, Trans::kNo, N, I, d_, T(1), dout, d_, p.wo, I, T(0), buf_a, I);
  if (!sequence_major_) ops_->PermuteHeads(buf_a, buf_b, B, S, h_, dp_, /*inverse=*/false);

  // Through C = dropout(P) V: dP' = dC V^T, dV = dropout(P)^T dC (over V, no longer needed).
  HeadMatrices attend = Split(probs_, S);
  if (rate_ > 0 && dropped_ != nullptr) {
    attend.p = dropped_;
  } else if (rate_ > 0) {
    ops_->Dropout(probs_, dropped, n_probs, rate_, key_);
    attend.p = dropped;
  }
  const HeadMatrices ds = Split(dprobs, S);
  HeadGemm(Trans::kNo, Trans::kYes, S, S, dp_, dctx, v_, ds);
  HeadGemm(Trans::kYes, Trans::kNo, S, dp_, S, attend, dctx, v_);

  // Dropout and softmax backward, in place: dprobs becomes d loss / d (Q K^T).
  if (rate_ > 0) ops_->Dropout(dprobs, dprobs, n_probs, rate_, key_);
  const T scale = T(1) / std::sqrt(static_cast<T>(dp_));
  ops_->SoftmaxBackward(probs_, dprobs, dprobs, static_cast<int64_t>(B) * h_ * S, S, scale);

  // Scores S = Q K^T: dQ = dS K (parked in buf_a, d context being spent, while Q is read), then
  // dK = dS^T Q over K, and dQ over Q.
  HeadGemm(Trans::kNo, Trans::kNo, S, dp_, S, ds, k_, Split(buf_a, dp_));
  HeadGemm(Trans::kYes, Trans::kNo, S, dp_, S, ds, q_, k_);
  if (sequence_major_) {
    // dq, dk, dv [B, 3h, S, d_p] -> [N, 3I] in the scratch (buf_a is copied out first).
    const int64_t heads = static_cast<int64_t>(h_) * S * dp_;
    for (int b = 0; b < B; ++b) {
      ops_->CopyDevice(qkv_ + b * 3 * heads, buf_a + b * heads, sizeof(A) * heads);
    }
    ops_->PermuteHeads(qkv_, scratch, B, S, 3 * h_, dp_, /*inverse=*/true);
    QkvBackward(p, g, x, scratch, dx);
    return;
  }
  // Heads of dq, dk, dv merged into [3, N, I] (the scratch is free), then into [N, 3I] over the
  // kept q, k, v (no longer needed).
  ops_->CopyDevice(qh_, buf_a, sizeof(A) * static_cast<size_t>(n_inner));
  ops_->PermuteHeads(qkv_, scratch, 3 * B, S, h_, dp_, /*inverse=*/true);
  ops_->PermuteHeads(scratch, qkv_, 1, N, 3, I, /*inverse=*/true);
  QkvBackward(p, g, x, qkv_, dx);
}

template class FixedHeadAttention<float>;
template class FixedHeadAttention<double>;
template class FixedHeadAttention<float, Bf16>;

}  // namespace headroom
