// Bf16ActivationOps (see bf16_activation_ops.h): each override runs the inner op through
// ForwardingOps (so hooks still run once) and then rounds the outputs that bf16 storage holds.
#include "kernels/bf16_activation_ops.h"

#include <algorithm>

#include "base/bf16.h"

namespace headroom {

void RoundToBf16InPlace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = RoundToBf16(x[i]);
}

absl::StatusOr<std::unique_ptr<Bf16ActivationOps>> Bf16ActivationOps::Create(
    Ops<float>* inner, const Bf16ActivationOptions& options) {
  if (inner == nullptr || inner->device() != DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        "the bf16 activation twin runs on the CPU backend only (train.precision=bf16 with "
        "--device=cpu)");
  }
  return std::unique_ptr<Bf16ActivationOps>(new Bf16ActivationOps(inner, options));
}

Bf16ActivationOps::Bf16ActivationOps(Ops<float>* inner, const Bf16ActivationOptions& options)
    : ForwardingOps<float>(inner), options_(options) {}

bool Bf16ActivationOps::PrefersFusedAttention(int head_size) const {
  (void)head_size;
  return true;
}

const float* Bf16ActivationOps::Bf16Operand(int slot, const float* x, Trans t, int rows, int cols,
                                            int ld, int64_t stride, int batch) {
  const int64_t stored_rows = t == Trans::kNo ? rows : cols;
  const int64_t stored_cols = t == Trans::kNo ? cols : rows;
  if (stored_rows == 0 || stored_cols == 0 || batch == 0) return x;
  const int64_t extent =
      (stored_rows - 1) * ld + stored_cols + static_cast<int64_t>(batch - 1) * stride;
  std::vector<float>& copy = operand_[slot];
  copy.resize(static_cast<size_t>(extent));
  for (int64_t i = 0; i < extent; ++i) copy[static_cast<size_t>(i)] = RoundToBf16(x[i]);
  return copy.data();
}

void Bf16ActivationOps::RoundMatrix(float* c, int rows, int cols, int ldc, int64_t stride,
                                    int batch) {
  for (int b = 0; b < batch; ++b) {
    for (int r = 0; r < rows; ++r) {
      RoundToBf16InPlace(c + b * stride + static_cast<int64_t>(r) * ldc, cols);
    }
  }
}

void Bf16ActivationOps::RoundResidual(float* x, int64_t n) const {
  if (!options_.fp32_residual) RoundToBf16InPlace(x, n);
}

void Bf16ActivationOps::Scale(float* x, int64_t n, float alpha) {
  ForwardingOps<float>::Scale(x, n, alpha);
  RoundResidual(x, n);  // the model scales the embedding sum and its gradient, and loss gradients
}

void Bf16ActivationOps::Add(const float* a, const float* b, float* out, int64_t n) {
  ForwardingOps<float>::Add(a, b, out, n);
  RoundResidual(out, n);
}

void Bf16ActivationOps::Axpy(float alpha, const float* x, float* y, int64_t n) {
  ForwardingOps<float>::Axpy(alpha, x, y, n);
  RoundToBf16InPlace(y, n);
}

void Bf16ActivationOps::Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A,
                             int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  const float* a = Bf16Operand(0, A, ta, M, K, lda, 0, 1);
  const float* b = Bf16Operand(1, B, tb, K, N, ldb, 0, 1);
  ForwardingOps<float>::Gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
  RoundMatrix(C, M, N, ldc, 0, 1);
}

void Bf16ActivationOps::GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha,
                                           const float* A, int lda, int64_t stride_a,
                                           const float* B, int ldb, int64_t stride_b, float beta,
                                           float* C, int ldc, int64_t stride_c, int batch) {
  const float* a = Bf16Operand(0, A, ta, M, K, lda, stride_a, batch);
  const float* b = Bf16Operand(1, B, tb, K, N, ldb, stride_b, batch);
  ForwardingOps<float>::GemmStridedBatched(ta, tb, M, N, K, alpha, a, lda, stride_a, b, ldb,
                                           stride_b, beta, C, ldc, stride_c, batch);
  RoundMatrix(C, M, N, ldc, stride_c, batch);
}

void Bf16ActivationOps::Linear(const float* x, const float* w, const float* bias, int rows, int out,
                               int in, float* y) {
  const float* xb = Bf16Operand(0, x, Trans::kNo, rows, in, in, 0, 1);
  const float* wb = Bf16Operand(1, w, Trans::kNo, out, in, in, 0, 1);  // the weight mirror
  const float* bb = bias != nullptr ? Bf16Operand(2, bias, Trans::kNo, 1, out, out, 0, 1) : nullptr;
  ForwardingOps<float>::Linear(xb, wb, bb, rows, out, in, y);
  RoundToBf16InPlace(y, static_cast<int64_t>(rows) * out);
}

void Bf16ActivationOps::LinearBackwardWeights(const float* dy, const float* x, int rows, int out,
                                              int in, float* dw, float* dbias) {
  const float* dyb = Bf16Operand(0, dy, Trans::kNo, rows, out, out, 0, 1);
  const float* xb = Bf16Operand(1, x, Trans::kNo, rows, in, in, 0, 1);
  ForwardingOps<float>::LinearBackwardWeights(dyb, xb, rows, out, in, dw, dbias);  // fp32
}

void Bf16ActivationOps::AddBias(float* x, const float* bias, int64_t rows, int cols) {
  ForwardingOps<float>::AddBias(x, bias, rows, cols);
  RoundToBf16InPlace(x, rows * cols);
}

void Bf16ActivationOps::LayerNormForward(const float* x, const float* gamma, const float* beta,
                                         int64_t rows, int cols, float eps, float* y, float* mean,
                                         float* rstd) {
  ForwardingOps<float>::LayerNormForward(x, gamma, beta, rows, cols, eps, y, mean, rstd);
  RoundToBf16InPlace(y, rows * cols);
}

void Bf16ActivationOps::LayerNormBackward(const float* dy, const float* x, const float* gamma,
                                          const float* mean, const float* rstd, int64_t rows,
                                          int cols, float* dx, float* dgamma, float* dbeta) {
  ForwardingOps<float>::LayerNormBackward(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
  RoundToBf16InPlace(dx, rows * cols);
}

void Bf16ActivationOps::LayerNormInputFromOutput(const float* y, const float* gamma,
                                                 const float* beta, const float* mean,
                                                 const float* rstd, int64_t rows, int cols,
                                                 float* x) {
  ForwardingOps<float>::LayerNormInputFromOutput(y, gamma, beta, mean, rstd, rows, cols, x);
  RoundResidual(x, rows * cols);
}

void Bf16ActivationOps::ResidualLayerNormForward(const float* x, const float* sub, float rate,
                                                 const DropoutKey& key, const float* gamma,
                                                 const float* beta, int64_t rows, int cols,
                                                 float eps, float* sum, float* y, float* mean,
                                                 float* rstd) {
  // The inner op's default recomputes nothing from `sum` after writing it, so rounding it
  // afterwards stores what a fused kernel that normalises the fp32 sum and stores it in bf16
  // would.
  ForwardingOps<float>::ResidualLayerNormForward(x, sub, rate, key, gamma, beta, rows, cols, eps,
                                                 sum, y, mean, rstd);
  RoundResidual(sum, rows * cols);
  RoundToBf16InPlace(y, rows * cols);
}

void Bf16ActivationOps::ResidualLayerNormBackward(const float* dy, const float* sum,
                                                  const float* gamma, const float* mean,
                                                  const float* rstd, int64_t rows, int cols,
                                                  float rate, const DropoutKey& key, float* dsum,
                                                  float* dsub, float* dgamma, float* dbeta) {
  ForwardingOps<float>::ResidualLayerNormBackward(dy, sum, gamma, mean, rstd, rows, cols, rate, key,
                                                  dsum, dsub, dgamma, dbeta);
  RoundResidual(dsum, rows * cols);
  if (rate > 0) RoundToBf16InPlace(dsub, rows * cols);
}

void Bf16ActivationOps::GeluForward(const float* x, float* y, int64_t n) {
  ForwardingOps<float>::GeluForward(x, y, n);
  RoundToBf16InPlace(y, n);
}

void Bf16ActivationOps::GeluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  ForwardingOps<float>::GeluBackward(x, dy, dx, n);
  RoundToBf16InPlace(dx, n);
}

void Bf16ActivationOps::ActivationForward(Activation act, const float* x, float* y, int64_t n) {
  ForwardingOps<float>::ActivationForward(act, x, y, n);
  RoundToBf16InPlace(y, n);
}

void Bf16ActivationOps::ActivationBackward(Activation act, const float* x, const float* dy,
                                           float* dx, int64_t n) {
  ForwardingOps<float>::ActivationBackward(act, x, dy, dx, n);
  RoundToBf16InPlace(dx, n);
}

void Bf16ActivationOps::TanhForward(const float* x, float* y, int64_t n) {
  ForwardingOps<float>::TanhForward(x, y, n);
  RoundToBf16InPlace(y, n);
}

void Bf16ActivationOps::TanhBackward(const float* y, const float* dy, float* dx, int64_t n) {
  ForwardingOps<float>::TanhBackward(y, dy, dx, n);
  RoundToBf16InPlace(dx, n);
}

void Bf16ActivationOps::SoftmaxForward(const float* scores, float* probs, int B, int H, int Sq,
                                       int Sk, float scale, const int32_t* segments, bool causal) {
  ForwardingOps<float>::SoftmaxForward(scores, probs, B, H, Sq, Sk, scale, segments, causal);
  RoundToBf16InPlace(probs, static_cast<int64_t>(B) * H * Sq * Sk);
}

void Bf16ActivationOps::SoftmaxBackward(const float* probs, const float* dprobs, float* dscores,
                                        int64_t rows, int Sk, float scale) {
  ForwardingOps<float>::SoftmaxBackward(probs, dprobs, dscores, rows, Sk, scale);
  RoundToBf16InPlace(dscores, rows * Sk);
}

void Bf16ActivationOps::AttentionForward(const float* q, const float* k, const float* v, int B,
                                         int S, int H, int D, float scale, const int32_t* segments,
                                         bool causal, float dropout_rate, const DropoutKey& key,
                                         float* out, float* lse) {
  ForwardingOps<float>::AttentionForward(q, k, v, B, S, H, D, scale, segments, causal, dropout_rate,
                                         key, out, lse);
  RoundToBf16InPlace(out, static_cast<int64_t>(B) * S * H * D);  // lse stays fp32
}

void Bf16ActivationOps::AttentionBackward(const float* q, const float* k, const float* v,
                                          const float* out, const float* dout, const float* lse,
                                          int B, int S, int H, int D, float scale,
                                          const int32_t* segments, bool causal, float dropout_rate,
                                          const DropoutKey& key, float* dq, float* dk, float* dv,
                                          float* delta) {
  ForwardingOps<float>::AttentionBackward(q, k, v, out, dout, lse, B, S, H, D, scale, segments,
                                          causal, dropout_rate, key, dq, dk, dv, delta);
  const int64_t n = static_cast<int64_t>(B) * S * H * D;
  RoundToBf16InPlace(dq, n);
  RoundToBf16InPlace(dk, n);
  RoundToBf16InPlace(dv, n);
}

void Bf16ActivationOps::Dropout(const float* x, float* y, int64_t n, float rate,
                                const DropoutKey& key) {
  ForwardingOps<float>::Dropout(x, y, n, rate, key);
  RoundToBf16InPlace(y, n);
}

void Bf16ActivationOps::EmbeddingForward(const int32_t* ids, const float* table, int64_t n, int d,
                                         float* out, bool accumulate) {
  ForwardingOps<float>::EmbeddingForward(ids, table, n, d, out, accumulate);
  RoundResidual(out, n * d);
}

void Bf16ActivationOps::GatherRows(const float* src, const int32_t* idx, int64_t m, int d,
                                   float* dst) {
  ForwardingOps<float>::GatherRows(src, idx, m, d, dst);
  RoundToBf16InPlace(dst, m * d);
}

void Bf16ActivationOps::ScatterAddRows(const float* src, const int32_t* idx, int64_t m, int d,
                                       float* dst) {
  ForwardingOps<float>::ScatterAddRows(src, idx, m, d, dst);
  for (int64_t i = 0; i < m; ++i) {
    if (idx[i] >= 0) RoundToBf16InPlace(dst + static_cast<int64_t>(idx[i]) * d, d);
  }
}

void Bf16ActivationOps::SoftmaxCrossEntropy(const float* logits, const int32_t* labels,
                                            const float* weights, int64_t rows, int V,
                                            float* losses, float* dlogits, float grad_scale) {
  ForwardingOps<float>::SoftmaxCrossEntropy(logits, labels, weights, rows, V, losses, dlogits,
                                            grad_scale);
  if (dlogits != nullptr) RoundToBf16InPlace(dlogits, rows * V);  // losses stay fp32
}

void Bf16ActivationOps::LabelSmoothedCrossEntropy(const float* logits, const int32_t* labels,
                                                  const float* weights, int64_t rows, int V, int ld,
                                                  float label_smoothing, float* losses,
                                                  float* dlogits, float grad_scale) {
  ForwardingOps<float>::LabelSmoothedCrossEntropy(logits, labels, weights, rows, V, ld,
                                                  label_smoothing, losses, dlogits, grad_scale);
  if (dlogits != nullptr) RoundToBf16InPlace(dlogits, rows * ld);
}

}  // namespace headroom
