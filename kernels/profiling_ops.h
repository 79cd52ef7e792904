// ProfilingOps: an Ops<float> that forwards every op to another (ForwardingOps,
// kernels/forwarding_ops.h) and adds up the wall time of each computation, synchronising after
// each so that the time is the op's own. `headroom bench --profile` uses it to show where a
// step goes.
//
// Entries are keyed by op name; matrix products and fused attention add their shape ("Gemm
// 128x768x768 NT", "Linear 512x3072x768", "AttentionForward 48x128x64") and count their FLOPs,
// so a GFLOP/s per shape can be printed. Memory, transfers and Synchronize are forwarded but not
// timed.
//
// Example:
//   ProfilingOps profiler(ops.get());
//   model = Model<float>::Create(config, &profiler, limits).value();
//   ... steps ...
//   for (const auto& [name, e] : profiler.entries()) std::printf("%s %.3f s\n", name, e.seconds);
#ifndef HEADROOM_KERNELS_PROFILING_OPS_H_
#define HEADROOM_KERNELS_PROFILING_OPS_H_

#include <cstdint>
#include <map>
#include <string>

#include "base/clock.h"
#include "kernels/forwarding_ops.h"

namespace headroom {

class ProfilingOps final : public ForwardingOps<float> {
 public:
  explicit ProfilingOps(Ops<float>* inner) : ForwardingOps<float>(inner) {}

  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
    double flops = 0;
  };
  // By op name (and shape for the products), since construction or Reset().
  const std::map<std::string, Entry>& entries() const { return entries_; }
  void Reset() { entries_.clear(); }

  // The ops whose key carries a shape and whose FLOPs are counted.
  void Gemm(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;
  void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, float alpha, const float* A,
                          int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b,
                          float beta, float* C, int ldc, int64_t stride_c, int batch) override;
  void Linear(const float* x, const float* w, const float* bias, int rows, int out, int in,
              float* y) override;
  void LinearBackwardWeights(const float* dy, const float* x, int rows, int out, int in, float* dw,
                             float* dbias) override;
  void AttentionForward(const float* q, const float* k, const float* v, int B, int S, int H, int D,
                        float scale, const int32_t* key_valid, bool causal, float dropout_rate,
                        const DropoutKey& key, float* out, float* lse) override;
  void AttentionBackward(const float* q, const float* k, const float* v, const float* out,
                         const float* dout, const float* lse, int B, int S, int H, int D,
                         float scale, const int32_t* key_valid, bool causal, float dropout_rate,
                         const DropoutKey& key, float* dq, float* dk, float* dv,
                         float* delta) override;

 protected:
  void BeforeOp(const char* name) override;
  void AfterOp(const char* name) override;

 private:
  // The key and FLOPs of the next op, set by the overrides above (empty: the op's name).
  void Label(std::string key, double flops) {
    label_ = std::move(key);
    flops_ = flops;
  }

  std::map<std::string, Entry> entries_;
  std::string label_;
  double flops_ = 0;
  Clock::time_point start_;
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_PROFILING_OPS_H_
