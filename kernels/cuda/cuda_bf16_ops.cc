// CudaOps' bf16-activation half: the A-typed overloads of Ops<float, Bf16> (kernels/mixed_ops.h)
// on the bf16 launchers of kernels/cuda/launch.h, whose device code runs in CI under the emulation
// against the CPU twin. Each op keeps its Ops<T> contract; bf16 buffers are read as they are and
// written rounded to nearest even, fp32 ones (statistics, the residual stream and its gradient,
// parameter gradients) are not rounded. GEMMs multiply bf16 operands with fp32 accumulation
// (CUBLAS_COMPUTE_32F: the operands are bf16 already), into bf16 or fp32.
//
// Base/bf16.h's Bf16 and CUDA's __nv_bfloat16 are both the 16 bits of a bf16 value; the pointers
// are reinterpreted at this boundary (Dev).
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch.h"

namespace headroom {

namespace {

static_assert(sizeof(Bf16) == sizeof(__nv_bfloat16), "both are the 16 bits of a bf16");

__nv_bfloat16* Dev(Bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
const __nv_bfloat16* Dev(const Bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }

}  // namespace

void CudaOps::RunBf16Gemm(cuda::GemmCall call, const char* op) {
  call.ab_type = CUDA_R_16BF;
  gemm_->Run(call, cuda::GemmPrecision::kFp32, ctx());
  AfterOp(op);
}

void CudaOps::Convert(const float* src, A* dst, int64_t n) {
  cuda::LaunchConvert(src, Dev(dst), n, ctx());
  AfterOp("Convert");
}

void CudaOps::Convert(const A* src, float* dst, int64_t n) {
  cuda::LaunchConvert(Dev(src), dst, n, ctx());
  AfterOp("Convert");
}

void CudaOps::Scale(A* x, int64_t n, float alpha) {
  cuda::LaunchScale(Dev(x), n, alpha, ctx());
  AfterOp("Scale");
}

void CudaOps::Add(const float* a, const A* b, float* out, int64_t n) {
  cuda::LaunchAdd(a, Dev(b), out, n, ctx());
  AfterOp("Add");
}

void CudaOps::Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const A* a, int lda,
                   const A* b, int ldb, float beta, A* c, int ldc) {
  GemmStridedBatched(ta, tb, M, N, K, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

void CudaOps::Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const A* a, int lda,
                   const A* b, int ldb, float beta, float* c, int ldc) {
  RunBf16Gemm(cuda::StridedBatchedCall(ta == Trans::kYes, tb == Trans::kYes, M, N, K, alpha, a, lda,
                                       0, b, ldb, 0, beta, c, ldc, 0, 1),
              "Gemm");
}

void CudaOps::GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha, const A* a,
                                 int lda, int64_t stride_a, const A* b, int ldb, int64_t stride_b,
                                 float beta, A* c, int ldc, int64_t stride_c, int batch) {
  cuda::GemmCall call =
      cuda::StridedBatchedCall(ta == Trans::kYes, tb == Trans::kYes, M, N, K, alpha, a, lda,
                               stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch);
  call.c_type = CUDA_R_16BF;
  RunBf16Gemm(call, "Gemm");
}

void CudaOps::Linear(const A* x, const A* w, const A* bias, int rows, int out, int in, A* y) {
  // y = x w^T + bias in fp32, rounded once (the runner adds a bf16 C's bias before rounding).
  cuda::GemmCall call = cuda::StridedBatchedCall(false, true, rows, out, in, 1.0f, x, in, 0, w, in,
                                                 0, 0.0f, y, out, 0, 1);
  call.c_type = CUDA_R_16BF;
  call.bias = bias;
  RunBf16Gemm(call, "Linear");
}

void CudaOps::LinearBackwardWeights(const A* dy, const A* x, int rows, int out, int in, float* dw,
                                    float* dbias) {
  // The bias gradient from the GEMM's epilogue where an algorithm offers it (fp32 sums of the
  // bf16 dy), else its own column sums, as the float op.
  if (!WeightGradient(dy, x, CUDA_R_16BF, rows, out, in, dw, dbias, cuda::GemmPrecision::kFp32) &&
      dbias != nullptr) {
    cuda::LaunchColumnSums(Dev(dy), rows, out, dbias, colsum_scratch_, ctx());
  }
  AfterOp("LinearBackwardWeights");
}

void CudaOps::PermuteHeads(const A* x, A* y, int B, int S, int H, int D, bool inverse) {
  cuda::LaunchPermuteHeads(Dev(x), Dev(y), B, S, H, D, inverse, ctx());
  AfterOp("PermuteHeads");
}

void CudaOps::LayerNormForward(const A* x, const float* gamma, const float* beta, int64_t rows,
                               int cols, float eps, A* y, float* mean, float* rstd) {
  cuda::LaunchLayerNormForward(Dev(x), gamma, beta, rows, cols, eps, Dev(y), mean, rstd, ctx());
  AfterOp("LayerNormForward");
}

void CudaOps::LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                               int cols, float eps, A* y, float* mean, float* rstd) {
  cuda::LaunchLayerNormForward(x, gamma, beta, rows, cols, eps, Dev(y), mean, rstd, ctx());
  AfterOp("LayerNormForward");
}

void CudaOps::LayerNormBackward(const A* dy, const A* x, const float* gamma, const float* mean,
                                const float* rstd, int64_t rows, int cols, A* dx, float* dgamma,
                                float* dbeta) {
  cuda::LaunchLayerNormBackward(Dev(dy), Dev(x), gamma, mean, rstd, rows, cols, Dev(dx), dgamma,
                                dbeta, colsum_scratch_, ctx());
  AfterOp("LayerNormBackward");
}

void CudaOps::LayerNormBackward(const A* dy, const float* x, const float* gamma, const float* mean,
                                const float* rstd, int64_t rows, int cols, A* dx, float* dgamma,
                                float* dbeta) {
  cuda::LaunchLayerNormBackward(Dev(dy), x, gamma, mean, rstd, rows, cols, Dev(dx), dgamma, dbeta,
                                colsum_scratch_, ctx());
  AfterOp("LayerNormBackward");
}

void CudaOps::LayerNormInputFromOutput(const A* y, const float* gamma, const float* beta,
                                       const float* mean, const float* rstd, int64_t rows, int cols,
                                       float* x) {
  cuda::LaunchLayerNormInputFromOutput(Dev(y), gamma, beta, mean, rstd, rows, cols, x, ctx());
  AfterOp("LayerNormInputFromOutput");
}

void CudaOps::ResidualLayerNormForward(const A* x, const A* sub, float rate, const DropoutKey& key,
                                       const float* gamma, const float* beta, int64_t rows,
                                       int cols, float eps, float* sum, A* y, float* mean,
                                       float* rstd) {
  cuda::LaunchResidualLayerNormForward(Dev(x), Dev(sub), rate, key.seed, key.step, key.layer,
                                       key.site, gamma, beta, rows, cols, eps, sum, Dev(y), mean,
                                       rstd, ctx());
  AfterOp("ResidualLayerNormForward");
}

void CudaOps::ResidualLayerNormBackward(const float* dy, const float* sum, const float* gamma,
                                        const float* mean, const float* rstd, int64_t rows,
                                        int cols, float rate, const DropoutKey& key, float* dsum,
                                        A* dsub, float* dgamma, float* dbeta) {
  cuda::LaunchResidualLayerNormBackward(dy, sum, gamma, mean, rstd, rows, cols, rate, key.seed,
                                        key.step, key.layer, key.site, dsum, Dev(dsub), dgamma,
                                        dbeta, colsum_scratch_, ctx());
  AfterOp("ResidualLayerNormBackward");
}

void CudaOps::ActivationForward(Activation act, const A* x, A* y, int64_t n) {
  switch (act) {
    case Activation::kGelu:
      cuda::LaunchGeluForward(Dev(x), Dev(y), n, ctx());
      break;
    case Activation::kGeluTanh:
      cuda::LaunchGeluTanhForward(Dev(x), Dev(y), n, ctx());
      break;
    case Activation::kRelu:
      cuda::LaunchReluForward(Dev(x), Dev(y), n, ctx());
      break;
  }
  AfterOp("ActivationForward");
}

void CudaOps::ActivationBackward(Activation act, const A* x, const A* dy, A* dx, int64_t n) {
  switch (act) {
    case Activation::kGelu:
      cuda::LaunchGeluBackward(Dev(x), Dev(dy), Dev(dx), n, ctx());
      break;
    case Activation::kGeluTanh:
      cuda::LaunchGeluTanhBackward(Dev(x), Dev(dy), Dev(dx), n, ctx());
      break;
    case Activation::kRelu:
      cuda::LaunchReluBackward(Dev(x), Dev(dy), Dev(dx), n, ctx());
      break;
  }
  AfterOp("ActivationBackward");
}

void CudaOps::TanhForward(const A* x, A* y, int64_t n) {
  cuda::LaunchTanhForward(Dev(x), Dev(y), n, ctx());
  AfterOp("TanhForward");
}

void CudaOps::TanhBackward(const A* y, const A* dy, A* dx, int64_t n) {
  cuda::LaunchTanhBackward(Dev(y), Dev(dy), Dev(dx), n, ctx());
  AfterOp("TanhBackward");
}

void CudaOps::SoftmaxForward(const A* scores, A* probs, int B, int H, int Sq, int Sk, float scale,
                             const int32_t* segments, bool causal) {
  cuda::LaunchSoftmaxForward(Dev(scores), Dev(probs), B, H, Sq, Sk, scale, segments, causal, ctx());
  AfterOp("SoftmaxForward");
}

void CudaOps::SoftmaxBackward(const A* probs, const A* dprobs, A* dscores, int64_t rows, int Sk,
                              float scale) {
  cuda::LaunchSoftmaxBackward(Dev(probs), Dev(dprobs), Dev(dscores), rows, Sk, scale, ctx());
  AfterOp("SoftmaxBackward");
}

void CudaOps::AttentionForward(const A* q, const A* k, const A* v, int B, int S, int H, int D,
                               float scale, const int32_t* segments, bool causal,
                               float dropout_rate, const DropoutKey& key, A* out, float* lse) {
  cuda::LaunchAttentionForward(Dev(q), Dev(k), Dev(v), B, S, H, D, scale, segments, causal,
                               dropout_rate, key.seed, key.step, key.layer, key.site, Dev(out), lse,
                               ctx());
  AfterOp("AttentionForward");
}

void CudaOps::AttentionBackward(const A* q, const A* k, const A* v, const A* out, const A* dout,
                                const float* lse, int B, int S, int H, int D, float scale,
                                const int32_t* segments, bool causal, float dropout_rate,
                                const DropoutKey& key, A* dq, A* dk, A* dv, float* delta) {
  cuda::LaunchAttentionBackward(Dev(q), Dev(k), Dev(v), Dev(out), Dev(dout), lse, B, S, H, D, scale,
                                segments, causal, dropout_rate, key.seed, key.step, key.layer,
                                key.site, Dev(dq), Dev(dk), Dev(dv), delta, scratch_, ctx());
  AfterOp("AttentionBackward");
}

void CudaOps::Dropout(const A* x, A* y, int64_t n, float rate, const DropoutKey& key) {
  cuda::LaunchDropout(Dev(x), Dev(y), n, rate, key.seed, key.step, key.layer, key.site, ctx());
  AfterOp("Dropout");
}

void CudaOps::Dropout(const float* x, A* y, int64_t n, float rate, const DropoutKey& key) {
  cuda::LaunchDropout(x, Dev(y), n, rate, key.seed, key.step, key.layer, key.site, ctx());
  AfterOp("Dropout");
}

void CudaOps::GatherRows(const A* src, const int32_t* idx, int64_t m, int d, A* dst) {
  cuda::LaunchGatherRows(Dev(src), idx, m, d, Dev(dst), ctx());
  AfterOp("GatherRows");
}

void CudaOps::ScatterAddRows(const A* src, const int32_t* idx, int64_t m, int d, float* dst) {
  cuda::LaunchScatterAddRows(Dev(src), idx, m, d, dst, scratch_, ctx());
  AfterOp("ScatterAddRows");
}

void CudaOps::SoftmaxCrossEntropy(const A* logits, const int32_t* labels, const float* weights,
                                  int64_t rows, int V, float* losses, A* dlogits,
                                  float grad_scale) {
  cuda::LaunchSoftmaxCrossEntropy(Dev(logits), labels, weights, rows, V, V, 0.0f, losses,
                                  Dev(dlogits), grad_scale, ctx());
  AfterOp("SoftmaxCrossEntropy");
}

void CudaOps::LabelSmoothedCrossEntropy(const A* logits, const int32_t* labels,
                                        const float* weights, int64_t rows, int V, int ld,
                                        float label_smoothing, float* losses, A* dlogits,
                                        float grad_scale) {
  cuda::LaunchSoftmaxCrossEntropy(Dev(logits), labels, weights, rows, V, ld, label_smoothing,
                                  losses, Dev(dlogits), grad_scale, ctx());
  AfterOp("LabelSmoothedCrossEntropy");
}

// ---- The model's input block (embedding.cu) -----------------------------------------------

void CudaOps::EmbeddingLayerNormForward(const int32_t* ids, const float* word, float word_scale,
                                        const int32_t* positions, const float* pos_table,
                                        const int32_t* segments, const float* type_table,
                                        int64_t rows, int cols, const float* gamma,
                                        const float* beta, float eps, float rate,
                                        const DropoutKey& key, float* sum, A* y, float* mean,
                                        float* rstd) {
  if (gamma != nullptr) {  // post-LN: the fp32 sum the LayerNorm backward reads, y in bf16
    cuda::LaunchEmbeddingLayerNormForward(
        ids, word, word_scale, positions, pos_table, segments, type_table, rows, cols, gamma, beta,
        eps, rate, key.seed, key.step, key.layer, key.site, sum, Dev(y), mean, rstd, ctx());
  } else {  // pre-LN: dropout(e) is the fp32 residual stream h_0
    cuda::LaunchEmbeddingLayerNormForward(ids, word, word_scale, positions, pos_table, segments,
                                          type_table, rows, cols, nullptr, nullptr, eps, rate,
                                          key.seed, key.step, key.layer, key.site, nullptr, sum,
                                          nullptr, nullptr, ctx());
  }
  AfterOp("EmbeddingLayerNormForward");
}

// ---- Optimizer updates writing the weight mirror (optimizer.cu) -------------------------------

void CudaOps::AdamW(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
                    A* mirror) {
  cuda::LaunchAdamW(w, g, m, v, n, cuda::ToAdamParams(s), Dev(mirror), ctx());
  AfterOp("AdamW");
}

void CudaOps::Lamb(float* w, const float* g, float* m, float* v, int64_t n, const OptimizerStep& s,
                   float* scratch, A* mirror) {
  cuda::LaunchLamb(w, g, m, v, n, cuda::ToAdamParams(s), scratch, norms_, partials_, Dev(mirror),
                   ctx());
  AfterOp("Lamb");
}

}  // namespace headroom
