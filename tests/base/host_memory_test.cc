// AvailableHostMemory on a fake /proc and /sys (files written here, values chosen by hand): the
// lower of MemAvailable and each cgroup limit's headroom, for cgroup v2 and v1, ancestors
// included, and "no limit" spelled both ways; plus one run on the real machine.
#include "base/host_memory.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kGiB = int64_t{1} << 30;

class HostMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "host_memory_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    // 20 GiB available.
    Write("/proc/meminfo",
          "MemTotal:       25165824 kB\nMemFree:  1000 kB\n"
          "MemAvailable:   20971520 kB\nBuffers: 4 kB\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(root_ + path).parent_path());
    std::ofstream(root_ + path) << text;
  }

  std::string root_;
};

TEST_F(HostMemoryTest, MemAvailableWithoutAnyCgroupLimit) {
  Write("/proc/self/cgroup", "0::/user.slice/session-1.scope\n");
  Write("/sys/fs/cgroup/user.slice/session-1.scope/memory.max", "max\n");
  Write("/sys/fs/cgroup/user.slice/session-1.scope/memory.current", "123\n");
  absl::StatusOr<HostMemory> m = AvailableHostMemory(root_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->available_bytes, 20 * kGiB);
  EXPECT_EQ(m->source, "MemAvailable in /proc/meminfo");
}

TEST_F(HostMemoryTest, CgroupV2LimitOfAnAncestorMinusItsUsage) {
  Write("/proc/self/cgroup", "0::/job/step\n");
  Write("/sys/fs/cgroup/job/step/memory.max", "max\n");
  Write("/sys/fs/cgroup/job/memory.max", std::to_string(8 * kGiB) + "\n");
  Write("/sys/fs/cgroup/job/memory.current", std::to_string(3 * kGiB) + "\n");
  absl::StatusOr<HostMemory> m = AvailableHostMemory(root_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->available_bytes, 5 * kGiB);
  EXPECT_EQ(m->source, "the cgroup limit " + root_ +
                           "/sys/fs/cgroup/job/memory.max (8.00 GiB, 3.00 GiB in use)");
}

TEST_F(HostMemoryTest, CgroupV1LimitAndItsUnlimitedSpelling) {
  Write("/proc/self/cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
  Write("/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
  Write("/sys/fs/cgroup/memory/docker/memory.limit_in_bytes", std::to_string(2 * kGiB));
  Write("/sys/fs/cgroup/memory/docker/memory.usage_in_bytes", std::to_string(kGiB / 2));
  absl::StatusOr<HostMemory> m = AvailableHostMemory(root_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->available_bytes, 3 * kGiB / 2);
  EXPECT_NE(m->source.find("docker/memory.limit_in_bytes (2.00 GiB, 0.50 GiB in use)"),
            std::string::npos)
      << m->source;
}

TEST_F(HostMemoryTest, ALimitAboveMemAvailableChangesNothingAndOverUseIsZero) {
  Write("/proc/self/cgroup", "0::/big\n");
  Write("/sys/fs/cgroup/big/memory.max", std::to_string(64 * kGiB));
  Write("/sys/fs/cgroup/big/memory.current", std::to_string(kGiB));
  EXPECT_EQ(AvailableHostMemory(root_)->available_bytes, 20 * kGiB);
  Write("/sys/fs/cgroup/big/memory.max", std::to_string(kGiB));
  Write("/sys/fs/cgroup/big/memory.current", std::to_string(2 * kGiB));  // over the limit
  EXPECT_EQ(AvailableHostMemory(root_)->available_bytes, 0);
}

TEST_F(HostMemoryTest, NoMeminfoIsAnError) {
  fs::remove_all(root_ + "/proc");
  absl::StatusOr<HostMemory> m = AvailableHostMemory(root_);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("/proc/meminfo"), absl::string_view::npos) << m.status();
}

// The real machine: some memory is available, and never more than the RAM.
TEST(HostMemoryRealTest, ThisMachineHasSomeAndAtMostItsRam) {
  absl::StatusOr<HostMemory> m = AvailableHostMemory();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->available_bytes, 0);
  const int64_t ram = static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE);
  EXPECT_LE(m->available_bytes, ram) << m->source;
}

TEST(FormatGiBTest, TwoDecimals) {
  EXPECT_EQ(FormatGiB(0), "0.00 GiB");
  EXPECT_EQ(FormatGiB(3 * kGiB / 2), "1.50 GiB");
  EXPECT_EQ(FormatGiB(int64_t{123456789012}), "114.98 GiB");
}

}  // namespace
}  // namespace headroom
