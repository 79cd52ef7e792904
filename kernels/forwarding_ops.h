// ForwardingOps<T>: an Ops<T> that forwards every op to an inner Ops<T>, with hooks around each
// call, the base for wrappers that observe or disturb a backend without re-implementing it:
// ProfilingOps (kernels/profiling_ops.h) times each op; a failure-injecting wrapper can count
// calls and fail the Nth.
//
// The forwarded ops are written once, in the X-macro lists below (HEADROOM_OPS_MEMORY and
// HEADROOM_OPS_COMPUTE: return type, name, parameter list, argument list), from which the
// overrides are generated. Adding an op to Ops<T> (kernels/ops.h) means adding one line here:
// a pure virtual left out makes ForwardingOps abstract and every wrapper fails to compile; a
// virtual with a default body left out would silently run the default over the wrapper, so
// keep the lists in the order of ops.h and complete.
//
// Hook contract (for subclasses):
//   - BeforeOp(name) runs right before, and AfterOp(name) right after, the inner op, exactly
//     once each per forwarded call, with `name` the op's name as in ops.h ("Gemm", "AllocBytes",
//     a string literal that lives forever). Nothing else calls them.
//   - Every op of both lists is hooked: memory and transfers (AllocBytes, Free, CopyToDevice,
//     CopyToHost, CopyDevice, Synchronize, DeviceMemoryInUse) and every computation.
//     IsComputeOp(name) tells the two apart. The const queries device(), status(),
//     PrefersFusedAttention(), AttentionBackwardScratchBytes() and PeakAllocatedBytes() are
//     forwarded without hooks.
//   - The inner op always runs (a hook cannot skip it or change its arguments); on a device
//     backend it is enqueued, not finished, when AfterOp runs.
//   - Hooks may call the inner backend (inner()) directly, e.g. inner()->Synchronize(), which is
//     not hooked; calling this object's ops from a hook would recurse.
//   - A subclass may also override an op itself (to see its arguments, e.g. a GEMM's shape) and
//     call ForwardingOps<T>::Op(...) from it; the hooks then still run once.
//
// Example:
//   class CountingOps : public ForwardingOps<float> {
//    public:
//     using ForwardingOps<float>::ForwardingOps;
//     std::map<std::string, int> calls;
//    protected:
//     void BeforeOp(const char* name) override { ++calls[name]; }
//   };
//   CpuOps<float> cpu;
//   CountingOps ops(&cpu);
//   model = Model<float>::Create(config, &ops, limits).value();   // calls["Gemm"] counts GEMMs
#ifndef HEADROOM_KERNELS_FORWARDING_OPS_H_
#define HEADROOM_KERNELS_FORWARDING_OPS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/ops.h"

// X(return type, name, (parameters), (arguments)) for each op of Ops<T>, in ops.h's order. `T`
// is the element type of the Ops<T> being wrapped.
#define HEADROOM_OPS_MEMORY(X)                                                         \
  X(void*, AllocBytes, (size_t bytes), (bytes))                                        \
  X(void, Free, (void* p), (p))                                                        \
  X(void, CopyToDevice, (void* dst, const void* src, size_t bytes), (dst, src, bytes)) \
  X(void, CopyToHost, (void* dst, const void* src, size_t bytes), (dst, src, bytes))   \
  X(void, CopyDevice, (void* dst, const void* src, size_t bytes), (dst, src, bytes))   \
  X(void, Synchronize, (), ())                                                         \
  X(int64_t, DeviceMemoryInUse, (), ())

#define HEADROOM_OPS_COMPUTE(X)                                                                   \
  X(void, Fill, (T * x, int64_t n, T value), (x, n, value))                                       \
  X(void, Scale, (T * x, int64_t n, T alpha), (x, n, alpha))                                      \
  X(void, Add, (const T* a, const T* b, T* out, int64_t n), (a, b, out, n))                       \
  X(void, Axpy, (T alpha, const T* x, T* y, int64_t n), (alpha, x, y, n))                         \
  X(void, Gemm,                                                                                   \
    (Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,  \
     T beta, T* C, int ldc),                                                                      \
    (ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))                                       \
  X(void, GemmStridedBatched,                                                                     \
    (Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, int64_t stride_a,     \
     const T* B, int ldb, int64_t stride_b, T beta, T* C, int ldc, int64_t stride_c, int batch),  \
    (ta, tb, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch))  \
  X(void, Linear, (const T* x, const T* w, const T* bias, int rows, int out, int in, T* y),       \
    (x, w, bias, rows, out, in, y))                                                               \
  X(void, LinearBackwardWeights,                                                                  \
    (const T* dy, const T* x, int rows, int out, int in, T* dw, T* dbias),                        \
    (dy, x, rows, out, in, dw, dbias))                                                            \
  X(void, AddBias, (T * x, const T* bias, int64_t rows, int cols), (x, bias, rows, cols))         \
  X(void, BiasBackward, (const T* dy, int64_t rows, int cols, T* dbias), (dy, rows, cols, dbias)) \
  X(void, PermuteHeads, (const T* x, T* y, int B, int S, int H, int D, bool inverse),             \
    (x, y, B, S, H, D, inverse))                                                                  \
  X(void, LayerNormForward,                                                                       \
    (const T* x, const T* gamma, const T* beta, int64_t rows, int cols, T eps, T* y, T* mean,     \
     T* rstd),                                                                                    \
    (x, gamma, beta, rows, cols, eps, y, mean, rstd))                                             \
  X(void, LayerNormBackward,                                                                      \
    (const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, int64_t rows,         \
     int cols, T* dx, T* dgamma, T* dbeta),                                                       \
    (dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta))                                    \
  X(void, LayerNormInputFromOutput,                                                               \
    (const T* y, const T* gamma, const T* beta, const T* mean, const T* rstd, int64_t rows,       \
     int cols, T* x),                                                                             \
    (y, gamma, beta, mean, rstd, rows, cols, x))                                                  \
  X(void, ResidualLayerNormForward,                                                               \
    (const T* x, const T* sub, float rate, const DropoutKey& key, const T* gamma, const T* beta,  \
     int64_t rows, int cols, T eps, T* sum, T* y, T* mean, T* rstd),                              \
    (x, sub, rate, key, gamma, beta, rows, cols, eps, sum, y, mean, rstd))                        \
  X(void, ResidualLayerNormBackward,                                                              \
    (const T* dy, const T* sum, const T* gamma, const T* mean, const T* rstd, int64_t rows,       \
     int cols, float rate, const DropoutKey& key, T* dsum, T* dsub, T* dgamma, T* dbeta),         \
    (dy, sum, gamma, mean, rstd, rows, cols, rate, key, dsum, dsub, dgamma, dbeta))               \
  X(void, GeluForward, (const T* x, T* y, int64_t n), (x, y, n))                                  \
  X(void, GeluBackward, (const T* x, const T* dy, T* dx, int64_t n), (x, dy, dx, n))              \
  X(void, ActivationForward, (Activation act, const T* x, T* y, int64_t n), (act, x, y, n))       \
  X(void, ActivationBackward, (Activation act, const T* x, const T* dy, T* dx, int64_t n),        \
    (act, x, dy, dx, n))                                                                          \
  X(void, TanhForward, (const T* x, T* y, int64_t n), (x, y, n))                                  \
  X(void, TanhBackward, (const T* y, const T* dy, T* dx, int64_t n), (y, dy, dx, n))              \
  X(void, SoftmaxForward,                                                                         \
    (const T* scores, T* probs, int B, int H, int Sq, int Sk, T scale, const int32_t* segments,   \
     bool causal),                                                                                \
    (scores, probs, B, H, Sq, Sk, scale, segments, causal))                                       \
  X(void, SoftmaxBackward,                                                                        \
    (const T* probs, const T* dprobs, T* dscores, int64_t rows, int Sk, T scale),                 \
    (probs, dprobs, dscores, rows, Sk, scale))                                                    \
  X(void, AttentionForward,                                                                       \
    (const T* q, const T* k, const T* v, int B, int S, int H, int D, T scale,                     \
     const int32_t* segments, bool causal, float dropout_rate, const DropoutKey& key, T* out,     \
     T* lse),                                                                                     \
    (q, k, v, B, S, H, D, scale, segments, causal, dropout_rate, key, out, lse))                  \
  X(void, AttentionBackward,                                                                      \
    (const T* q, const T* k, const T* v, const T* out, const T* dout, const T* lse, int B, int S, \
     int H, int D, T scale, const int32_t* segments, bool causal, float dropout_rate,             \
     const DropoutKey& key, T* dq, T* dk, T* dv, T* delta),                                       \
    (q, k, v, out, dout, lse, B, S, H, D, scale, segments, causal, dropout_rate, key, dq, dk, dv, \
     delta))                                                                                      \
  X(void, Dropout, (const T* x, T* y, int64_t n, float rate, const DropoutKey& key),              \
    (x, y, n, rate, key))                                                                         \
  X(void, EmbeddingForward,                                                                       \
    (const int32_t* ids, const T* table, int64_t n, int d, T* out, bool accumulate),              \
    (ids, table, n, d, out, accumulate))                                                          \
  X(void, EmbeddingBackward, (const int32_t* ids, const T* dout, int64_t n, int d, T* dtable),    \
    (ids, dout, n, d, dtable))                                                                    \
  X(void, GatherRows, (const T* src, const int32_t* idx, int64_t m, int d, T* dst),               \
    (src, idx, m, d, dst))                                                                        \
  X(void, ScatterAddRows, (const T* src, const int32_t* idx, int64_t m, int d, T* dst),           \
    (src, idx, m, d, dst))                                                                        \
  X(void, SoftmaxCrossEntropy,                                                                    \
    (const T* logits, const int32_t* labels, const T* weights, int64_t rows, int V, T* losses,    \
     T* dlogits, T grad_scale),                                                                   \
    (logits, labels, weights, rows, V, losses, dlogits, grad_scale))                              \
  X(void, LabelSmoothedCrossEntropy,                                                              \
    (const T* logits, const int32_t* labels, const T* weights, int64_t rows, int V, int ld,       \
     T label_smoothing, T* losses, T* dlogits, T grad_scale),                                     \
    (logits, labels, weights, rows, V, ld, label_smoothing, losses, dlogits, grad_scale))         \
  X(void, Dot, (const T* a, const T* b, int64_t n, T* out), (a, b, n, out))                       \
  X(void, AdamW, (T * w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s),              \
    (w, g, m, v, n, s))                                                                           \
  X(void, Lamb, (T * w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch),   \
    (w, g, m, v, n, s, scratch))

namespace headroom {

// Whether `name` is one of HEADROOM_OPS_COMPUTE's ops (false for memory and transfers).
inline bool IsComputeOp(const char* name) {
#define HEADROOM_OPS_NAME_MATCHES(ret, op, params, args) \
  if (std::strcmp(name, #op) == 0) return true;
  HEADROOM_OPS_COMPUTE(HEADROOM_OPS_NAME_MATCHES)
#undef HEADROOM_OPS_NAME_MATCHES
  return false;
}

template <typename T>
class ForwardingOps : public Ops<T> {
 public:
  // `inner` (not owned) must outlive this object.
  explicit ForwardingOps(Ops<T>* inner) : inner_(inner) {}

  Ops<T>* inner() const { return inner_; }

  DeviceKind device() const override { return inner_->device(); }
  bool PrefersFusedAttention(int head_size) const override {
    return inner_->PrefersFusedAttention(head_size);
  }
  int64_t AttentionBackwardScratchBytes(int B, int S, int H, int D) const override {
    return inner_->AttentionBackwardScratchBytes(B, S, H, D);
  }
  int64_t PeakAllocatedBytes() const override { return inner_->PeakAllocatedBytes(); }
  absl::Status status() const override { return inner_->status(); }

#define HEADROOM_OPS_FORWARD(ret, op, params, args)             \
  ret op params override {                                      \
    return Call(#op, [&]() -> ret { return inner_->op args; }); \
  }
  HEADROOM_OPS_MEMORY(HEADROOM_OPS_FORWARD)
  HEADROOM_OPS_COMPUTE(HEADROOM_OPS_FORWARD)
#undef HEADROOM_OPS_FORWARD

 protected:
  // Around every forwarded op; see the contract at the top. The defaults do nothing.
  virtual void BeforeOp(const char* name) { (void)name; }
  virtual void AfterOp(const char* name) { (void)name; }

 private:
  template <typename F>
  auto Call(const char* name, F&& f) -> decltype(f()) {
    BeforeOp(name);
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      AfterOp(name);
    } else {
      auto result = f();
      AfterOp(name);
      return result;
    }
  }

  Ops<T>* inner_;
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_FORWARDING_OPS_H_
