// CpuOps<T>: the CPU backend of the op set (kernels/ops.h), for T = float and T = double.
//
// Buffers are ordinary host memory (64-byte aligned, zero-initialised); every op runs
// synchronously on the calling thread plus this object's thread pool, so Synchronize is a no-op
// and CopyToHost is a memcpy. Matrix products go to OpenBLAS (cblas_sgemm / cblas_dgemm, which
// thread themselves); everything else is plain loops, threaded with ThreadPool::ParallelFor where
// the work is large enough to pay for the hand-off. Reductions (LayerNorm statistics, softmax
// sums, cross-entropy, Dot, optimizer norms) accumulate in double for both T, so CpuOps<float>
// is the accurate twin the CUDA backend is tested against and CpuOps<double> is exact enough for
// finite-difference gradient checks.
//
// Every op with parameter-gradient outputs (BiasBackward, LayerNormBackward, EmbeddingBackward,
// ScatterAddRows) is deterministic: each output element is summed by one thread in a fixed order
// (increasing row index), independent of the thread count.
//
// The implementations live one kernel family per file (memory.cc, elementwise.cc, gemm.cc,
// permute.cc, layernorm.cc, activation.cc, softmax.cc, attention.cc, dropout.cc, embedding.cc,
// cross_entropy.cc, reduce.cc, optimizer.cc).
//
// Example:
//   CpuOps<double> ops;                      // for a gradient check
//   double* x = ops.Alloc(n);
//   ops.GeluForward(x, x, n);
//   ops.Free(x);
#ifndef HEADROOM_KERNELS_CPU_CPU_OPS_H_
#define HEADROOM_KERNELS_CPU_CPU_OPS_H_

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/ops.h"

namespace headroom {

template <typename T>
class CpuOps final : public Ops<T> {
 public:
  // num_threads <= 0: ThreadPool::DefaultThreads() (HEADROOM_CPU_THREADS or all cores).
  explicit CpuOps(int num_threads = 0);
  ~CpuOps() override;

  DeviceKind device() const override { return DeviceKind::kCpu; }
  // OK unless an allocation failed (the first failure, e.g. "cannot allocate 12000000000 bytes
  // of host memory (...)"; ResourceExhausted). After one, every AllocBytes returns nullptr.
  absl::Status status() const override { return status_; }
  ThreadPool& pool() { return pool_; }

  void* AllocBytes(size_t bytes) override;
  void Free(void* p) override;
  void CopyToDevice(void* dst, const void* src, size_t bytes) override;
  void CopyToHost(void* dst, const void* src, size_t bytes) override;
  void CopyDevice(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override {}

  void Fill(T* x, int64_t n, T value) override;
  void Scale(T* x, int64_t n, T alpha) override;
  void Add(const T* a, const T* b, T* out, int64_t n) override;
  void Axpy(T alpha, const T* x, T* y, int64_t n) override;

  void Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
            int ldb, T beta, T* C, int ldc) override;
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                          int64_t stride_a, const T* B, int ldb, int64_t stride_b, T beta, T* C,
                          int ldc, int64_t stride_c, int batch) override;
  void AddBias(T* x, const T* bias, int64_t rows, int cols) override;
  void BiasBackward(const T* dy, int64_t rows, int cols, T* dbias) override;
  void PermuteHeads(const T* x, T* y, int B, int S, int H, int D, bool inverse) override;

  void LayerNormForward(const T* x, const T* gamma, const T* beta, int64_t rows, int cols, T eps,
                        T* y, T* mean, T* rstd) override;
  void LayerNormBackward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd,
                         int64_t rows, int cols, T* dx, T* dgamma, T* dbeta) override;
  void LayerNormInputFromOutput(const T* y, const T* gamma, const T* beta, const T* mean,
                                const T* rstd, int64_t rows, int cols, T* x) override;
  void GeluForward(const T* x, T* y, int64_t n) override;
  void GeluBackward(const T* x, const T* dy, T* dx, int64_t n) override;
  void ActivationForward(Activation act, const T* x, T* y, int64_t n) override;
  void ActivationBackward(Activation act, const T* x, const T* dy, T* dx, int64_t n) override;
  void TanhForward(const T* x, T* y, int64_t n) override;
  void TanhBackward(const T* y, const T* dy, T* dx, int64_t n) override;

  void SoftmaxForward(const T* scores, T* probs, int B, int H, int Sq, int Sk, T scale,
                      const int32_t* segments, bool causal) override;
  void SoftmaxBackward(const T* probs, const T* dprobs, T* dscores, int64_t rows, int Sk,
                       T scale) override;

  void AttentionForward(const T* q, const T* k, const T* v, int B, int S, int H, int D, T scale,
                        const int32_t* segments, bool causal, float dropout_rate,
                        const DropoutKey& key, T* out, T* lse) override;
  void AttentionBackward(const T* q, const T* k, const T* v, const T* out, const T* dout,
                         const T* lse, int B, int S, int H, int D, T scale, const int32_t* segments,
                         bool causal, float dropout_rate, const DropoutKey& key, T* dq, T* dk,
                         T* dv, T* delta) override;

  void Dropout(const T* x, T* y, int64_t n, float rate, const DropoutKey& key) override;

  void EmbeddingForward(const int32_t* ids, const T* table, int64_t n, int d, T* out,
                        bool accumulate) override;
  void EmbeddingBackward(const int32_t* ids, const T* dout, int64_t n, int d, T* dtable) override;
  void GatherRows(const T* src, const int32_t* idx, int64_t m, int d, T* dst) override;
  void ScatterAddRows(const T* src, const int32_t* idx, int64_t m, int d, T* dst) override;

  void SoftmaxCrossEntropy(const T* logits, const int32_t* labels, const T* weights, int64_t rows,
                           int V, T* losses, T* dlogits, T grad_scale) override;
  void LabelSmoothedCrossEntropy(const T* logits, const int32_t* labels, const T* weights,
                                 int64_t rows, int V, int ld, T label_smoothing, T* losses,
                                 T* dlogits, T grad_scale) override;

  void Dot(const T* a, const T* b, int64_t n, T* out) override;

  void AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s) override;
  void Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch) override;

 private:
  ThreadPool pool_;
  absl::Status status_;  // the first failure (an allocation)
};

extern template class CpuOps<float>;
extern template class CpuOps<double>;

}  // namespace headroom

#endif  // HEADROOM_KERNELS_CPU_CPU_OPS_H_
