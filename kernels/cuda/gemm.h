// GemmRunner: row-major (strided-batched) fp32 GEMMs on cuBLASLt, in three precisions.
//
// The matrices are fp32 in memory in every mode; the precision selects the cuBLAS compute type:
//   kFp32  CUBLAS_COMPUTE_32F            exact fp32 FMA, no TF32: the parity-test mode.
//   kTf32  CUBLAS_COMPUTE_32F_FAST_TF32  tensor cores on TF32-rounded inputs, fp32 accumulation.
//   kBf16  CUBLAS_COMPUTE_32F_FAST_16BF  tensor cores on bf16-rounded inputs, fp32 accumulation
//                                        (the library converts the operands; no scratch copies).
// The element types are the call's (GemmCall::ab_type, c_type; fp32 by default, bf16 for a
// bf16 activation path): pointer alignment is computed from each operand's element size, and
// plans (descriptors, layouts and the heuristic's algorithm) are cached per shape, strides,
// pointer alignment, data types and precision, so a training step costs no heuristic queries
// after the first. Where cuBLASLt's heuristic offers no algorithm, the call falls back to classic
// cuBLAS (cublasGemmStridedBatchedEx, same compute type).
//
// This header is plain C++ without Abseil (gemm.cu includes it).
#ifndef HEADROOM_KERNELS_CUDA_GEMM_H_
#define HEADROOM_KERNELS_CUDA_GEMM_H_

#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "kernels/cuda/launch.h"

namespace headroom::cuda {

enum class GemmPrecision { kFp32, kTf32, kBf16 };

// "fp32", "tf32", "bf16".
const char* GemmPrecisionName(GemmPrecision p);

// One row-major GEMM batch: C_i = alpha * op(A_i) * op(B_i) + beta * C_i, i < batch, with
// X_i = X + i * stride_x (kernels/ops.h, Ops::GemmStridedBatched).
// A, B and C hold elements of ab_type (A and B) and c_type (C); ld and strides count elements.
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  float alpha = 1;
  const void* A = nullptr;
  int lda = 0;
  int64_t stride_a = 0;
  const void* B = nullptr;
  int ldb = 0;
  int64_t stride_b = 0;
  float beta = 0;
  void* C = nullptr;
  int ldc = 0;
  int64_t stride_c = 0;
  int batch = 1;
  // When set (batch 1, beta 0, ldc == N only): C += bias broadcast over rows, bias [N] of C's
  // element type (cuBLASLt's rule for the bias epilogue). With an fp32 C, added in cuBLASLt's
  // epilogue (CUBLASLT_EPILOGUE_BIAS) when the bias is 16-byte aligned and an algorithm takes
  // it, else by a separate kernel after the product. With a bf16 C, the product plus the widened
  // bias in fp32, rounded once: in the epilogue, or where no algorithm takes it through an fp32
  // copy of C (RunWithWideBias).
  const void* bias = nullptr;
  // When set (batch 1, trans_a only): a_sums[m] = sum_k op(A)[m, k], length M, OVERWRITTEN, in
  // cuBLASLt's epilogue (CUBLASLT_EPILOGUE_BGRADB: the bias gradient of a linear layer comes
  // with its weight gradient dW = dY^T X, from the same read of dY). Run reports whether the
  // epilogue did it; when not, a_sums is untouched and the caller computes the sums itself.
  float* a_sums = nullptr;
  // Element types: CUDA_R_32F or CUDA_R_16BF for A and B; C is CUDA_R_32F, or CUDA_R_16BF
  // without zero-size scaling or clearing (those kernels are fp32) and with a bias only where
  // the epilogue adds it.
  cudaDataType_t ab_type = CUDA_R_32F;
  cudaDataType_t c_type = CUDA_R_32F;
};

// The call of a (strided-batched) product as Ops::GemmStridedBatched states it: C_i = alpha *
// op(A_i) op(B_i) + beta * C_i, fp32 elements (the caller sets ab_type and c_type otherwise).
GemmCall StridedBatchedCall(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                            const void* A, int lda, int64_t stride_a, const void* B, int ldb,
                            int64_t stride_b, float beta, void* C, int ldc, int64_t stride_c,
                            int batch);

// Bytes per element of `type` (4 for CUDA_R_32F, 2 for CUDA_R_16BF and CUDA_R_16F, 8 for
// CUDA_R_64F; 0 for a type GemmRunner does not take).
size_t ElementBytes(cudaDataType_t type);

// FLOP/s of the best of `reps` n x n x n products with bf16 operands and output and fp32
// accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F) on ctx.stream: the tensor-core peak that
// bf16 training reaches at best, measured rather than quoted, for MFU. Allocates and frees its
// own buffers; 0 after recording an error.
double MeasureBf16GemmFlops(int n, int reps, const LaunchContext& ctx);

class GemmRunner {
 public:
  GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;
  ~GemmRunner();

  // Creates the cuBLASLt and cuBLAS handles (bound to ctx.stream) and a workspace of
  // `workspace_bytes`. False, with the failure in ctx.err, if any of it fails.
  bool Init(size_t workspace_bytes, const LaunchContext& ctx);

  // Enqueues `call` on ctx.stream. Semantics as CpuOps: M or N or batch == 0 does nothing;
  // K == 0 or alpha == 0 scales C by beta; beta == 0 never reads C (NaN in C does not leak).
  // Returns whether call.a_sums was written (false when not asked for).
  bool Run(const GemmCall& call, GemmPrecision precision, const LaunchContext& ctx);

  // Clear C before a beta == 0 product (off by default: cuBLAS does not read C then).
  void set_clear_before_overwrite(bool clear) { clear_before_overwrite_ = clear; }

  // Cached plans, and calls served by the classic-cuBLAS fallback (for tests and logs).
  int plan_count() const { return static_cast<int>(plans_.size()); }
  int64_t fallback_calls() const { return fallback_calls_; }

 private:
  struct Plan;
  using PlanKey = std::array<int64_t, 20>;

  // The cached plan for `call`, created on first use; nullptr after recording an error.
  Plan* GetPlan(const GemmCall& call, GemmPrecision precision, const LaunchContext& ctx);
  // GetPlan's parts: the bias or bias-gradient epilogue on `plan`'s descriptor (false after
  // recording an error), and the heuristic's algorithm for the operands' alignments in bytes
  // (false after an error; no algorithm is not one: plan->use_lt stays false).
  static bool SetEpilogue(const GemmCall& call, Plan* plan, ErrorSink& err);
  bool ChooseAlgorithm(Plan* plan, uint32_t align_a, uint32_t align_b, uint32_t align_c,
                       ErrorSink& err);
  // Run's path for a bf16 C whose bias no epilogue takes: C (when beta reads it) and the bias
  // widened into wide_scratch_, the fp32 product there, then rounded once into C.
  bool RunWithWideBias(const GemmCall& call, GemmPrecision precision, const LaunchContext& ctx);

  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
  int64_t fallback_calls_ = 0;
  DeviceScratch wide_scratch_;  // RunWithWideBias's fp32 C and bias
  bool clear_before_overwrite_ = false;
};

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_GEMM_H_
