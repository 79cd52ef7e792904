// FailingOps (kernels/failing_ops.h): unarmed it computes what its backend computes; armed, the
// Nth call (of one op, or of any) records an error naming it and is skipped, every later call
// is skipped too (outputs keep their values, allocations give nullptr), Free always reaches the
// backend, and status() shows the backend's own failure when nothing was injected.
#include "kernels/failing_ops.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {
namespace {

// Counts the calls that reach the backend.
class ReachingOps : public ForwardingOps<float> {
 public:
  using ForwardingOps<float>::ForwardingOps;
  std::map<std::string, int> calls;

 protected:
  void BeforeOp(const char* name) override { ++calls[name]; }
};

float Read(Ops<float>& ops, const float* p) {
  float x = -1.0f;
  ops.CopyToHost(&x, p, sizeof(float));
  return x;
}

TEST(FailingOpsTest, UnarmedItForwardsEverything) {
  CpuOps<float> cpu;
  FailingOps<float> ops(&cpu);
  float* x = ops.Alloc(4);
  ops.Fill(x, 4, 2.0f);
  ops.Scale(x, 4, 3.0f);
  EXPECT_EQ(Read(ops, x), 6.0f);
  EXPECT_TRUE(ops.status().ok());
  EXPECT_FALSE(ops.failed());
  ops.Free(x);
}

TEST(FailingOpsTest, TheNthCallFailsIsSkippedAndEverythingAfterIsSkippedToo) {
  CpuOps<float> cpu;
  ReachingOps reaching(&cpu);
  FailingOps<float> ops(&reaching);
  ops.FailAt(3);
  float* x = ops.Alloc(4);  // call 1
  ops.Fill(x, 4, 2.0f);     // call 2
  ops.Scale(x, 4, 3.0f);    // call 3: fails, skipped
  EXPECT_TRUE(ops.failed());
  EXPECT_EQ(ops.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ops.status().message(), "FailingOps: Scale (call 3 counted) failed, injected");
  ops.Fill(x, 4, 5.0f);  // skipped
  float host = -1.0f;
  ops.CopyToHost(&host, x, sizeof(float));  // skipped: the host value stays
  EXPECT_EQ(host, -1.0f);
  EXPECT_EQ(ops.Alloc(8), nullptr);
  EXPECT_EQ(Read(cpu, x), 2.0f);  // the backend saw Fill(2) and nothing after it
  ops.Free(x);
  // What reached the backend: the two calls before the failure, and Free.
  EXPECT_EQ(reaching.calls,
            (std::map<std::string, int>{{"AllocBytes", 1}, {"Fill", 1}, {"Free", 1}}));
}

TEST(FailingOpsTest, AnOpNameCountsOnlyThatOp) {
  CpuOps<float> cpu;
  FailingOps<float> ops(&cpu);
  float* x = ops.Alloc(1);
  ops.FailAt(2, "CopyToHost");
  ops.Fill(x, 1, 4.0f);
  EXPECT_EQ(Read(ops, x), 4.0f);  // CopyToHost 1
  ops.Scale(x, 1, 2.0f);          // not counted
  EXPECT_EQ(ops.counted(), 1);
  EXPECT_FALSE(ops.failed());
  EXPECT_EQ(Read(ops, x), -1.0f);  // CopyToHost 2: fails, the host value stays
  EXPECT_EQ(ops.status().message(), "FailingOps: CopyToHost (call 2 counted) failed, injected");
  EXPECT_EQ(Read(cpu, x), 8.0f);
  ops.Free(x);
}

TEST(FailingOpsTest, TheBackendsOwnFailureShowsThrough) {
  CpuOps<float> cpu;
  FailingOps<float> ops(&cpu);
  EXPECT_EQ(ops.AllocBytes(size_t{1} << 62), nullptr);  // the backend's allocation fails
  EXPECT_FALSE(ops.failed());
  EXPECT_EQ(ops.status().code(), absl::StatusCode::kResourceExhausted) << ops.status();
}

}  // namespace
}  // namespace headroom
