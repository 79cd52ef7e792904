// CudaOps: construction, memory and transfers, and the op methods, each a thin call of its
// launcher (the kernels are in the .cu file of their family; see launch.h).
//
// Transfers: CopyToDevice waits for its copy so that the host buffer may be reused on return
// even when it is pinned (cudaMemcpyAsync returns early from pinned memory); CopyToHost waits
// because the caller reads the result. Alloc and Free synchronise too (they are never inside a
// step). Everything else is asynchronous on the object's stream.
#include "kernels/cuda/cuda_ops.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend.h"

namespace headroom {
namespace {

bool EnvFlag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

}  // namespace

// ---- DeviceScratch (launch.h) ---------------------------------------------------------------

namespace cuda {

DeviceScratch::~DeviceScratch() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

void* DeviceScratch::Ensure(size_t bytes, const LaunchContext& ctx) {
  if (ptr_ != nullptr && bytes <= capacity_) return ptr_;
  size_t want = bytes > 2 * capacity_ ? bytes : 2 * capacity_;
  want = (want + 255) / 256 * 256;
  if (ptr_ != nullptr) {
    // The old buffer may still be read by queued kernels.
    HR_CUDA_CHECK(*ctx.err, cudaStreamSynchronize(ctx.stream));
    HR_CUDA_CHECK(*ctx.err, cudaFree(ptr_));
    ptr_ = nullptr;
    capacity_ = 0;
  }
  if (!HR_CUDA_CHECK(*ctx.err, cudaMalloc(&ptr_, want))) {
    ptr_ = nullptr;
    return nullptr;
  }
  capacity_ = want;
  ++growths_;
  return ptr_;
}

}  // namespace cuda

// ---- Options, availability, construction ----------------------------------------------------

absl::StatusOr<cuda::GemmPrecision> ParseGemmPrecision(absl::string_view name) {
  if (name == "fp32") return cuda::GemmPrecision::kFp32;
  if (name == "tf32") return cuda::GemmPrecision::kTf32;
  if (name == "bf16") return cuda::GemmPrecision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown GEMM precision \"", name, "\": expected fp32, tf32 or bf16"));
}

absl::StatusOr<CudaOpsOptions> CudaOpsOptions::FromEnvironment() {
  CudaOpsOptions options;
  options.sync_after_each_op = EnvFlag("HEADROOM_CUDA_SYNC");
  options.abort_on_error = EnvFlag("HEADROOM_CUDA_ABORT_ON_ERROR");
  options.clear_gemm_output = EnvFlag("HEADROOM_CUDA_CLEAR_GEMM_OUTPUT");
  if (const char* p = std::getenv("HEADROOM_CUDA_GEMM_PRECISION"); p != nullptr && p[0] != '\0') {
    absl::StatusOr<cuda::GemmPrecision> precision = ParseGemmPrecision(p);
    if (!precision.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("HEADROOM_CUDA_GEMM_PRECISION: ", precision.status().message()));
    }
    options.gemm_precision = *precision;
  }
  return options;
}

absl::Status CudaDeviceStatus() {
  // Asked once: the answer cannot change within a process, and every call would pay the
  // runtime's initialisation attempt again.
  static const absl::Status* const kStatus = new absl::Status([]() -> absl::Status {
    // The driver library first (cuda_backend.h): the runtime cannot tell "no driver" from "a
    // driver too old for me". The handle is dropped again; the runtime loads its own.
    void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (driver == nullptr) {
      const char* why = dlerror();
      return absl::UnavailableError(
          absl::StrCat("no CUDA driver (", why != nullptr ? why : "libcuda.so.1 not found", ")"));
    }
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    dlclose(driver);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count <= 0)) {
      return absl::UnavailableError("the CUDA driver reports no device");
    }
    if (e != cudaSuccess) {
      return absl::InternalError(absl::StrCat(
          "a CUDA driver is present but cudaGetDeviceCount failed: ", cuda::ErrorText(e)));
    }
    return absl::OkStatus();
  }());
  return *kStatus;
}

absl::StatusOr<CudaMemory> CudaDeviceMemoryInfo() {
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t e = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("cudaMemGetInfo failed: ", cuda::ErrorText(e)));
  }
  return CudaMemory{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

absl::StatusOr<std::unique_ptr<Ops<float>>> MakeCudaOps(const std::string& matmul_precision) {
  absl::StatusOr<CudaOpsOptions> options = CudaOpsOptions::FromEnvironment();
  if (!options.ok()) return options.status();
  const char* env = std::getenv("HEADROOM_CUDA_GEMM_PRECISION");
  if (!matmul_precision.empty() && (env == nullptr || env[0] == '\0')) {
    absl::StatusOr<cuda::GemmPrecision> precision = ParseGemmPrecision(matmul_precision);
    if (!precision.ok()) return precision.status();
    options->gemm_precision = *precision;
  }
  absl::StatusOr<std::unique_ptr<CudaOps>> ops = CudaOps::Create(*options);
  if (!ops.ok()) return ops.status();
  return std::unique_ptr<Ops<float>>(std::move(*ops));
}

CudaOps::CudaOps(const CudaOpsOptions& options)
    : options_(options), gemm_precision_(options.gemm_precision) {
  err_.set_abort_on_error(options.abort_on_error);
}

absl::StatusOr<std::unique_ptr<CudaOps>> CudaOps::Create(const CudaOpsOptions& options) {
  if (absl::Status s = CudaDeviceStatus(); !s.ok()) return s;
  std::unique_ptr<CudaOps> ops(new CudaOps(options));
  absl::Status s = ops->Init();
  if (!s.ok()) return s;
  return ops;
}

absl::Status CudaOps::Init() {
  if (HR_CUDA_CHECK(err_, cudaSetDevice(options_.device)) &&
      HR_CUDA_CHECK(err_, cudaStreamCreate(&stream_))) {
    gemm_ = std::make_unique<cuda::GemmRunner>();
    gemm_->set_clear_before_overwrite(options_.clear_gemm_output);
    if (gemm_->Init(options_.gemm_workspace_bytes, ctx()) &&
        HR_CUDA_CHECK(err_, cudaMalloc(reinterpret_cast<void**>(&partials_),
                                       sizeof(float) * cuda::kDotMaxBlocks)) &&
        HR_CUDA_CHECK(err_, cudaMalloc(reinterpret_cast<void**>(&norms_), sizeof(float) * 2)) &&
        HR_CUDA_CHECK(err_, cudaMalloc(reinterpret_cast<void**>(&colsum_scratch_),
                                       sizeof(float) * cuda::kColumnSumScratchFloats)) &&
        staging_.Init(options_.staging_bytes, ctx())) {
      return absl::OkStatus();
    }
  }
  return absl::InternalError(absl::StrCat("CUDA backend setup: ", err_.first_error()));
}

CudaOps::~CudaOps() {
  // Errors here are not actionable (and may repeat an earlier fault); ignore them.
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  gemm_.reset();  // its handles are bound to the stream: destroy them first
  if (partials_ != nullptr) cudaFree(partials_);
  if (norms_ != nullptr) cudaFree(norms_);
  if (colsum_scratch_ != nullptr) cudaFree(colsum_scratch_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status CudaOps::status() const {
  if (err_.ok()) return absl::OkStatus();
  return absl::InternalError(err_.first_error());
}

void CudaOps::AfterOp(const char* op) {
  if (!options_.sync_after_each_op) return;
  const cudaError_t e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess) err_.Record(op, cuda::ErrorText(e), __FILE__, __LINE__);
}

// ---- Memory and transfers ---------------------------------------------------------------------

void* CudaOps::AllocBytes(size_t bytes) {
  // A unique, 256-byte aligned pointer even for 0 bytes (as the CPU backend).
  const size_t rounded = bytes == 0 ? 256 : (bytes + 255) / 256 * 256;
  void* p = nullptr;
  // Checked with the size as the call's text, so that the message says how much did not fit.
  const std::string call = absl::StrCat("cudaMalloc of ", rounded, " bytes");
  if (!cuda::CheckResult(cudaMalloc(&p, rounded), call.c_str(), __FILE__, __LINE__, err_)) {
    return nullptr;
  }
  HR_CUDA_CHECK(err_, cudaMemsetAsync(p, 0, rounded, stream_));
  HR_CUDA_CHECK(err_, cudaStreamSynchronize(stream_));
  allocation_bytes_[p] = rounded;
  allocated_ += static_cast<int64_t>(rounded);
  peak_allocated_ = std::max(peak_allocated_, allocated_);
  return p;
}

double CudaOps::MeasureBf16GemmFlops(int n, int reps) {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return 0;
  const size_t needed = 3 * sizeof(uint16_t) * static_cast<size_t>(n) * n + (size_t{64} << 20);
  if (free_bytes < needed) return 0;
  cuda::ErrorSink apart;  // a failure here must not fail the caller's run
  const double flops = cuda::MeasureBf16GemmFlops(n, reps, {stream_, &apart});
  return apart.ok() ? flops : 0.0;
}

int64_t CudaOps::DeviceMemoryInUse() {
  size_t free_bytes = 0, total_bytes = 0;
  if (!HR_CUDA_CHECK(err_, cudaMemGetInfo(&free_bytes, &total_bytes))) return -1;
  return static_cast<int64_t>(total_bytes - free_bytes);
}

void CudaOps::Free(void* p) {
  if (p == nullptr) return;
  HR_CUDA_CHECK(err_, cudaStreamSynchronize(stream_));  // queued ops may still use it
  HR_CUDA_CHECK(err_, cudaFree(p));
  const auto it = allocation_bytes_.find(p);
  if (it != allocation_bytes_.end()) {
    allocated_ -= static_cast<int64_t>(it->second);
    allocation_bytes_.erase(it);
  }
}

void CudaOps::CopyToDevice(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // Small uploads (a step's batch) go through pinned memory without waiting; large ones
  // (parameters, checkpoints) synchronously.
  if (staging_.CopyToDevice(dst, src, bytes, ctx())) {
    AfterOp("CopyToDevice");
    return;
  }
  HR_CUDA_CHECK(err_, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  HR_CUDA_CHECK(err_, cudaStreamSynchronize(stream_));
}

void CudaOps::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  HR_CUDA_CHECK(err_, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  HR_CUDA_CHECK(err_, cudaStreamSynchronize(stream_));
}

void CudaOps::CopyDevice(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  HR_CUDA_CHECK(err_, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  AfterOp("CopyDevice");
}

void CudaOps::Synchronize() { HR_CUDA_CHECK(err_, cudaStreamSynchronize(stream_)); }

// ---- Elementwise ------------------------------------------------------------------------------

void CudaOps::Fill(float* x, int64_t n, float value) {
  cuda::LaunchFill(x, n, value, ctx());
  AfterOp("Fill");
}

void CudaOps::Scale(float* x, int64_t n, float alpha) {
  cuda::LaunchScale(x, n, alpha, ctx());
  AfterOp("Scale");
}

void CudaOps::Add(const float* a, const float* b, float* out, int64_t n) {
  cuda::LaunchAdd(a, b, out, n, ctx());
  AfterOp("Add");
}

void CudaOps::Axpy(float alpha, const float* x, float* y, int64_t n) {
  cuda::LaunchAxpy(alpha, x, y, n, ctx());
  AfterOp("Axpy");
}

// ---- Matrix products --------------------------------------------------------------------------

void CudaOps::Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc) {
  GemmStridedBatched(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

void CudaOps::Linear(const float* x, const float* w, const float* bias, int rows, int out, int in,
                     float* y) {
  cuda::GemmCall call;
  call.trans_b = true;
  call.M = rows;
  call.N = out;
  call.K = in;
  call.A = x;
  call.lda = in;
  call.B = w;
  call.ldb = in;
  call.C = y;
  call.ldc = out;
  call.bias = bias;
  gemm_->Run(call, gemm_precision_, ctx());
  AfterOp("Linear");
}

bool CudaOps::WeightGradient(const void* dy, const void* x, cudaDataType_t type, int rows, int out,
                             int in, float* dw, float* dbias, GemmPrecision precision) {
  cuda::GemmCall call = cuda::StridedBatchedCall(true, false, out, in, rows, 1.0f, dy, out, 0, x,
                                                 in, 0, 1.0f, dw, in, 0, 1);
  call.ab_type = type;
  // The epilogue overwrites its vector, and parameter gradients accumulate: it writes into the
  // column-sum scratch, which is then added.
  if (dbias != nullptr && out <= cuda::kColumnSumScratchFloats) call.a_sums = colsum_scratch_;
  const bool summed = gemm_->Run(call, precision, ctx());
  if (summed) cuda::LaunchAxpy(1.0f, colsum_scratch_, dbias, out, ctx());
  return summed;
}

void CudaOps::LinearBackwardWeights(const float* dy, const float* x, int rows, int out, int in,
                                    float* dw, float* dbias) {
  if (!WeightGradient(dy, x, CUDA_R_32F, rows, out, in, dw, dbias, gemm_precision_) &&
      dbias != nullptr) {
    cuda::LaunchColumnSums(dy, nullptr, nullptr, nullptr, rows, out, dbias, nullptr,
                           colsum_scratch_, ctx());
  }
  AfterOp("LinearBackwardWeights");
}

void CudaOps::GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha,
                                 const float* A, int lda, int64_t stride_a, const float* B, int ldb,
                                 int64_t stride_b, float beta, float* C, int ldc, int64_t stride_c,
                                 int batch) {
  gemm_->Run(cuda::StridedBatchedCall(ta == Trans::kYes, tb == Trans::kYes, M, N, K, alpha, A, lda,
                                      stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch),
             gemm_precision_, ctx());
  AfterOp("Gemm");
}

void CudaOps::AddBias(float* x, const float* bias, int64_t rows, int cols) {
  cuda::LaunchAddBias(x, bias, rows, cols, ctx());
  AfterOp("AddBias");
}

void CudaOps::BiasBackward(const float* dy, int64_t rows, int cols, float* dbias) {
  cuda::LaunchColumnSums(dy, nullptr, nullptr, nullptr, rows, cols, dbias, nullptr, colsum_scratch_,
                         ctx());
  AfterOp("BiasBackward");
}

void CudaOps::PermuteHeads(const float* x, float* y, int B, int S, int H, int D, bool inverse) {
  cuda::LaunchPermuteHeads(x, y, B, S, H, D, inverse, ctx());
  AfterOp("PermuteHeads");
}

// ---- Normalisation and activations ------------------------------------------------------------

void CudaOps::LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                               int cols, float eps, float* y, float* mean, float* rstd) {
  cuda::LaunchLayerNormForward(x, gamma, beta, rows, cols, eps, y, mean, rstd, ctx());
  AfterOp("LayerNormForward");
}

void CudaOps::LayerNormBackward(const float* dy, const float* x, const float* gamma,
                                const float* mean, const float* rstd, int64_t rows, int cols,
                                float* dx, float* dgamma, float* dbeta) {
  cuda::LaunchLayerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta,
                                colsum_scratch_, ctx());
  AfterOp("LayerNormBackward");
}

void CudaOps::LayerNormInputFromOutput(const float* y, const float* gamma, const float* beta,
                                       const float* mean, const float* rstd, int64_t rows, int cols,
                                       float* x) {
  cuda::LaunchLayerNormInputFromOutput(y, gamma, beta, mean, rstd, rows, cols, x, ctx());
  AfterOp("LayerNormInputFromOutput");
}

void CudaOps::ResidualLayerNormForward(const float* x, const float* sub, float rate,
                                       const DropoutKey& key, const float* gamma, const float* beta,
                                       int64_t rows, int cols, float eps, float* sum, float* y,
                                       float* mean, float* rstd) {
  cuda::LaunchResidualLayerNormForward(x, sub, rate, key.seed, key.step, key.layer, key.site, gamma,
                                       beta, rows, cols, eps, sum, y, mean, rstd, ctx());
  AfterOp("ResidualLayerNormForward");
}

void CudaOps::ResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                        const float* mean, const float* rstd, int64_t rows,
                                        int cols, float rate, const DropoutKey& key, float* dsum,
                                        float* dsub, float* dgamma, float* dbeta) {
  cuda::LaunchResidualLayerNormBackward(dy, sum, gamma, mean, rstd, rows, cols, rate, key.seed,
                                        key.step, key.layer, key.site, dsum, dsub, dgamma, dbeta,
                                        colsum_scratch_, ctx());
  AfterOp("ResidualLayerNormBackward");
}

void CudaOps::GeluForward(const float* x, float* y, int64_t n) {
  cuda::LaunchGeluForward(x, y, n, ctx());
  AfterOp("GeluForward");
}

void CudaOps::GeluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  cuda::LaunchGeluBackward(x, dy, dx, n, ctx());
  AfterOp("GeluBackward");
}

void CudaOps::ActivationForward(Activation act, const float* x, float* y, int64_t n) {
  switch (act) {
    case Activation::kGelu:
      cuda::LaunchGeluForward(x, y, n, ctx());
      break;
    case Activation::kGeluTanh:
      cuda::LaunchGeluTanhForward(x, y, n, ctx());
      break;
    case Activation::kRelu:
      cuda::LaunchReluForward(x, y, n, ctx());
      break;
  }
  AfterOp("ActivationForward");
}

void CudaOps::ActivationBackward(Activation act, const float* x, const float* dy, float* dx,
                                 int64_t n) {
  switch (act) {
    case Activation::kGelu:
      cuda::LaunchGeluBackward(x, dy, dx, n, ctx());
      break;
    case Activation::kGeluTanh:
      cuda::LaunchGeluTanhBackward(x, dy, dx, n, ctx());
      break;
    case Activation::kRelu:
      cuda::LaunchReluBackward(x, dy, dx, n, ctx());
      break;
  }
  AfterOp("ActivationBackward");
}

void CudaOps::TanhForward(const float* x, float* y, int64_t n) {
  cuda::LaunchTanhForward(x, y, n, ctx());
  AfterOp("TanhForward");
}

void CudaOps::TanhBackward(const float* y, const float* dy, float* dx, int64_t n) {
  cuda::LaunchTanhBackward(y, dy, dx, n, ctx());
  AfterOp("TanhBackward");
}

// ---- Attention softmax ------------------------------------------------------------------------

void CudaOps::SoftmaxForward(const float* scores, float* probs, int B, int H, int Sq, int Sk,
                             float scale, const int32_t* segments, bool causal) {
  cuda::LaunchSoftmaxForward(scores, probs, B, H, Sq, Sk, scale, segments, causal, ctx());
  AfterOp("SoftmaxForward");
}

void CudaOps::SoftmaxBackward(const float* probs, const float* dprobs, float* dscores, int64_t rows,
                              int Sk, float scale) {
  cuda::LaunchSoftmaxBackward(probs, dprobs, dscores, rows, Sk, scale, ctx());
  AfterOp("SoftmaxBackward");
}

// ---- Fused attention --------------------------------------------------------------------------

void CudaOps::AttentionForward(const float* q, const float* k, const float* v, int B, int S, int H,
                               int D, float scale, const int32_t* segments, bool causal,
                               float dropout_rate, const DropoutKey& key, float* out, float* lse) {
  cuda::LaunchAttentionForward(q, k, v, B, S, H, D, scale, segments, causal, dropout_rate, key.seed,
                               key.step, key.layer, key.site, out, lse, ctx());
  AfterOp("AttentionForward");
}

void CudaOps::AttentionBackward(const float* q, const float* k, const float* v, const float* out,
                                const float* dout, const float* lse, int B, int S, int H, int D,
                                float scale, const int32_t* segments, bool causal,
                                float dropout_rate, const DropoutKey& key, float* dq, float* dk,
                                float* dv, float* delta) {
  cuda::LaunchAttentionBackward(q, k, v, out, dout, lse, B, S, H, D, scale, segments, causal,
                                dropout_rate, key.seed, key.step, key.layer, key.site, dq, dk, dv,
                                delta, scratch_, ctx());
  AfterOp("AttentionBackward");
}

// Up to head size 128 the fused kernels keep their tiles in registers and fit at least two
// blocks an SM (attention.cu's table); at 256 their shared-memory tiles (146-190 KiB) fit one,
// so "auto" takes the materialised path's cuBLAS products there ("fused" still runs them).
bool CudaOps::PrefersFusedAttention(int head_size) const {
  return gemm_precision_ == GemmPrecision::kBf16 && head_size <= 128 &&
         cuda::FusedAttentionSupports(head_size);
}

// ---- Dropout ----------------------------------------------------------------------------------

void CudaOps::Dropout(const float* x, float* y, int64_t n, float rate, const DropoutKey& key) {
  cuda::LaunchDropout(x, y, n, rate, key.seed, key.step, key.layer, key.site, ctx());
  AfterOp("Dropout");
}

// ---- Embeddings and row gathers ---------------------------------------------------------------

void CudaOps::EmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d, float* out,
                               bool accumulate) {
  cuda::LaunchEmbeddingForward(ids, table, n, d, out, accumulate, ctx());
  AfterOp("EmbeddingForward");
}

void CudaOps::EmbeddingBackward(const int32_t* ids, const float* dout, int64_t n, int d,
                                float* dtable) {
  cuda::LaunchScatterAddRows(dout, ids, n, d, dtable, scratch_, ctx());
  AfterOp("EmbeddingBackward");
}

void CudaOps::GatherRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) {
  cuda::LaunchEmbeddingForward(idx, src, m, d, dst, /*accumulate=*/false, ctx());
  AfterOp("GatherRows");
}

void CudaOps::ScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d, float* dst) {
  cuda::LaunchScatterAddRows(src, idx, m, d, dst, scratch_, ctx());
  AfterOp("ScatterAddRows");
}

// ---- Loss -------------------------------------------------------------------------------------

void CudaOps::SoftmaxCrossEntropy(const float* logits, const int32_t* labels, const float* weights,
                                  int64_t rows, int V, float* losses, float* dlogits,
                                  float grad_scale) {
  cuda::LaunchSoftmaxCrossEntropy(logits, labels, weights, rows, V, V, 0.0f, losses, dlogits,
                                  grad_scale, ctx());
  AfterOp("SoftmaxCrossEntropy");
}

void CudaOps::LabelSmoothedCrossEntropy(const float* logits, const int32_t* labels,
                                        const float* weights, int64_t rows, int V, int ld,
                                        float label_smoothing, float* losses, float* dlogits,
                                        float grad_scale) {
  cuda::LaunchSoftmaxCrossEntropy(logits, labels, weights, rows, V, ld, label_smoothing, losses,
                                  dlogits, grad_scale, ctx());
  AfterOp("LabelSmoothedCrossEntropy");
}

// ---- Reductions -------------------------------------------------------------------------------

void CudaOps::Dot(const float* a, const float* b, int64_t n, float* out) {
  cuda::LaunchDot(a, b, n, out, partials_, ctx());
  AfterOp("Dot");
}

// ---- Optimizers -------------------------------------------------------------------------------

void CudaOps::AdamW(float* w, const float* g, float* m, float* v, int64_t n,
                    const OptimizerStep& s) {
  cuda::LaunchAdamW(w, g, m, v, n, cuda::ToAdamParams(s), ctx());
  AfterOp("AdamW");
}

void CudaOps::Lamb(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
                   float* scratch) {
  cuda::LaunchLamb(w, g, m, v, n, cuda::ToAdamParams(s), scratch, norms_, partials_, ctx());
  AfterOp("Lamb");
}

}  // namespace headroom
