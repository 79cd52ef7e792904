// ProfilingOps: per-op wall time over ForwardingOps' hooks; see profiling_ops.h.
#include "kernels/profiling_ops.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace headroom {
namespace {

// " NT" for (kNo, kYes): the operands' transposition as in the profile's keys.
std::string TransSuffix(Trans ta, Trans tb) {
  return absl::StrCat(ta == Trans::kYes ? " T" : " N", tb == Trans::kYes ? "T" : "N");
}

}  // namespace

void ProfilingOps::BeforeOp(const char* name) {
  if (!IsComputeOp(name)) return;
  start_ = Clock::now();
}

void ProfilingOps::AfterOp(const char* name) {
  if (!IsComputeOp(name)) return;
  inner()->Synchronize();
  Entry& e = entries_[label_.empty() ? std::string(name) : label_];
  e.seconds += Seconds(start_, Clock::now());
  e.calls += 1;
  e.flops += flops_;
  label_.clear();
  flops_ = 0;
}

void ProfilingOps::Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A,
                        int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  Label(absl::StrCat("Gemm ", M, "x", N, "x", K, TransSuffix(ta, tb)), 2.0 * M * N * K);
  ForwardingOps<float>::Gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ProfilingOps::GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha,
                                      const float* A, int lda, int64_t stride_a, const float* B,
                                      int ldb, int64_t stride_b, float beta, float* C, int ldc,
                                      int64_t stride_c, int batch) {
  Label(absl::StrCat("GemmStridedBatched ", batch, "x", M, "x", N, "x", K, TransSuffix(ta, tb)),
        2.0 * batch * M * N * K);
  ForwardingOps<float>::GemmStridedBatched(ta, tb, M, N, K, alpha, A, lda, stride_a, B, ldb,
                                           stride_b, beta, C, ldc, stride_c, batch);
}

void ProfilingOps::Linear(const float* x, const float* w, const float* bias, int rows, int out,
                          int in, float* y) {
  Label(absl::StrCat("Linear ", rows, "x", out, "x", in), 2.0 * rows * out * in);
  ForwardingOps<float>::Linear(x, w, bias, rows, out, in, y);
}

void ProfilingOps::LinearBackwardWeights(const float* dy, const float* x, int rows, int out, int in,
                                         float* dw, float* dbias) {
  Label(absl::StrCat("LinearBackwardWeights ", out, "x", in, "x", rows), 2.0 * rows * out * in);
  ForwardingOps<float>::LinearBackwardWeights(dy, x, rows, out, in, dw, dbias);
}

void ProfilingOps::AttentionForward(const float* q, const float* k, const float* v, int B, int S,
                                    int H, int D, float scale, const int32_t* key_valid,
                                    bool causal, float dropout_rate, const DropoutKey& key,
                                    float* out, float* lse) {
  Label(absl::StrCat("AttentionForward ", B * H, "x", S, "x", D), 4.0 * B * H * S * S * D);
  ForwardingOps<float>::AttentionForward(q, k, v, B, S, H, D, scale, key_valid, causal,
                                         dropout_rate, key, out, lse);
}

void ProfilingOps::AttentionBackward(const float* q, const float* k, const float* v,
                                     const float* out, const float* dout, const float* lse, int B,
                                     int S, int H, int D, float scale, const int32_t* key_valid,
                                     bool causal, float dropout_rate, const DropoutKey& key,
                                     float* dq, float* dk, float* dv, float* delta) {
  // The model's count: 8 S^2 D per head (dP, dV, dQ, dK), recomputation not counted.
  Label(absl::StrCat("AttentionBackward ", B * H, "x", S, "x", D), 8.0 * B * H * S * S * D);
  ForwardingOps<float>::AttentionBackward(q, k, v, out, dout, lse, B, S, H, D, scale, key_valid,
                                          causal, dropout_rate, key, dq, dk, dv, delta);
}

}  // namespace headroom
