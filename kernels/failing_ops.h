// FailingOps<T>: an Ops<T> that forwards to an inner backend (ForwardingOps) and fails one
// chosen call, for testing what callers do with a failed device: the Nth call (counted from
// construction or the last FailAt), optionally of one op only ("CopyToHost", "AdamW", ...),
// records an error in status() and is skipped, and so is every later call, as on a GPU after a
// fault: outputs keep what they held (a loss read back stays 0), allocations return nullptr.
// Free is always forwarded (and never counted), so nothing leaks. status() is the injected
// failure, else the inner backend's.
//
// Example (the trainer's tests: TrainOptions::wrap_ops):
//   CpuOps<float> cpu;
//   FailingOps<float> ops(&cpu);
//   ops.FailAt(1, "CopyToHost");  // the next read-back fails
//   absl::StatusOr<LossStats> s = model->Forward(batch, false, {});
//   // s.status(): "reading the loss back: the backend failed: FailingOps: CopyToHost
//   //             (call 1 counted) failed, injected"
#ifndef HEADROOM_KERNELS_FAILING_OPS_H_
#define HEADROOM_KERNELS_FAILING_OPS_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/forwarding_ops.h"

namespace headroom {

template <typename T>
class FailingOps : public ForwardingOps<T> {
 public:
  // Forwards everything to `inner` (not owned) until FailAt is called.
  explicit FailingOps(Ops<T>* inner) : ForwardingOps<T>(inner) {}

  // From now on, counts the calls of op `op` (every op but Free when null; a string literal,
  // or a string that outlives the arming) and fails the `n`-th (n >= 1). Re-arming before the
  // failure restarts the count; after it, the failure stays.
  void FailAt(int64_t n, const char* op = nullptr) {
    fail_at_ = n;
    op_ = op;
    counted_ = 0;
  }

  // Whether the injected failure has happened.
  bool failed() const { return !injected_.ok(); }
  // The calls counted since FailAt.
  int64_t counted() const { return counted_; }

  absl::Status status() const override {
    return injected_.ok() ? ForwardingOps<T>::status() : injected_;
  }

#define HEADROOM_FAILING_OPS_OVERRIDE(ret, op, params, args) \
  ret op params override {                                   \
    if (Skip(#op)) return Skipped<ret>();                    \
    return ForwardingOps<T>::op args;                        \
  }
  HEADROOM_OPS_MEMORY(HEADROOM_FAILING_OPS_OVERRIDE)
  HEADROOM_OPS_COMPUTE(HEADROOM_FAILING_OPS_OVERRIDE)
#undef HEADROOM_FAILING_OPS_OVERRIDE

 private:
  // What a skipped op returns: nothing, nullptr, 0.
  template <typename R>
  static R Skipped() {
    if constexpr (!std::is_void_v<R>) return R{};
  }

  // Whether the call of `op` is to be skipped: the armed one (which records the failure) and
  // every call after it, except Free.
  bool Skip(const char* op) {
    if (std::strcmp(op, "Free") == 0) return false;
    if (!injected_.ok()) return true;
    if (fail_at_ <= 0 || (op_ != nullptr && std::strcmp(op, op_) != 0)) return false;
    if (++counted_ < fail_at_) return false;
    injected_ = absl::InternalError(
        absl::StrCat("FailingOps: ", op, " (call ", counted_, " counted) failed, injected"));
    return true;
  }

  int64_t fail_at_ = 0;  // 0: not armed
  const char* op_ = nullptr;
  int64_t counted_ = 0;
  absl::Status injected_;
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_FAILING_OPS_H_
