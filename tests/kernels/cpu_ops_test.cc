// CPU-backend specifics: the thread pool, bit-for-bit independence of the thread count for the
// ops that promise determinism, and backend selection (MakeOps, CudaAvailable).
#include "kernels/cpu/cpu_ops.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/ops.h"

namespace headroom {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 1000, 100001}) {
      for (int64_t grain : {1, 7, 4096}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[i].load(), 1) << "threads=" << threads << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(ThreadPoolTest, NestedCallsRunInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.ParallelFor(4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      pool.ParallelFor(100, 1, [&](int64_t lo, int64_t hi) { total += hi - lo; });
    }
  });
  EXPECT_EQ(total.load(), 400);
}

// Gradient accumulations must give the same bits with 1 or 3 threads.
TEST(CpuOpsTest, ParameterGradientsDoNotDependOnThreadCount) {
  CpuOps<float> one(1), three(3);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  const int64_t rows = 4099;
  const int cols = 129, vocab = 17;
  std::vector<float> dy(rows * cols), x(rows * cols), gamma(cols), mean(rows), rstd(rows);
  for (float& v : dy) v = u(rng);
  for (float& v : x) v = u(rng);
  for (float& v : gamma) v = u(rng);
  std::vector<int32_t> ids(rows);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
  std::vector<float> y(rows * cols);
  one.LayerNormForward(x.data(), gamma.data(), gamma.data(), rows, cols, 1e-5f, y.data(),
                       mean.data(), rstd.data());

  auto run = [&](CpuOps<float>& ops) {
    std::vector<float> dbias(cols), dgamma(cols), dbeta(cols), dx(rows * cols),
        dtable(vocab * cols);
    ops.BiasBackward(dy.data(), rows, cols, dbias.data());
    ops.LayerNormBackward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), rows, cols,
                          dx.data(), dgamma.data(), dbeta.data());
    ops.EmbeddingBackward(ids.data(), dy.data(), rows, cols, dtable.data());
    std::vector<float> all = dbias;
    all.insert(all.end(), dgamma.begin(), dgamma.end());
    all.insert(all.end(), dbeta.begin(), dbeta.end());
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), dtable.begin(), dtable.end());
    return all;
  };
  EXPECT_EQ(run(one), run(three));
}

TEST(CpuOpsTest, MakeOpsGivesTheCpuBackend) {
  absl::StatusOr<std::unique_ptr<Ops<float>>> ops = MakeOps(DeviceKind::kCpu);
  ASSERT_TRUE(ops.ok()) << ops.status();
  EXPECT_EQ((*ops)->device(), DeviceKind::kCpu);
  float* p = (*ops)->Alloc(3);
  (*ops)->Fill(p, 3, 2.0f);
  float host[3];
  (*ops)->CopyToHost(host, p, sizeof(host));
  EXPECT_EQ(host[2], 2.0f);
  (*ops)->Free(p);
}

// Runs on every machine: with a usable GPU MakeOps(kCuda) gives the CUDA backend; without one
// it fails with CudaStatus()'s code and reason, and CudaAvailable gives the same reason.
TEST(CpuOpsTest, MakeOpsCudaWorksOrSaysWhyNot) {
  const absl::Status cuda = CudaStatus();
  std::string reason;
  EXPECT_EQ(CudaAvailable(&reason), cuda.ok());
  absl::StatusOr<std::unique_ptr<Ops<float>>> ops = MakeOps(DeviceKind::kCuda);
  if (cuda.ok()) {
    ASSERT_TRUE(ops.ok()) << ops.status();
    EXPECT_EQ((*ops)->device(), DeviceKind::kCuda);
    return;
  }
  EXPECT_FALSE(reason.empty());
  EXPECT_EQ(reason, cuda.message());
  ASSERT_FALSE(ops.ok());
  EXPECT_EQ(ops.status().code(), cuda.code());
  EXPECT_NE(ops.status().message().find(reason), absl::string_view::npos) << ops.status();
}

TEST(CpuOpsTest, MatmulPrecisionIsCheckedAndTheCpuComputesFp32ForAll) {
  for (const char* p : {"", "fp32", "tf32", "bf16"}) {
    absl::StatusOr<std::unique_ptr<Ops<float>>> ops = MakeOps(DeviceKind::kCpu, {p});
    EXPECT_TRUE(ops.ok()) << p << ": " << ops.status();
  }
  absl::StatusOr<std::unique_ptr<Ops<float>>> bad = MakeOps(DeviceKind::kCpu, {"fp8"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find("fp8"), std::string::npos);
}

}  // namespace
}  // namespace headroom
