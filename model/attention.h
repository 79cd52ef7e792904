// Fixed head size multi-head self-attention (Bhojanapalli et al. 2020), written once against
// Ops<T, A> (kernels/ops.h; kernels/mixed_ops.h): T is the parameters', gradients' and
// statistics' type, A the activations' (A = T, or bf16 with T = float: then q, k, v, the
// probabilities, the context, the input x and the output are bf16, the weights are read from the
// model's bf16 mirror, and dx, the residual stream's gradient, stays T).
//
// For x [B*S, d] (row b*S + s is token s of sequence b), with h heads of size d_p and
// I = h * d_p:
//
//   [Q K V] = x Wqkv^T + bqkv                               [B*S, 3I], one GEMM; Wqkv [3I, d]
//                                                          stacks Wq, Wk, Wv (each [I, d])
//   per head:  P = softmax(Q_h K_h^T / sqrt(d_p), masked)   [S, S]
//              C_h = dropout(P) V_h                         [S, d_p]
//   out = concat_h(C_h) Wo^T + bo                           [B*S, d], Wo is [d, I]
//
// Standard attention is d_p = d / h; any other d_p is the paper's fixed head size, and h need
// not divide d. Masking (kernels/ops.h): padded keys (segments[b*S + k] == 0), keys of another
// segment than the query's (a packed row of sentences) and, for the causal LM, keys after the
// query get probability exactly 0. The hidden dropout after `out` and the residual belong to
// the caller (the block in transformer.cc).
//
// Two paths compute the same function (tests/model check both against finite differences):
//  - materialised: per-head strided-batched GEMMs, the [S, S] probabilities of every head
//    written out by SoftmaxForward and kept for backward;
//  - fused: Ops::AttentionForward / AttentionBackward (flash-attention style) on token-major
//    q, k, v, keeping only one log-sum-exp per query.
// The constructor's `fused` picks one (the model asks Ops::PrefersFusedAttention: the GPU in
// bf16 mode uses the fused path, the CPU the materialised one).
//
// The materialised path splits the heads out of the projection's [B*S, 3I] output (row
// b*S + s holds q, k, v of token s, each h heads of d_p) in one of two layouts (HeadLayout,
// below; the same function, tests/model/transformer_test.cc compares them):
//  - kSequenceMajor (the CPU's): one PermuteHeads into [B, 3h, S, d_p] (per sequence the h
//    heads of q, then of k, then of v); the context is written straight into [B*S, I], and
//    backward reads d/d context there and merges d/d q, k, v back with one PermuteHeads. The
//    heads are not evenly spaced across sequences, so each product is one strided-batched GEMM
//    per head (over the B sequences) or per sequence (over the h heads), whichever is fewer:
//    free on a CPU, whose batched GEMM is a loop of products anyway. (Reading q, k, v in place
//    from [B*S, 3I] with row stride 3I instead, no permutes at all, made each product 7-35%
//    slower on the CPU than on dense [S, d_p] blocks, which ate what the permutes cost:
//    bench/RESULTS.md, 2026-12-06.)
//  - kQkvMajor (every other backend's): two PermuteHeads into [3, B, h, S, d_p], the context
//    merged back by one more, backward's d/d context split and d/d q, k, v merged by two, so
//    that each product is ONE strided-batched GEMM over all B*h heads: the fewest kernel
//    launches on a GPU.
// The fused path takes the projection's [B*S, 3I] output apart with one PermuteHeads into
// [3, B*S, I] (q, k, v each token-major), and puts dq, dk, dv back together the same way. Every
// path computes the weight and bias gradients and dx from one GEMM each over the fused [3I, d]
// weight.
//
// Memory. Each FixedHeadAttention owns the activations its backward needs, allocated once for
// (max_batch, max_seq) at construction, with N = B*S:
//   q, k, v  3 * N * I elements, one buffer: split into heads [B, 3h, S, d_p] or
//            [3, B, h, S, d_p] (materialised) or token-major [3, B*S, I] (fused); Backward
//            overwrites them with their gradients once it no longer needs them
//   probs    materialised only: softmax output before dropout [B, h, S, S], B * h * S * S
//            elements (by default dropout is recomputed from its Philox key in backward instead
//            of storing the mask; with keep_dropped_probs the dropped probabilities are kept
//            too, B * h * S * S more)
//   lse      fused only: log-sum-exp per query [B, h, S]
//   context  heads merged [B*S, I]             N * I elements
// The layer input x is the caller's and must be unchanged between Forward and Backward. The
// `scratch` workspace (ScratchElements) is only used during a call and may be shared by all
// layers.
//
// Example:
//   FixedHeadAttention<float> attn(ops, /*d_model=*/256, /*num_heads=*/8, /*head_size=*/128,
//                                  /*max_batch=*/32, /*max_seq=*/128);
//   attn.Forward(p, x, B, S, segments, /*causal=*/false, 0.1f, key, out, scratch);
//   attn.Backward(p, g, x, dout, dx, scratch);   // dx += d loss / d x
#ifndef HEADROOM_MODEL_ATTENTION_H_
#define HEADROOM_MODEL_ATTENTION_H_

#include <cstdint>
#include <type_traits>

#include "kernels/ops.h"

namespace headroom {

// Device pointers to one layer's attention parameters (views into the flat parameter buffer,
// shapes as model/parameter_layout.h: weights [out, in]). Q, K and V are one weight: rows
// [0, I) are Wq, [I, 2I) Wk and [2I, 3I) Wv, and likewise the bias. Weights and biases are read
// as A (the model's mirror of the parameters when A is not T): what the GEMMs and their bias
// epilogues read.
template <typename A>
struct AttentionParams {
  const A* wqkv = nullptr;  // [3I, d]
  const A* bqkv = nullptr;  // [3I]
  const A* wo = nullptr;    // [d, I]
  const A* bo = nullptr;    // [d]
};

// The matching gradient views (accumulated into, never overwritten).
template <typename T>
struct AttentionGrads {
  T* wqkv = nullptr;
  T* bqkv = nullptr;
  T* wo = nullptr;
  T* bo = nullptr;
};

// Where the materialised path puts the heads of q, k, v (see above). kAuto: kSequenceMajor on
// the CPU, kQkvMajor on any other backend (ResolveHeadLayout).
enum class HeadLayout { kAuto, kSequenceMajor, kQkvMajor };
HeadLayout ResolveHeadLayout(HeadLayout layout, DeviceKind device);

template <typename T, typename A = T>
class FixedHeadAttention {
 public:
  // `ops` must outlive this object. Allocates the kept activations for up to max_batch
  // sequences of max_seq tokens. keep_dropped_probs: also keep the probabilities after dropout
  // (another B*h*S*S elements) so Backward does not redraw the mask; worth it on the CPU, where
  // a Philox draw costs nanoseconds per element, not on a GPU, where it is almost free and
  // memory is the constraint.
  // fused: take the fused path (see above); keep_dropped_probs and heads are then ignored.
  // heads: the materialised path's head layout (kAuto: as the backend prefers).
  FixedHeadAttention(Ops<T, A>* ops, int d_model, int num_heads, int head_size, int max_batch,
                     int max_seq, bool keep_dropped_probs = false, bool fused = false,
                     HeadLayout heads = HeadLayout::kAuto);
  ~FixedHeadAttention();
  FixedHeadAttention(const FixedHeadAttention&) = delete;
  FixedHeadAttention& operator=(const FixedHeadAttention&) = delete;

  // Bytes of the scratch workspace Forward and Backward need for (max_batch, max_seq), in either
  // head layout: A pieces and (fused) the T log-sum-exp deltas, each starting at a multiple of
  // kTensorAlignment T elements. ScratchElements: the same in T elements (rounded up).
  static int64_t ScratchBytes(int num_heads, int head_size, int max_batch, int max_seq, bool fused);
  static int64_t ScratchElements(int num_heads, int head_size, int max_batch, int max_seq,
                                 bool fused) {
    return (ScratchBytes(num_heads, head_size, max_batch, max_seq, fused) + sizeof(T) - 1) /
           sizeof(T);
  }
  // Bytes this object keeps for backward (see the file comment); KeptElements in T elements
  // (exact when A is T).
  int64_t KeptBytes() const;
  int64_t KeptElements() const { return KeptBytes() / static_cast<int64_t>(sizeof(T)); }

  // out [B*S, d] (overwritten) = attention of x [B*S, d]. segments [B*S]: the segment id of
  // each token (0 = padding; BERT passes input_mask), or nullptr (one segment, no padding).
  // dropout_rate 0 turns attention dropout off; `key` names the dropout site.
  void Forward(const AttentionParams<A>& p, const A* x, int B, int S, const int32_t* segments,
               bool causal, float dropout_rate, const DropoutKey& key, A* out, void* scratch);

  // Given dout = d loss / d out [B*S, d] for the last Forward (same x), accumulates parameter
  // gradients into `g` and adds d loss / d x into dx [B*S, d] (dx += ...). dout is not modified.
  void Backward(const AttentionParams<A>& p, const AttentionGrads<T>& g, const A* x, const A* dout,
                T* dx, void* scratch);

  int inner() const { return h_ * dp_; }
  bool fused() const { return fused_; }
  // Whether the materialised path's heads are sequence-major (HeadLayout, resolved).
  bool sequence_major_heads() const { return sequence_major_; }

 private:
  // The matrices of all B*h (sequence b, head j) pairs of one operand: the one of (b, j) starts
  // at p + b * seq + j * head, its rows ld elements apart.
  struct HeadMatrices {
    A* p;
    int ld;
    int64_t seq, head;
  };
  // Heads as columns of a token-major [B*S, ld] tensor (head j: columns j*d_p .. j*d_p+d_p-1).
  HeadMatrices TokenMajor(A* p, int ld) const;
  // Heads split out, [B, h, S, cols] dense.
  HeadMatrices Split(A* p, int cols) const;
  // c = op(a) op(b) for each of the B*h pairs (M x N x K each, as Ops::Gemm): one
  // strided-batched GEMM when every operand's heads are evenly spaced across sequences, else
  // one per head or per sequence, whichever is fewer.
  void HeadGemm(Trans ta, Trans tb, int M, int N, int K, const HeadMatrices& a,
                const HeadMatrices& b, const HeadMatrices& c);
  void ForwardFused(const AttentionParams<A>& p, const int32_t* segments, A* out);
  void BackwardFused(const AttentionParams<A>& p, const AttentionGrads<T>& g, const A* x,
                     const A* dout, T* dx, unsigned char* scratch);
  // q, k, v (in qkv_: the views q_, k_, v_, and qh_, kh_, vh_) from the one projection
  // x Wqkv^T + bqkv [N, 3I]. scratch: 3 * N * I elements.
  void ProjectQkv(const AttentionParams<A>& p, const A* x, A* scratch);
  // From d/d q, k, v as dqkv [N, 3I]: dWqkv += dqkv^T x, dbqkv += colsum(dqkv) and
  // dx += dqkv Wqkv.
  void QkvBackward(const AttentionParams<A>& p, const AttentionGrads<T>& g, const A* x,
                   const A* dqkv, T* dx);
  A* AllocActivations(int64_t n);

  Ops<T, A>* ops_;
  int d_, h_, dp_;
  int max_batch_, max_seq_;
  bool fused_;
  bool sequence_major_;  // materialised path, HeadLayout::kSequenceMajor
  // Kept activations.
  A* qkv_ = nullptr;              // q, k, v: [B, 3h, S, d_p], [3, B, h, S, d_p] or [3, B*S, I]
  A* qh_ = nullptr;               // [B, h, S, d_p] (kQkvMajor) or [B*S, I] (fused)
  A* kh_ = nullptr;               // likewise
  A* vh_ = nullptr;               // likewise
  A* probs_ = nullptr;            // [B, h, S, S] (materialised)
  T* lse_ = nullptr;              // [B, h, S] (fused)
  A* dropped_ = nullptr;          // [B, h, S, S] probs after dropout, when keep_dropped_probs
  A* ctx_ = nullptr;              // [B*S, I]
  HeadMatrices q_{}, k_{}, v_{};  // the materialised path's views of q, k, v in qkv_
  // Shape, mask and dropout of the last Forward, replayed by Backward.
  int B_ = 0, S_ = 0;
  const int32_t* segments_ = nullptr;
  bool causal_ = false;
  float rate_ = 0;
  DropoutKey key_;
};

extern template class FixedHeadAttention<float>;
extern template class FixedHeadAttention<double>;

}  // namespace headroom

#endif  // HEADROOM_MODEL_ATTENTION_H_
