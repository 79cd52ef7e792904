// CpuBf16Ops (see cpu_bf16_ops.h): each A overload widens its Bf16 inputs into scratch, runs the
// twin's float op there and narrows its A outputs back; the T forms are forwarded in the header.
#include "kernels/cpu_bf16_ops.h"

#include <algorithm>
#include <utility>

#include "base/status_macros.h"

namespace headroom {

void NarrowToBf16(const float* src, Bf16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16(src[i]);
}

void WidenFromBf16(const Bf16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

absl::StatusOr<std::unique_ptr<CpuBf16Ops>> CpuBf16Ops::Create(
    Ops<float>* inner, const Bf16ActivationOptions& options,
    ResidualGradientStores residual_gradients) {
  if (inner == nullptr || inner->device() != DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        "CpuBf16Ops (bf16 activation storage) runs on the CPU backend only (train.precision=bf16 "
        "with --device=cpu)");
  }
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Bf16ActivationOps> twin,
                      Bf16ActivationOps::Create(inner, options));
  return std::unique_ptr<CpuBf16Ops>(new CpuBf16Ops(std::move(twin), residual_gradients));
}

CpuBf16Ops::CpuBf16Ops(std::unique_ptr<Bf16ActivationOps> twin,
                       ResidualGradientStores residual_gradients)
    : twin_(std::move(twin)), residual_gradients_(residual_gradients) {}

// ---- Scratch ------------------------------------------------------------------------------

float* CpuBf16Ops::Scratch(int slot, int64_t n) {
  std::vector<float>& s = scratch_[slot];
  if (s.size() < static_cast<size_t>(n)) s.resize(static_cast<size_t>(n));
  return s.data();
}

float* CpuBf16Ops::Widen(int slot, const A* x, int64_t n) {
  float* s = Scratch(slot, n);
  WidenFromBf16(x, s, n);
  return s;
}

namespace {

// Elements from the first to one past the last of `batch` matrices of `rows` rows of `cols`
// elements, rows ld apart and matrices stride apart (0 for an empty one).
int64_t MatrixSpan(int64_t rows, int64_t cols, int ld, int64_t stride, int batch) {
  if (rows <= 0 || cols <= 0 || batch <= 0) return 0;
  return (rows - 1) * ld + cols + static_cast<int64_t>(batch - 1) * stride;
}

}  // namespace

float* CpuBf16Ops::WidenMatrix(int slot, const A* x, Trans t, int rows, int cols, int ld,
                               int64_t stride, int batch, bool read) {
  const int stored_rows = t == Trans::kNo ? rows : cols;
  const int stored_cols = t == Trans::kNo ? cols : rows;
  const int64_t span = MatrixSpan(stored_rows, stored_cols, ld, stride, batch);
  return read ? Widen(slot, x, span) : Scratch(slot, span);
}

void CpuBf16Ops::NarrowMatrix(const float* from, int rows, int cols, int ld, int64_t stride,
                              int batch, A* to) {
  for (int b = 0; b < batch; ++b) {
    for (int r = 0; r < rows; ++r) {
      const int64_t at = b * stride + static_cast<int64_t>(r) * ld;
      NarrowToBf16(from + at, to + at, cols);
    }
  }
}

Ops<float>* CpuBf16Ops::ResidualGradientOps() const {
  // The operands are bf16 values already, so the inner op computes what the twin does, unrounded.
  if (residual_gradients_ == ResidualGradientStores::kFp32) return twin_->inner();
  return twin_.get();
}

template <typename F>
void CpuBf16Ops::InPlace(const A* x, A* y, int64_t n, F f) {
  float* s = Widen(0, x, n);
  f(s);
  NarrowToBf16(s, y, n);
}

template <typename F>
void CpuBf16Ops::InPlaceOnSecond(const A* x0, const A* x1, A* y, int64_t n, F f) {
  const float* s0 = Widen(0, x0, n);
  float* s1 = Widen(1, x1, n);
  f(s0, s1);
  NarrowToBf16(s1, y, n);
}

// ---- Conversion and elementwise -------------------------------------------------------------

void CpuBf16Ops::Convert(const T* src, A* dst, int64_t n) { NarrowToBf16(src, dst, n); }

void CpuBf16Ops::Convert(const A* src, T* dst, int64_t n) { WidenFromBf16(src, dst, n); }

void CpuBf16Ops::Scale(A* x, int64_t n, T alpha) {
  InPlace(x, x, n, [&](float* s) { twin_->Scale(s, n, alpha); });
}

void CpuBf16Ops::Add(const T* a, const A* b, T* out, int64_t n) {
  twin_->Add(a, Widen(0, b, n), out, n);
}

// ---- Matrix products ----------------------------------------------------------------------

void CpuBf16Ops::Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda,
                      const A* b, int ldb, T beta, A* c, int ldc) {
  const float* wa = WidenMatrix(0, a, ta, M, K, lda, 0, 1);
  const float* wb = WidenMatrix(1, b, tb, K, N, ldb, 0, 1);
  float* wc = WidenMatrix(2, c, Trans::kNo, M, N, ldc, 0, 1, /*read=*/beta != 0.0f);
  twin_->Gemm(ta, tb, M, N, K, alpha, wa, lda, wb, ldb, beta, wc, ldc);
  NarrowMatrix(wc, M, N, ldc, 0, 1, c);
}

void CpuBf16Ops::Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a, int lda,
                      const A* b, int ldb, T beta, T* c, int ldc) {
  const float* wa = WidenMatrix(0, a, ta, M, K, lda, 0, 1);
  const float* wb = WidenMatrix(1, b, tb, K, N, ldb, 0, 1);
  ResidualGradientOps()->Gemm(ta, tb, M, N, K, alpha, wa, lda, wb, ldb, beta, c, ldc);
}

void CpuBf16Ops::GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, T alpha, const A* a,
                                    int lda, int64_t stride_a, const A* b, int ldb,
                                    int64_t stride_b, T beta, A* c, int ldc, int64_t stride_c,
                                    int batch) {
  const float* wa = WidenMatrix(0, a, ta, M, K, lda, stride_a, batch);
  const float* wb = WidenMatrix(1, b, tb, K, N, ldb, stride_b, batch);
  float* wc = WidenMatrix(2, c, Trans::kNo, M, N, ldc, stride_c, batch, /*read=*/beta != 0.0f);
  twin_->GemmStridedBatched(ta, tb, M, N, K, alpha, wa, lda, stride_a, wb, ldb, stride_b, beta, wc,
                            ldc, stride_c, batch);
  NarrowMatrix(wc, M, N, ldc, stride_c, batch, c);
}

void CpuBf16Ops::Linear(const A* x, const A* w, const A* bias, int rows, int out, int in, A* y) {
  const int64_t ny = static_cast<int64_t>(rows) * out;
  const float* wx = Widen(0, x, static_cast<int64_t>(rows) * in);
  const float* ww = Widen(1, w, static_cast<int64_t>(out) * in);
  float* wy = Scratch(2, ny);
  const float* wb = bias != nullptr ? Widen(3, bias, out) : nullptr;
  twin_->Linear(wx, ww, wb, rows, out, in, wy);
  NarrowToBf16(wy, y, ny);
}

void CpuBf16Ops::LinearBackwardWeights(const A* dy, const A* x, int rows, int out, int in, T* dw,
                                       T* dbias) {
  const float* wdy = Widen(0, dy, static_cast<int64_t>(rows) * out);
  const float* wx = Widen(1, x, static_cast<int64_t>(rows) * in);
  twin_->LinearBackwardWeights(wdy, wx, rows, out, in, dw, dbias);
}

void CpuBf16Ops::PermuteHeads(const A* x, A* y, int B, int S, int H, int D, bool inverse) {
  const int64_t n = static_cast<int64_t>(B) * S * H * D;
  const float* wx = Widen(0, x, n);
  float* wy = Scratch(1, n);
  twin_->PermuteHeads(wx, wy, B, S, H, D, inverse);
  NarrowToBf16(wy, y, n);
}

// ---- Normalisation and activations ------------------------------------------------------------

void CpuBf16Ops::LayerNormForward(const A* x, const T* gamma, const T* beta, int64_t rows, int cols,
                                  T eps, A* y, T* mean, T* rstd) {
  // Slot 0 holds x; the T-input form below uses slot 1 for y.
  LayerNormForward(Widen(0, x, rows * cols), gamma, beta, rows, cols, eps, y, mean, rstd);
}

void CpuBf16Ops::LayerNormForward(const T* x, const T* gamma, const T* beta, int64_t rows, int cols,
                                  T eps, A* y, T* mean, T* rstd) {
  float* wy = Scratch(1, rows * cols);
  twin_->LayerNormForward(x, gamma, beta, rows, cols, eps, wy, mean, rstd);
  NarrowToBf16(wy, y, rows * cols);
}

void CpuBf16Ops::LayerNormBackward(const A* dy, const A* x, const T* gamma, const T* mean,
                                   const T* rstd, int64_t rows, int cols, A* dx, T* dgamma,
                                   T* dbeta) {
  // Slot 1 holds x; LayerNormBackwardInA uses slot 0 for dy and dx.
  LayerNormBackwardInA(dy, Widen(1, x, rows * cols), gamma, mean, rstd, rows, cols, dx, dgamma,
                       dbeta);
}

void CpuBf16Ops::LayerNormBackward(const A* dy, const T* x, const T* gamma, const T* mean,
                                   const T* rstd, int64_t rows, int cols, A* dx, T* dgamma,
                                   T* dbeta) {
  LayerNormBackwardInA(dy, x, gamma, mean, rstd, rows, cols, dx, dgamma, dbeta);
}

void CpuBf16Ops::LayerNormBackwardInA(const A* dy, const T* x, const T* gamma, const T* mean,
                                      const T* rstd, int64_t rows, int cols, A* dx, T* dgamma,
                                      T* dbeta) {
  // dx may alias dy (ops.h), so it is computed in place on dy's scratch.
  const int64_t n = rows * cols;
  float* wdy = Widen(0, dy, n);
  twin_->LayerNormBackward(wdy, x, gamma, mean, rstd, rows, cols, wdy, dgamma, dbeta);
  NarrowToBf16(wdy, dx, n);
}

void CpuBf16Ops::LayerNormInputFromOutput(const A* y, const T* gamma, const T* beta, const T* mean,
                                          const T* rstd, int64_t rows, int cols, T* x) {
  twin_->LayerNormInputFromOutput(Widen(0, y, rows * cols), gamma, beta, mean, rstd, rows, cols, x);
}

void CpuBf16Ops::ResidualLayerNormForward(const A* x, const A* sub, float rate,
                                          const DropoutKey& key, const T* gamma, const T* beta,
                                          int64_t rows, int cols, T eps, T* sum, A* y, T* mean,
                                          T* rstd) {
  const int64_t n = rows * cols;
  const float* wx = Widen(0, x, n);
  const float* wsub = Widen(1, sub, n);
  float* wy = Scratch(2, n);
  twin_->ResidualLayerNormForward(wx, wsub, rate, key, gamma, beta, rows, cols, eps, sum, wy, mean,
                                  rstd);
  NarrowToBf16(wy, y, n);
}

void CpuBf16Ops::ResidualLayerNormBackward(const T* dy, const T* sum, const T* gamma, const T* mean,
                                           const T* rstd, int64_t rows, int cols, float rate,
                                           const DropoutKey& key, T* dsum, A* dsub, T* dgamma,
                                           T* dbeta) {
  // With rate 0 dsub is not written (ops.h).
  const int64_t n = rows * cols;
  float* wdsub = rate > 0 ? Scratch(0, n) : nullptr;
  twin_->ResidualLayerNormBackward(dy, sum, gamma, mean, rstd, rows, cols, rate, key, dsum, wdsub,
                                   dgamma, dbeta);
  if (rate > 0) NarrowToBf16(wdsub, dsub, n);
}

void CpuBf16Ops::ActivationForward(Activation act, const A* x, A* y, int64_t n) {
  InPlace(x, y, n, [&](float* s) { twin_->ActivationForward(act, s, s, n); });
}

void CpuBf16Ops::ActivationBackward(Activation act, const A* x, const A* dy, A* dx, int64_t n) {
  InPlaceOnSecond(x, dy, dx, n, [&](const float* s0, float* s1) {
    twin_->ActivationBackward(act, s0, s1, s1, n);
  });
}

void CpuBf16Ops::TanhForward(const A* x, A* y, int64_t n) {
  InPlace(x, y, n, [&](float* s) { twin_->TanhForward(s, s, n); });
}

void CpuBf16Ops::TanhBackward(const A* y, const A* dy, A* dx, int64_t n) {
  InPlaceOnSecond(y, dy, dx, n,
                  [&](const float* s0, float* s1) { twin_->TanhBackward(s0, s1, s1, n); });
}

// ---- Attention ----------------------------------------------------------------------------

void CpuBf16Ops::SoftmaxForward(const A* scores, A* probs, int B, int H, int Sq, int Sk, T scale,
                                const int32_t* segments, bool causal) {
  const int64_t n = static_cast<int64_t>(B) * H * Sq * Sk;
  InPlace(scores, probs, n,
          [&](float* s) { twin_->SoftmaxForward(s, s, B, H, Sq, Sk, scale, segments, causal); });
}

void CpuBf16Ops::SoftmaxBackward(const A* probs, const A* dprobs, A* dscores, int64_t rows, int Sk,
                                 T scale) {
  InPlaceOnSecond(probs, dprobs, dscores, rows * Sk, [&](const float* s0, float* s1) {
    twin_->SoftmaxBackward(s0, s1, s1, rows, Sk, scale);
  });
}

void CpuBf16Ops::AttentionForward(const A* q, const A* k, const A* v, int B, int S, int H, int D,
                                  T scale, const int32_t* segments, bool causal, float dropout_rate,
                                  const DropoutKey& key, A* out, T* lse) {
  const int64_t n = static_cast<int64_t>(B) * S * H * D;
  const float* wq = Widen(0, q, n);
  const float* wk = Widen(1, k, n);
  const float* wv = Widen(2, v, n);
  float* wout = Scratch(3, n);
  twin_->AttentionForward(wq, wk, wv, B, S, H, D, scale, segments, causal, dropout_rate, key, wout,
                          lse);
  NarrowToBf16(wout, out, n);
}

void CpuBf16Ops::AttentionBackward(const A* q, const A* k, const A* v, const A* out, const A* dout,
                                   const T* lse, int B, int S, int H, int D, T scale,
                                   const int32_t* segments, bool causal, float dropout_rate,
                                   const DropoutKey& key, A* dq, A* dk, A* dv, T* delta) {
  const int64_t n = static_cast<int64_t>(B) * S * H * D;
  const float* wq = Widen(0, q, n);
  const float* wk = Widen(1, k, n);
  const float* wv = Widen(2, v, n);
  const float* wout = Widen(3, out, n);
  const float* wdout = Widen(4, dout, n);
  float* wdq = Scratch(5, n);
  float* wdk = Scratch(6, n);
  float* wdv = Scratch(7, n);
  twin_->AttentionBackward(wq, wk, wv, wout, wdout, lse, B, S, H, D, scale, segments, causal,
                           dropout_rate, key, wdq, wdk, wdv, delta);
  NarrowToBf16(wdq, dq, n);
  NarrowToBf16(wdk, dk, n);
  NarrowToBf16(wdv, dv, n);
}

// ---- Dropout, gathers ---------------------------------------------------------------------

void CpuBf16Ops::Dropout(const A* x, A* y, int64_t n, float rate, const DropoutKey& key) {
  InPlace(x, y, n, [&](float* s) { twin_->Dropout(s, s, n, rate, key); });
}

void CpuBf16Ops::Dropout(const T* x, A* y, int64_t n, float rate, const DropoutKey& key) {
  float* wy = Scratch(0, n);
  twin_->Dropout(x, wy, n, rate, key);
  NarrowToBf16(wy, y, n);
}

void CpuBf16Ops::GatherRows(const A* src, const int32_t* idx, int64_t m, int d, A* dst) {
  // src's row count is not passed: widen the rows up to the largest index read.
  int64_t src_rows = 0;
  for (int64_t i = 0; i < m; ++i) src_rows = std::max<int64_t>(src_rows, idx[i] + int64_t{1});
  const float* wsrc = Widen(0, src, src_rows * d);
  float* wdst = Scratch(1, m * d);
  twin_->GatherRows(wsrc, idx, m, d, wdst);
  NarrowToBf16(wdst, dst, m * d);
}

void CpuBf16Ops::ScatterAddRows(const A* src, const int32_t* idx, int64_t m, int d, T* dst) {
  ResidualGradientOps()->ScatterAddRows(Widen(0, src, m * d), idx, m, d, dst);
}

// ---- Loss ---------------------------------------------------------------------------------

void CpuBf16Ops::SoftmaxCrossEntropy(const A* logits, const int32_t* labels, const T* weights,
                                     int64_t rows, int V, T* losses, A* dlogits, T grad_scale) {
  // dlogits may alias logits (ops.h): the gradient is computed in place on the logits' scratch.
  const int64_t n = rows * V;
  float* wlogits = Widen(0, logits, n);
  float* wdlogits = dlogits != nullptr ? wlogits : nullptr;
  twin_->SoftmaxCrossEntropy(wlogits, labels, weights, rows, V, losses, wdlogits, grad_scale);
  if (dlogits != nullptr) NarrowToBf16(wdlogits, dlogits, n);
}

void CpuBf16Ops::LabelSmoothedCrossEntropy(const A* logits, const int32_t* labels, const T* weights,
                                           int64_t rows, int V, int ld, T label_smoothing,
                                           T* losses, A* dlogits, T grad_scale) {
  const int64_t n = rows * ld;
  float* wlogits = Widen(0, logits, n);
  float* wdlogits = dlogits != nullptr ? wlogits : nullptr;
  twin_->LabelSmoothedCrossEntropy(wlogits, labels, weights, rows, V, ld, label_smoothing, losses,
                                   wdlogits, grad_scale);
  if (dlogits != nullptr) NarrowToBf16(wdlogits, dlogits, n);
}

// ---- The model's input block ---------------------------------------------------------------

// The op by op sequence the fp32 model runs (so the twin's bits).
void CpuBf16Ops::EmbeddingLayerNormForward(const int32_t* ids, const T* word, T word_scale,
                                           const int32_t* positions, const T* pos_table,
                                           const int32_t* segments, const T* type_table,
                                           int64_t rows, int cols, const T* gamma, const T* beta,
                                           T eps, float rate, const DropoutKey& key, T* sum, A* y,
                                           T* mean, T* rstd) {
  EmbeddingLayerNormBySteps(*this, ids, word, word_scale, positions, pos_table, segments,
                            type_table, rows, cols, gamma, beta, eps, rate, key, sum, y, mean,
                            rstd);
}

// ---- Optimizer updates writing the weight mirror ---------------------------------------------

void CpuBf16Ops::AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, A* mirror) {
  twin_->AdamW(w, g, m, v, n, s);
  NarrowToBf16(w, mirror, n);
}

void CpuBf16Ops::Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s, T* scratch,
                      A* mirror) {
  twin_->Lamb(w, g, m, v, n, s, scratch);
  NarrowToBf16(w, mirror, n);
}

}  // namespace headroom
