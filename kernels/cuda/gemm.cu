// Row-major GEMMs on cuBLASLt (column-major) by the usual swap, with cached plans.
//
// cuBLAS is column-major; a row-major X (r x c, leading dimension ld) is, byte for byte, the
// column-major X^T (c x r, same ld). So row-major C = op(A) op(B) is computed as column-major
// C^T = op(B)^T op(A)^T: cuBLAS's first operand is our B with our tb, its second is our A with
// our ta, and m, n = N, M. The layouts describe the matrices as stored: B is N x K (col-major)
// for tb = kNo and K x N for kYes; A is K x M for ta = kNo and M x K for kYes; C is N x M.
//
// cuBLASLt's heuristic assumes 256-byte aligned pointers unless told otherwise, and an
// algorithm chosen under that assumption can fail on, e.g., one head's slice of a Q matrix. So
// the plan states the real alignment of each operand (the largest power of two, at most 256,
// dividing its address, its leading dimension in bytes and, when batched, its batch stride in
// bytes, with the operand's own element size) and the alignment is part of the plan's cache
// key, as are the element types.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"

namespace headroom::cuda {

struct GemmRunner::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool use_lt = false;  // false: no cuBLASLt algorithm, use classic cuBLAS
  // The algorithm runs the call's epilogue (bias, or the a_sums bias gradient); false when
  // none was asked for or no algorithm takes it (then plain, with the epilogue done apart).
  bool epilogue = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Destruction failures are not actionable; the handles are host objects.
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

cublasComputeType_t ComputeType(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::kTf32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GemmPrecision::kBf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case GemmPrecision::kFp32:
      break;
  }
  return CUBLAS_COMPUTE_32F;
}

// Largest power of two <= 256 dividing the address, ld * bytes and (if batched) stride * bytes,
// for elements of `bytes` bytes.
uint32_t Alignment(const void* p, int ld, int64_t stride, int batch, size_t bytes) {
  uint64_t bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) | 256u;
  bits |= static_cast<uint64_t>(ld) * bytes;
  if (batch > 1) bits |= static_cast<uint64_t>(stride) * bytes;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

// Column-major layout rows x cols (ld) of `type`, batched when batch > 1.
bool MakeLayout(cublasLtMatrixLayout_t* layout, cudaDataType_t type, int rows, int cols, int ld,
                int64_t stride, int batch, const LaunchContext& ctx) {
  if (!HR_CUDA_CHECK(*ctx.err, cublasLtMatrixLayoutCreate(layout, type, static_cast<uint64_t>(rows),
                                                          static_cast<uint64_t>(cols), ld))) {
    return false;
  }
  if (batch <= 1) return true;
  const int32_t count = batch;
  return HR_CUDA_CHECK(*ctx.err,
                       cublasLtMatrixLayoutSetAttribute(*layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                        &count, sizeof(count))) &&
         HR_CUDA_CHECK(*ctx.err, cublasLtMatrixLayoutSetAttribute(
                                     *layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                     sizeof(stride)));
}

// Whether `call`'s bias goes into the GEMM's epilogue: a single product with beta 0 and a
// 16-byte aligned bias (cuBLASLt loads the bias vector with wide loads).
bool EpilogueBias(const GemmCall& call) {
  return call.bias != nullptr && call.batch <= 1 && call.beta == 0.0f &&
         reinterpret_cast<uintptr_t>(call.bias) % 16 == 0;
}

// Whether `call` asks for the bias gradient of op(A) in the epilogue (BGRADB: cuBLAS's second
// operand is our A, see the top of this file; its sums over k run along our M).
bool EpilogueSums(const GemmCall& call) {
  return call.a_sums != nullptr && call.batch <= 1 && call.trans_a &&
         reinterpret_cast<uintptr_t>(call.a_sums) % 16 == 0;
}

// Why a non-empty `call` cannot run (nullptr when it can): the bias's conditions, element
// types; Run's scaling and bias kernels are fp32, so a bf16 C takes no zero-size scaling.
const char* InvalidCall(const GemmCall& call) {
  if (call.bias != nullptr && (call.batch > 1 || call.ldc != call.N || call.a_sums != nullptr)) {
    return "a bias needs one product with ldc == N and no a_sums";
  }
  if (ElementBytes(call.ab_type) == 0 || ElementBytes(call.c_type) == 0) {
    return "unsupported element type";
  }
  if (call.c_type != CUDA_R_32F && (call.K == 0 || call.alpha == 0.0f)) {
    return "K == 0 or alpha == 0 needs an fp32 C";
  }
  return nullptr;
}

}  // namespace

GemmCall StridedBatchedCall(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                            const void* A, int lda, int64_t stride_a, const void* B, int ldb,
                            int64_t stride_b, float beta, void* C, int ldc, int64_t stride_c,
                            int batch) {
  GemmCall call;
  call.trans_a = trans_a;
  call.trans_b = trans_b;
  call.M = M;
  call.N = N;
  call.K = K;
  call.alpha = alpha;
  call.A = A;
  call.lda = lda;
  call.stride_a = stride_a;
  call.B = B;
  call.ldb = ldb;
  call.stride_b = stride_b;
  call.beta = beta;
  call.C = C;
  call.ldc = ldc;
  call.stride_c = stride_c;
  call.batch = batch;
  return call;
}

size_t ElementBytes(cudaDataType_t type) {
  switch (type) {
    case CUDA_R_32F:
      return 4;
    case CUDA_R_16BF:
    case CUDA_R_16F:
      return 2;
    case CUDA_R_64F:
      return 8;
    default:
      return 0;
  }
}

const char* GemmPrecisionName(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::kTf32:
      return "tf32";
    case GemmPrecision::kBf16:
      return "bf16";
    case GemmPrecision::kFp32:
      break;
  }
  return "fp32";
}

GemmRunner::GemmRunner() = default;

GemmRunner::~GemmRunner() {
  plans_.clear();
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (lt_ != nullptr) cublasLtDestroy(lt_);
  if (workspace_ != nullptr) cudaFree(workspace_);
}

bool GemmRunner::Init(size_t workspace_bytes, const LaunchContext& ctx) {
  ErrorSink& err = *ctx.err;
  if (!HR_CUDA_CHECK(err, cublasLtCreate(&lt_))) return false;
  if (!HR_CUDA_CHECK(err, cublasCreate(&blas_))) return false;
  if (!HR_CUDA_CHECK(err, cublasSetStream(blas_, ctx.stream))) return false;
  if (workspace_bytes > 0) {
    if (!HR_CUDA_CHECK(err, cudaMalloc(&workspace_, workspace_bytes))) return false;
    workspace_bytes_ = workspace_bytes;
    // The fallback shares the workspace: both run on the one stream, never concurrently.
    if (!HR_CUDA_CHECK(err, cublasSetWorkspace(blas_, workspace_, workspace_bytes_))) {
      return false;
    }
  }
  return true;
}

bool GemmRunner::SetEpilogue(const GemmCall& call, Plan* plan, ErrorSink& err) {
  // Epilogues. Bias: cuBLAS's D is our C^T (N x M column-major), so its per-row bias is our
  // per-column bias, length N. Bias gradient: BGRADB sums cuBLAS's second operand (our op(A))
  // over k, one value per column of D, i.e. per row of our C: length M.
  const void* epilogue_vector = EpilogueBias(call)   ? static_cast<const void*>(call.bias)
                                : EpilogueSums(call) ? static_cast<const void*>(call.a_sums)
                                                     : nullptr;
  if (epilogue_vector != nullptr) {
    const cublasLtEpilogue_t epilogue =
        EpilogueBias(call) ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
    // The bias is C's type (cublasLt.h); the bias gradient's sums are fp32.
    const cudaDataType_t bias_type = EpilogueBias(call) ? call.c_type : CUDA_R_32F;
    if (!HR_CUDA_CHECK(err,
                       cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                      &epilogue, sizeof(epilogue))) ||
        !HR_CUDA_CHECK(
            err, cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                &bias_type, sizeof(bias_type))) ||
        !HR_CUDA_CHECK(err,
                       cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &epilogue_vector, sizeof(epilogue_vector)))) {
      return false;
    }
    plan->epilogue = true;
  }
  return true;
}

bool GemmRunner::ChooseAlgorithm(Plan* plan, uint32_t align_a, uint32_t align_b, uint32_t align_c,
                                 ErrorSink& err) {
  cublasLtMatmulPreference_t pref = nullptr;
  if (!HR_CUDA_CHECK(err, cublasLtMatmulPreferenceCreate(&pref))) return false;
  const uint64_t ws = workspace_bytes_;
  // Operand 1 of cuBLAS is our B: its alignment goes to the "A" preference, and vice versa.
  bool ok =
      HR_CUDA_CHECK(err, cublasLtMatmulPreferenceSetAttribute(
                             pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws))) &&
      HR_CUDA_CHECK(
          err, cublasLtMatmulPreferenceSetAttribute(
                   pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_b, sizeof(align_b))) &&
      HR_CUDA_CHECK(
          err, cublasLtMatmulPreferenceSetAttribute(
                   pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_a, sizeof(align_a))) &&
      HR_CUDA_CHECK(
          err, cublasLtMatmulPreferenceSetAttribute(
                   pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c))) &&
      HR_CUDA_CHECK(
          err, cublasLtMatmulPreferenceSetAttribute(
                   pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));
  // NOT_SUPPORTED (or no result) means "no cuBLASLt algorithm": not an error. Without one for
  // the epilogue, the plain product is tried (the epilogue is then done apart); without one for
  // that either, classic cuBLAS.
  auto query = [&] {
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(
        lt_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result, &returned);
    if (s == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
      plan->algo = result.algo;
      plan->use_lt = true;
    }
  };
  if (ok) query();
  if (ok && !plan->use_lt && plan->epilogue) {
    const cublasLtEpilogue_t plain = CUBLASLT_EPILOGUE_DEFAULT;
    ok = HR_CUDA_CHECK(err, cublasLtMatmulDescSetAttribute(
                                plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &plain, sizeof(plain)));
    plan->epilogue = false;
    if (ok) query();
  }
  cublasLtMatmulPreferenceDestroy(pref);
  return ok;
}

GemmRunner::Plan* GemmRunner::GetPlan(const GemmCall& call, GemmPrecision precision,
                                      const LaunchContext& ctx) {
  const bool batched = call.batch > 1;
  const size_t ab_bytes = ElementBytes(call.ab_type), c_bytes = ElementBytes(call.c_type);
  const uint32_t align_a = Alignment(call.A, call.lda, call.stride_a, call.batch, ab_bytes);
  const uint32_t align_b = Alignment(call.B, call.ldb, call.stride_b, call.batch, ab_bytes);
  const uint32_t align_c = Alignment(call.C, call.ldc, call.stride_c, call.batch, c_bytes);
  const PlanKey key = {
      static_cast<int64_t>(precision), call.trans_a, call.trans_b, call.M, call.N, call.K, call.lda,
      call.ldb, call.ldc, batched ? call.stride_a : 0, batched ? call.stride_b : 0,
      batched ? call.stride_c : 0, call.batch, align_a, align_b, align_c,
      // The heuristic reads the bias pointer's alignment (cublasLt.h).
      EpilogueBias(call) ? Alignment(call.bias, 0, 0, 1, c_bytes) : 0, EpilogueSums(call) ? 1 : 0,
      static_cast<int64_t>(call.ab_type), static_cast<int64_t>(call.c_type)};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();

  ErrorSink& err = *ctx.err;
  auto plan = std::make_unique<Plan>();
  // cuBLAS operand 1 = our B, operand 2 = our A (see the top of this file).
  const cublasOperation_t op1 = call.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op2 = call.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (!HR_CUDA_CHECK(err,
                     cublasLtMatmulDescCreate(&plan->desc, ComputeType(precision), CUDA_R_32F)) ||
      !HR_CUDA_CHECK(err, cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                         &op1, sizeof(op1))) ||
      !HR_CUDA_CHECK(err, cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                         &op2, sizeof(op2)))) {
    return nullptr;
  }
  if (!SetEpilogue(call, plan.get(), err)) return nullptr;
  const int rows1 = call.trans_b ? call.K : call.N, cols1 = call.trans_b ? call.N : call.K;
  const int rows2 = call.trans_a ? call.M : call.K, cols2 = call.trans_a ? call.K : call.M;
  if (!MakeLayout(&plan->a, call.ab_type, rows1, cols1, call.ldb, call.stride_b, call.batch, ctx) ||
      !MakeLayout(&plan->b, call.ab_type, rows2, cols2, call.lda, call.stride_a, call.batch, ctx) ||
      !MakeLayout(&plan->c, call.c_type, call.N, call.M, call.ldc, call.stride_c, call.batch,
                  ctx)) {
    return nullptr;
  }

  if (!ChooseAlgorithm(plan.get(), align_a, align_b, align_c, err)) return nullptr;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

bool GemmRunner::Run(const GemmCall& call, GemmPrecision precision, const LaunchContext& ctx) {
  ErrorSink& err = *ctx.err;
  if (call.M < 0 || call.N < 0 || call.K < 0 || call.batch < 0) {
    err.Record("Gemm", "negative size", __FILE__, __LINE__);
    return false;
  }
  if (call.M == 0 || call.N == 0 || call.batch == 0) return false;
  if (const char* invalid = InvalidCall(call)) {
    err.Record("Gemm", invalid, __FILE__, __LINE__);
    return false;
  }
  // The clearing is skipped for a C other than fp32: it is a debugging fallback.
  const bool c_fp32 = call.c_type == CUDA_R_32F;
  float* c_float = static_cast<float*>(call.C);
  const float* bias_float = static_cast<const float*>(call.bias);
  if (call.K == 0 || call.alpha == 0.0f) {
    LaunchScaleMatrices(c_float, call.M, call.N, call.ldc, call.stride_c, call.batch, call.beta,
                        ctx);
    if (call.bias != nullptr) LaunchAddBias(c_float, bias_float, call.M, call.N, ctx);
    return false;
  }
  // beta == 0: cuBLAS(Lt) does not read C then (BLAS semantics: "C need not be set on input";
  // PyTorch and llm.c rely on it with uninitialised outputs), so NaN/Inf already in C cannot
  // leak and C is not cleared first, which would cost a full extra write of every forward
  // product's output. Unless CudaOpsOptions::clear_gemm_output asks for the clearing
  // (HEADROOM_CUDA_CLEAR_GEMM_OUTPUT=1), as a fallback should a library version read C.
  if (call.beta == 0.0f && clear_before_overwrite_ && c_fp32) {
    LaunchScaleMatrices(c_float, call.M, call.N, call.ldc, call.stride_c, call.batch, 0.0f, ctx);
  }
  Plan* plan = GetPlan(call, precision, ctx);
  if (plan == nullptr) return false;
  // A bf16 C's bias is added before its one rounding: in the epilogue, or else in fp32.
  const bool bias_needs_epilogue = call.bias != nullptr && !c_fp32;
  if (bias_needs_epilogue && !(plan->use_lt && plan->epilogue)) {
    return RunWithWideBias(call, precision, ctx);
  }
  // The bias a separate kernel adds when the epilogue does not.
  auto add_bias = [&] {
    if (call.bias != nullptr) LaunchAddBias(c_float, bias_float, call.M, call.N, ctx);
  };
  if (plan->use_lt) {
    const void* vector = call.bias != nullptr ? static_cast<const void*>(call.bias)
                                              : static_cast<const void*>(call.a_sums);
    if (plan->epilogue && !HR_CUDA_CHECK(err, cublasLtMatmulDescSetAttribute(
                                                  plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &vector, sizeof(vector)))) {
      return false;
    }
    const cublasStatus_t s = cublasLtMatmul(lt_, plan->desc, &call.alpha, call.B, plan->a, call.A,
                                            plan->b, &call.beta, call.C, plan->c, call.C, plan->c,
                                            &plan->algo, workspace_, workspace_bytes_, ctx.stream);
    if (s == CUBLAS_STATUS_SUCCESS) {
      if (!plan->epilogue) add_bias();
      return plan->epilogue && call.a_sums != nullptr;
    }
    if (s != CUBLAS_STATUS_NOT_SUPPORTED) {
      err.Record("cublasLtMatmul", ErrorText(s), __FILE__, __LINE__);
      return false;
    }
    // The heuristic's algorithm refused the call after all: classic cuBLAS from now on.
    plan->use_lt = false;
    if (bias_needs_epilogue) return RunWithWideBias(call, precision, ctx);
  }
  ++fallback_calls_;
  HR_CUDA_CHECK(
      err, cublasGemmStridedBatchedEx(blas_, call.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      call.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, call.N, call.M,
                                      call.K, &call.alpha, call.B, call.ab_type, call.ldb,
                                      call.stride_b, call.A, call.ab_type, call.lda, call.stride_a,
                                      &call.beta, call.C, call.c_type, call.ldc, call.stride_c,
                                      call.batch, ComputeType(precision), CUBLAS_GEMM_DEFAULT));
  add_bias();
  return false;
}

bool GemmRunner::RunWithWideBias(const GemmCall& call, GemmPrecision precision,
                                 const LaunchContext& ctx) {
  const int64_t n = static_cast<int64_t>(call.M) * call.N;  // ldc == N with a bias
  auto* wide = static_cast<float*>(
      wide_scratch_.Ensure(sizeof(float) * static_cast<size_t>(n + call.N), ctx));
  if (wide == nullptr) return false;  // recorded
  auto* c = static_cast<__nv_bfloat16*>(call.C);
  if (call.beta != 0.0f) LaunchConvert(c, wide, n, ctx);
  LaunchConvert(static_cast<const __nv_bfloat16*>(call.bias), wide + n, call.N, ctx);
  GemmCall fp32 = call;
  fp32.C = wide;
  fp32.c_type = CUDA_R_32F;
  fp32.bias = wide + n;
  Run(fp32, precision, ctx);
  LaunchConvert(wide, c, n, ctx);
  return false;
}

double MeasureBf16GemmFlops(int n, int reps, const LaunchContext& ctx) {
  const size_t bytes = sizeof(uint16_t) * static_cast<size_t>(n) * n;
  void* m[3] = {nullptr, nullptr, nullptr};
  cublasHandle_t blas = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0;
  bool ok = HR_CUDA_CHECK(*ctx.err, cublasCreate(&blas)) &&
            HR_CUDA_CHECK(*ctx.err, cublasSetStream(blas, ctx.stream)) &&
            HR_CUDA_CHECK(*ctx.err, cudaEventCreate(&start)) &&
            HR_CUDA_CHECK(*ctx.err, cudaEventCreate(&stop));
  for (void*& p : m) {
    // 0x3C3C is the bf16 value 0.0115: nonzero operands, as real data (zeros draw less power).
    ok = ok && HR_CUDA_CHECK(*ctx.err, cudaMalloc(&p, bytes)) &&
         HR_CUDA_CHECK(*ctx.err, cudaMemsetAsync(p, 0x3C, bytes, ctx.stream));
  }
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&] {
    return HR_CUDA_CHECK(
        *ctx.err, cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, m[0], CUDA_R_16BF,
                               n, m[1], CUDA_R_16BF, n, &beta, m[2], CUDA_R_16BF, n,
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  ok = ok && gemm() && gemm();  // warm-up: clocks up, heuristics cached
  for (int i = 0; ok && i < reps; ++i) {
    float ms = 0;
    ok = HR_CUDA_CHECK(*ctx.err, cudaEventRecord(start, ctx.stream)) && gemm() &&
         HR_CUDA_CHECK(*ctx.err, cudaEventRecord(stop, ctx.stream)) &&
         HR_CUDA_CHECK(*ctx.err, cudaEventSynchronize(stop)) &&
         HR_CUDA_CHECK(*ctx.err, cudaEventElapsedTime(&ms, start, stop));
    if (ok && ms > 0) best = std::max(best, 2.0 * n * n * static_cast<double>(n) / (ms * 1e-3));
  }
  cudaStreamSynchronize(ctx.stream);
  for (void* p : m) cudaFree(p);
  if (start != nullptr) cudaEventDestroy(start);
  if (stop != nullptr) cudaEventDestroy(stop);
  if (blas != nullptr) cublasDestroy(blas);
  return ok ? best : 0.0;
}

}  // namespace headroom::cuda
