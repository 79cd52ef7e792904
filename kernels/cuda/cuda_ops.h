// CudaOps: the CUDA backend of the op set (kernels/ops.h) for float, on one GPU.
//
// A CudaOps object owns one CUDA stream, a cuBLASLt handle (and a classic cuBLAS handle for
// the rare shape cuBLASLt has no algorithm for), a GEMM workspace, small fixed scratch
// buffers and a pinned staging ring, all made in Create(). Every op is enqueued on the stream
// in call order and returns at once; CopyToHost and Synchronize wait, and so does CopyToDevice
// of more than the staging ring holds (8 MiB: parameters, not a step's batch). Pointers are device
// pointers from Alloc/AllocInt (zero-initialised cudaMalloc memory).
//
// Matrix products run in the precision set by set_gemm_precision (default kFp32, exact fp32;
// kTf32 and kBf16 use tensor cores with fp32 accumulation, see kernels/cuda/gemm.h); Linear and
// LinearBackwardWeights fold the bias and its gradient into cuBLASLt's epilogues. The fused
// attention (attention.cu) multiplies in bf16 in every mode, so the model uses it in kBf16 only,
// up to head size 128 (PrefersFusedAttention). All other ops compute in fp32 with deterministic
// (atomic-free, fixed-order) reductions.
//
// Memory: nothing is allocated inside an op except the first time a larger row scatter-add
// (EmbeddingBackward, ScatterAddRows) needs more sort scratch than any before it; from the
// second training step on, a step allocates nothing (scratch_growths() stops changing).
//
// Errors: ops return void, so a failing CUDA or cuBLAS call is recorded (the first one is kept
// and printed to stderr) and status() reports it; see kernels/cuda/cuda_check.h. Asynchronous
// kernel faults surface at the next synchronising call; with CudaOpsOptions::sync_after_each_op
// (or HEADROOM_CUDA_SYNC=1) every op synchronises, so the failing op is named.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::unique_ptr<CudaOps> ops, CudaOps::Create());
//   ops->set_gemm_precision(CudaOps::GemmPrecision::kBf16);
//   float* x = ops->Alloc(n);
//   ops->CopyToDevice(x, host.data(), n * sizeof(float));
//   ops->GeluForward(x, x, n);
//   ops->CopyToHost(host.data(), x, n * sizeof(float));
//   HR_RETURN_IF_ERROR(ops->status());
#ifndef HEADROOM_KERNELS_CUDA_CUDA_OPS_H_
#define HEADROOM_KERNELS_CUDA_CUDA_OPS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/bf16.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/staging.h"
#include "kernels/mixed_ops.h"
#include "kernels/ops.h"

namespace headroom {

struct CudaOpsOptions {
  int device = 0;
  cuda::GemmPrecision gemm_precision = cuda::GemmPrecision::kFp32;
  size_t gemm_workspace_bytes = size_t{32} << 20;  // cuBLASLt's recommendation for Hopper
  bool abort_on_error = false;                     // abort the process at the first CUDA error
  bool sync_after_each_op = false;         // synchronise after every op (debugging, sanitizer runs)
  size_t staging_bytes = size_t{8} << 20;  // pinned ring for asynchronous uploads (staging.h)
  bool clear_gemm_output = false;  // zero C before beta == 0 products (cuBLAS does not read it)

  // Defaults overridden by the environment: HEADROOM_CUDA_SYNC=1, HEADROOM_CUDA_ABORT_ON_ERROR=1,
  // HEADROOM_CUDA_CLEAR_GEMM_OUTPUT=1, HEADROOM_CUDA_GEMM_PRECISION=fp32|tf32|bf16. InvalidArgument
  // for an unknown precision.
  [[nodiscard]] static absl::StatusOr<CudaOpsOptions> FromEnvironment();
};

// "fp32", "tf32" or "bf16" (the config's `precision` values map here: fp32 -> kFp32,
// bf16 -> kBf16). InvalidArgument otherwise, naming the accepted values.
[[nodiscard]] absl::StatusOr<cuda::GemmPrecision> ParseGemmPrecision(absl::string_view name);

class CudaOps final : public Ops<float, Bf16> {
 public:
  using GemmPrecision = cuda::GemmPrecision;

  // CudaDeviceStatus()'s error when there is no usable GPU (cuda_backend.h);
  // Internal when creating the stream, handles or buffers fails.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CudaOps>> Create(
      const CudaOpsOptions& options = {});
  ~CudaOps() override;

  DeviceKind device() const override { return DeviceKind::kCuda; }

  // OK, or the first CUDA/cuBLAS failure since construction ("<call> failed: <error>
  // (<file>:<line>)"). Does not synchronise: call Synchronize() first to include faults of
  // work still in flight.
  [[nodiscard]] absl::Status status() const override;

  // The stream every op is enqueued on (for communicators that must order after the ops).
  cudaStream_t stream() const { return stream_; }

  GemmPrecision gemm_precision() const { return gemm_precision_; }
  void set_gemm_precision(GemmPrecision p) { gemm_precision_ = p; }

  // Growths of the on-demand scratch so far (constant once every shape has been seen).
  int scratch_growths() const { return scratch_.growths(); }
  // GEMMs served by the classic-cuBLAS fallback (cuBLASLt had no algorithm).
  int64_t gemm_fallback_calls() const { return gemm_->fallback_calls(); }
  // bf16 tensor-core GEMM rate of this GPU, measured (cuda::MeasureBf16GemmFlops) with three
  // n x n bf16 matrices of its own; 0 when they do not fit in the free memory or a call fails
  // (recorded apart: status() is not affected).
  double MeasureBf16GemmFlops(int n = 8192, int reps = 5);
  int64_t PeakAllocatedBytes() const override { return peak_allocated_; }
  // Staging-ring slices reused after waiting for their own transfer (staging.h).
  int staging_slice_reuses() const { return staging_.slice_reuses(); }

  void* AllocBytes(size_t bytes) override;
  void Free(void* p) override;
  void CopyToDevice(void* dst, const void* src, size_t bytes) override;
  void CopyToHost(void* dst, const void* src, size_t bytes) override;
  void CopyDevice(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override;
  int64_t DeviceMemoryInUse() override;

  void Fill(float* x, int64_t n, float value) override;
  void Scale(float* x, int64_t n, float alpha) override;
  void Add(const float* a, const float* b, float* out, int64_t n) override;
  void Axpy(float alpha, const float* x, float* y, int64_t n) override;

  void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A,
                          int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch) override;
  void Linear(const float* x, const float* w, const float* bias, int rows, int out, int in,
              float* y) override;
  void LinearBackwardWeights(const float* dy, const float* x, int rows, int out, int in, float* dw,
                             float* dbias) override;
  void AddBias(float* x, const float* bias, int64_t rows, int cols) override;
  void BiasBackward(const float* dy, int64_t rows, int cols, float* dbias) override;
  void PermuteHeads(const float* x, float* y, int B, int S, int H, int D, bool inverse) override;

  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int cols, float eps, float* y, float* mean, float* rstd) override;
  void LayerNormBackward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int cols, float* dx, float* dgamma,
                         float* dbeta) override;
  void LayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                const float* mean, const float* rstd, int64_t rows, int cols,
                                float* x) override;
  void ResidualLayerNormForward(const float* x, const float* sub, float rate, const DropoutKey& key,
                                const float* gamma, const float* beta, int64_t rows, int cols,
                                float eps, float* sum, float* y, float* mean, float* rstd) override;
  void ResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                 const float* mean, const float* rstd, int64_t rows, int cols,
                                 float rate, const DropoutKey& key, float* dsum, float* dsub,
                                 float* dgamma, float* dbeta) override;
  void GeluForward(const float* x, float* y, int64_t n) override;
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override;
  void ActivationForward(Activation act, const float* x, float* y, int64_t n) override;
  void ActivationBackward(Activation act, const float* x, const float* dy, float* dx,
                          int64_t n) override;
  void TanhForward(const float* x, float* y, int64_t n) override;
  void TanhBackward(const float* y, const float* dy, float* dx, int64_t n) override;

  void SoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk, float scale,
                      const int32_t* segments, bool causal) override;
  void SoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                       int Sk, float scale) override;

  // Fused attention: bf16 tensor-core kernels (kernels/cuda/attention.cu) for head sizes 16,
  // 32, 64, 128 and 256; another head size records an error.
  void AttentionForward(const float* q, const float* k, const float* v, int B, int S, int H, int D,
                        float scale, const int32_t* segments, bool causal, float dropout_rate,
                        const DropoutKey& key, float* out, float* lse) override;
  void AttentionBackward(const float* q, const float* k, const float* v, const float* out,
                         const float* dout, const float* lse, int B, int S, int H, int D,
                         float scale, const int32_t* segments, bool causal, float dropout_rate,
                         const DropoutKey& key, float* dq, float* dk, float* dv,
                         float* delta) override;
  bool PrefersFusedAttention(int head_size) const override;
  // The stored dS of the backward's dQ pass (cuda::AttentionStoredDsBytes).
  int64_t AttentionBackwardScratchBytes(int B, int S, int H, int D) const override {
    return cuda::AttentionStoredDsBytes(B, S, H, D);
  }

  void Dropout(const float* x, float* y, int64_t n, float rate, const DropoutKey& key) override;

  void EmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                        bool accumulate) override;
  void EmbeddingBackward(const int32_t* ids, const float* dout, int64_t n, int d,
                         float* dtable) override;
  void GatherRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) override;
  void ScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) override;

  void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                           int64_t rows, int V, float* losses, float* dlogits,
                           float grad_scale) override;
  void LabelSmoothedCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                                 int64_t rows, int V, int ld, float label_smoothing, float* losses,
                                 float* dlogits, float grad_scale) override;

  void Dot(const float* a, const float* b, int64_t n, float* out) override;

  void AdamW(float* w, const float* g, float* m, float* v, int64_t n,
             const OptimizerStep& s) override;
  void Lamb(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
            float* scratch) override;

  // ---- bf16 activations (Ops<float, Bf16>, kernels/mixed_ops.h; cuda_bf16_ops.cc) -------------
  // The bf16 launchers of kernels/cuda/launch.h; GEMMs read bf16 operands with fp32 accumulation
  // (CUBLAS_COMPUTE_32F) and write bf16 or fp32. Unlike CpuBf16Ops' default, a T output is never
  // rounded (the residual stream's gradient stays fp32: CpuBf16Ops with kFp32 stores is its twin).
  // Not yet run on a GPU.
  using Base::ActivationBackward;
  using Base::ActivationForward;
  using A = Bf16;

  void Convert(const float* src, A* dst, int64_t n) override;
  void Convert(const A* src, float* dst, int64_t n) override;
  void Scale(A* x, int64_t n, float alpha) override;
  void Add(const float* a, const A* b, float* out, int64_t n) override;
  void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const A* a, int lda, const A* b,
            int ldb, float beta, A* c, int ldc) override;
  void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const A* a, int lda, const A* b,
            int ldb, float beta, float* c, int ldc) override;
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha, const A* a, int lda,
                          int64_t stride_a, const A* b, int ldb, int64_t stride_b, float beta, A* c,
                          int ldc, int64_t stride_c, int batch) override;
  void Linear(const A* x, const A* w, const A* bias, int rows, int out, int in, A* y) override;
  void LinearBackwardWeights(const A* dy, const A* x, int rows, int out, int in, float* dw,
                             float* dbias) override;
  void PermuteHeads(const A* x, A* y, int B, int S, int H, int D, bool inverse) override;
  void LayerNormForward(const A* x, const float* gamma, const float* beta, int64_t rows, int cols,
                        float eps, A* y, float* mean, float* rstd) override;
  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int cols, float eps, A* y, float* mean, float* rstd) override;
  void LayerNormBackward(const A* dy, const A* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int cols, A* dx, float* dgamma,
                         float* dbeta) override;
  void LayerNormBackward(const A* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int cols, A* dx, float* dgamma,
                         float* dbeta) override;
  void LayerNormInputFromOutput(const A* y, const float* gamma, const float* beta,
                                const float* mean, const float* rstd, int64_t rows, int cols,
                                float* x) override;
  void ResidualLayerNormForward(const A* x, const A* sub, float rate, const DropoutKey& key,
                                const float* gamma, const float* beta, int64_t rows, int cols,
                                float eps, float* sum, A* y, float* mean, float* rstd) override;
  void ResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                 const float* mean, const float* rstd, int64_t rows, int cols,
                                 float rate, const DropoutKey& key, float* dsum, A* dsub,
                                 float* dgamma, float* dbeta) override;
  void ActivationForward(Activation act, const A* x, A* y, int64_t n) override;
  void ActivationBackward(Activation act, const A* x, const A* dy, A* dx, int64_t n) override;
  void TanhForward(const A* x, A* y, int64_t n) override;
  void TanhBackward(const A* y, const A* dy, A* dx, int64_t n) override;
  void SoftmaxForward(const A* scores, A* probs, int B, int H, int Sq, int Sk, float scale,
                      const int32_t* segments, bool causal) override;
  void SoftmaxBackward(const A* probs, const A* dprobs, A* dscores, int64_t rows, int Sk,
                       float scale) override;
  void AttentionForward(const A* q, const A* k, const A* v, int B, int S, int H, int D, float scale,
                        const int32_t* segments, bool causal, float dropout_rate,
                        const DropoutKey& key, A* out, float* lse) override;
  void AttentionBackward(const A* q, const A* k, const A* v, const A* out, const A* dout,
                         const float* lse, int B, int S, int H, int D, float scale,
                         const int32_t* segments, bool causal, float dropout_rate,
                         const DropoutKey& key, A* dq, A* dk, A* dv, float* delta) override;
  void Dropout(const A* x, A* y, int64_t n, float rate, const DropoutKey& key) override;
  void Dropout(const float* x, A* y, int64_t n, float rate, const DropoutKey& key) override;
  void GatherRows(const A* src, const int32_t* idx, int64_t m, int d, A* dst) override;
  void ScatterAddRows(const A* src, const int32_t* idx, int64_t m, int d, float* dst) override;
  void SoftmaxCrossEntropy(const A* logits, const int32_t* labels, const float* weights,
                           int64_t rows, int V, float* losses, A* dlogits,
                           float grad_scale) override;
  void LabelSmoothedCrossEntropy(const A* logits, const int32_t* labels, const float* weights,
                                 int64_t rows, int V, int ld, float label_smoothing, float* losses,
                                 A* dlogits, float grad_scale) override;
  void EmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                                 const int32_t* positions, const float* pos_table,
                                 const int32_t* segments, const float* type_table, int64_t rows,
                                 int cols, const float* gamma, const float* beta, float eps,
                                 float rate, const DropoutKey& key, float* sum, A* y, float* mean,
                                 float* rstd) override;
  void AdamW(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
             A* mirror) override;
  void Lamb(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
            float* scratch, A* mirror) override;

 private:
  // A bf16-operand GEMM (fp32 accumulation) into C of c_type.
  void RunBf16Gemm(cuda::GemmCall call, const char* op);
  // LinearBackwardWeights' product dw += dy^T x (operands of `type`) in `precision`, with dbias
  // += the column sums of dy from the GEMM's epilogue where an algorithm offers it: whether it
  // did (when not, and dbias is set, the caller sums the columns itself).
  bool WeightGradient(const void* dy, const void* x, cudaDataType_t type, int rows, int out, int in,
                      float* dw, float* dbias, GemmPrecision precision);
  explicit CudaOps(const CudaOpsOptions& options);
  // Creates the stream, the GEMM runner and the fixed buffers.
  absl::Status Init();
  cuda::LaunchContext ctx() { return {stream_, &err_}; }
  // With sync_after_each_op, waits for `op` and records a fault under its name.
  void AfterOp(const char* op);

  CudaOpsOptions options_;
  GemmPrecision gemm_precision_;
  cuda::ErrorSink err_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::GemmRunner> gemm_;
  float* partials_ = nullptr;        // kDotMaxBlocks floats (Dot, LAMB)
  float* norms_ = nullptr;           // 2 floats (LAMB)
  float* colsum_scratch_ = nullptr;  // kColumnSumScratchFloats floats
  cuda::DeviceScratch scratch_;      // the row scatter-add's sort, the attention backward's dS
  cuda::PinnedStagingRing staging_;  // asynchronous CopyToDevice of small buffers
  // Live AllocBytes allocations (rounded sizes), their total and its maximum so far.
  std::unordered_map<void*, size_t> allocation_bytes_;
  int64_t allocated_ = 0;
  int64_t peak_allocated_ = 0;
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_CUDA_CUDA_OPS_H_
