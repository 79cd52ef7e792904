// Every collective of MpiCommunicator (and SingleProcessCommunicator) checked against values
// computed in closed form: rank r contributes Value(r, i), small integers (exact in float), so
// sums over ranks are known without communicating. ctest runs this binary under
// `mpirun -np 2` and `-np 3`; run alone it is a job of one rank.
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "comm/create_communicator.h"
#include "comm/single_process_communicator.h"
#include "gtest/gtest.h"
#include "tests/comm/test_comm.h"

namespace headroom {
namespace {

template <typename T>
DataType TypeOf();
template <>
DataType TypeOf<float>() {
  return DataType::kFloat32;
}
template <>
DataType TypeOf<double>() {
  return DataType::kFloat64;
}
template <>
DataType TypeOf<int32_t>() {
  return DataType::kInt32;
}

// Rank r's element i. Sum over r < R: Pattern(i) * R(R+1)/2 + R * Offset(i).
int64_t Pattern(size_t i) { return static_cast<int64_t>(i % 97) + 1; }
int64_t Offset(size_t i) { return static_cast<int64_t>(i % 13); }
template <typename T>
T Value(int r, size_t i) {
  return static_cast<T>((r + 1) * Pattern(i) + Offset(i));
}
template <typename T>
T SumOverRanks(int ranks, size_t i) {
  return static_cast<T>(Pattern(i) * ranks * (ranks + 1) / 2 + ranks * Offset(i));
}

template <typename T>
std::vector<T> Contribution(int r, size_t n) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = Value<T>(r, i);
  return v;
}

// Sizes: empty, one element, odd, and several megabytes (odd too, so no size divides evenly).
class CollectiveTest : public ::testing::TestWithParam<size_t> {};

template <typename T>
void CheckAllReduce(size_t n) {
  Communicator& comm = TestComm();
  const int R = comm.size();
  std::vector<T> send = Contribution<T>(comm.rank(), n), recv(n, T(-1));
  ASSERT_TRUE(comm.AllReduce(send.data(), recv.data(), n, TypeOf<T>(), ReduceOp::kSum).ok());
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += recv[i] != SumOverRanks<T>(R, i);
  EXPECT_EQ(bad, 0u) << DataTypeName(TypeOf<T>()) << " out of place, n=" << n;
  // In place.
  ASSERT_TRUE(comm.AllReduce(send.data(), send.data(), n, TypeOf<T>(), ReduceOp::kSum).ok());
  EXPECT_EQ(send, recv) << "in place differs from out of place";
  if constexpr (!std::is_integral_v<T>) {
    std::vector<T> avg = Contribution<T>(comm.rank(), n);
    ASSERT_TRUE(comm.AllReduce(avg.data(), avg.data(), n, TypeOf<T>(), ReduceOp::kAverage).ok());
    bad = 0;
    for (size_t i = 0; i < n; ++i) bad += avg[i] != SumOverRanks<T>(R, i) / static_cast<T>(R);
    EXPECT_EQ(bad, 0u) << "average, n=" << n;
  }
}

TEST_P(CollectiveTest, AllReduceSumsAndAveragesEveryElement) {
  CheckAllReduce<float>(GetParam());
  CheckAllReduce<int32_t>(GetParam());
  CheckAllReduce<double>(GetParam());
}

template <typename T>
void CheckBroadcast(size_t n) {
  Communicator& comm = TestComm();
  for (int root : {0, comm.size() - 1}) {
    std::vector<T> buffer = Contribution<T>(comm.rank(), n);
    ASSERT_TRUE(comm.Broadcast(buffer.data(), n, TypeOf<T>(), root).ok());
    EXPECT_EQ(buffer, Contribution<T>(root, n)) << "root " << root << ", n=" << n;
  }
}

TEST_P(CollectiveTest, BroadcastCopiesTheRootsBufferFromAnyRoot) {
  CheckBroadcast<float>(GetParam());
  CheckBroadcast<int32_t>(GetParam());
}

template <typename T>
void CheckAllGather(size_t n) {
  Communicator& comm = TestComm();
  const int R = comm.size();
  std::vector<T> expected;
  for (int r = 0; r < R; ++r) {
    std::vector<T> part = Contribution<T>(r, n);
    expected.insert(expected.end(), part.begin(), part.end());
  }
  std::vector<T> send = Contribution<T>(comm.rank(), n), recv(n * R, T(-1));
  ASSERT_TRUE(comm.AllGather(send.data(), recv.data(), n, TypeOf<T>()).ok());
  EXPECT_EQ(recv, expected) << "out of place, n=" << n;
  // In place: this rank's part already sits at recv + rank * n.
  std::vector<T> in_place(n * R, T(-1));
  std::copy(send.begin(), send.end(), in_place.begin() + comm.rank() * n);
  ASSERT_TRUE(
      comm.AllGather(in_place.data() + comm.rank() * n, in_place.data(), n, TypeOf<T>()).ok());
  EXPECT_EQ(in_place, expected) << "in place, n=" << n;
}

TEST_P(CollectiveTest, AllGatherConcatenatesInRankOrder) {
  CheckAllGather<float>(GetParam());
  CheckAllGather<int32_t>(GetParam());
}

template <typename T>
void CheckReduceScatter(size_t n) {
  Communicator& comm = TestComm();
  const int R = comm.size();
  // Element j of the full vector is Value(r, j); rank k receives j in [k n, (k+1) n).
  std::vector<T> send = Contribution<T>(comm.rank(), n * R), recv(n, T(-1));
  ASSERT_TRUE(comm.ReduceScatter(send.data(), recv.data(), n, TypeOf<T>(), ReduceOp::kSum).ok());
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += recv[i] != SumOverRanks<T>(R, comm.rank() * n + i);
  EXPECT_EQ(bad, 0u) << "sum, n=" << n;
  if constexpr (!std::is_integral_v<T>) {
    ASSERT_TRUE(
        comm.ReduceScatter(send.data(), recv.data(), n, TypeOf<T>(), ReduceOp::kAverage).ok());
    bad = 0;
    for (size_t i = 0; i < n; ++i) {
      bad += recv[i] != SumOverRanks<T>(R, comm.rank() * n + i) / static_cast<T>(R);
    }
    EXPECT_EQ(bad, 0u) << "average, n=" << n;
  }
}

TEST_P(CollectiveTest, ReduceScatterGivesEachRankItsReducedSlice) {
  CheckReduceScatter<float>(GetParam());
  CheckReduceScatter<int32_t>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Sizes, CollectiveTest,
                         ::testing::Values(0, 1, 7, 1001, (size_t{1} << 20) + 3),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           // StrCat, not "n" + std::to_string: GCC 12 at -O3 reports a false
                           // -Wrestrict in that operator+ (GCC bug 105329).
                           return absl::StrCat("n", info.param);
                         });

TEST(CommunicatorTest, RanksAndLocalRanksAreConsistent) {
  Communicator& comm = TestComm();
  EXPECT_GE(comm.rank(), 0);
  EXPECT_LT(comm.rank(), comm.size());
  EXPECT_GE(comm.local_rank(), 0);
  EXPECT_LT(comm.local_rank(), comm.local_size());
  EXPECT_LE(comm.local_size(), comm.size());
  // Every rank of these tests runs on this machine, so local ranks are world ranks.
  EXPECT_EQ(comm.local_size(), comm.size());
  EXPECT_EQ(comm.local_rank(), comm.rank());
  // The ranks form 0..R-1 exactly once: their sum is R(R-1)/2.
  int32_t rank = comm.rank(), sum = 0;
  ASSERT_TRUE(comm.AllReduce(&rank, &sum, 1, DataType::kInt32, ReduceOp::kSum).ok());
  EXPECT_EQ(sum, comm.size() * (comm.size() - 1) / 2);
}

TEST(CommunicatorTest, AsyncCollectivesCanBeWaitedOutOfOrder) {
  Communicator& comm = TestComm();
  const int R = comm.size();
  const size_t n = 4099;
  std::vector<float> a = Contribution<float>(comm.rank(), n);
  std::vector<int32_t> b = Contribution<int32_t>(comm.rank(), n);
  std::vector<float> g(n * R);
  absl::StatusOr<CommHandle> ha =
      comm.AllReduceAsync(a.data(), a.data(), n, DataType::kFloat32, ReduceOp::kAverage);
  absl::StatusOr<CommHandle> hb =
      comm.AllReduceAsync(b.data(), b.data(), n, DataType::kInt32, ReduceOp::kSum);
  std::vector<float> mine = Contribution<float>(comm.rank(), n);
  absl::StatusOr<CommHandle> hg = comm.AllGatherAsync(mine.data(), g.data(), n, DataType::kFloat32);
  absl::StatusOr<CommHandle> barrier = comm.BarrierAsync();
  ASSERT_TRUE(ha.ok() && hb.ok() && hg.ok() && barrier.ok());
  // Poll like backward would, then wait in reverse order of issue.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ha)->Test().ok());
  ASSERT_TRUE((*barrier)->Wait().ok());
  ASSERT_TRUE((*hg)->Wait().ok());
  ASSERT_TRUE((*hb)->Wait().ok());
  ASSERT_TRUE((*ha)->Wait().ok());
  absl::StatusOr<bool> done = (*ha)->Test();
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(a[i], SumOverRanks<float>(R, i) / R) << i;
    ASSERT_EQ(b[i], SumOverRanks<int32_t>(R, i)) << i;
    ASSERT_EQ(g[(R - 1) * n + i], Value<float>(R - 1, i)) << i;
  }
}

TEST(CommunicatorTest, BarrierCompletesOnEveryRank) {
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(TestComm().Barrier().ok());
}

TEST(CommunicatorTest, BadArgumentsAreRejectedAlikeOnEveryRankBeforeCommunicating) {
  Communicator& comm = TestComm();
  int32_t x = 1;
  absl::Status s = comm.AllReduce(&x, &x, 1, DataType::kInt32, ReduceOp::kAverage);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("int32"), absl::string_view::npos) << s;
  s = comm.Broadcast(&x, 1, DataType::kInt32, comm.size());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  std::vector<float> buffer(8);
  s = comm.AllReduce(buffer.data(), buffer.data() + 1, 4, DataType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // The communicator still works afterwards (nothing half-issued).
  EXPECT_TRUE(comm.Barrier().ok());
}

TEST(SingleProcessCommunicatorTest, EveryCollectiveIsTheIdentity) {
  SingleProcessCommunicator comm;
  EXPECT_EQ(comm.size(), 1);
  std::vector<float> v = {1, 2, 3}, out(3);
  ASSERT_TRUE(comm.AllReduce(v.data(), out.data(), 3, DataType::kFloat32, ReduceOp::kAverage).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE(comm.AllGather(v.data(), out.data(), 3, DataType::kFloat32).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE(comm.ReduceScatter(v.data(), out.data(), 3, DataType::kFloat32, ReduceOp::kSum).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE(comm.Broadcast(v.data(), 3, DataType::kFloat32, 0).ok());
  ASSERT_TRUE(comm.Barrier().ok());
  EXPECT_FALSE(comm.Broadcast(v.data(), 3, DataType::kFloat32, 1).ok());
  int32_t i = 3;
  EXPECT_FALSE(comm.AllReduce(&i, &i, 1, DataType::kInt32, ReduceOp::kAverage).ok());
}

TEST(CreateCommunicatorTest, ParsesBackendNames) {
  for (const char* name : {"auto", "single", "mpi", "nccl"}) {
    absl::StatusOr<CommBackend> b = ParseCommBackend(name);
    ASSERT_TRUE(b.ok()) << name;
    EXPECT_STREQ(CommBackendName(*b), name);
  }
  absl::StatusOr<CommBackend> bad = ParseCommBackend("gloo");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("gloo"), absl::string_view::npos);
}

TEST(CreateCommunicatorTest, SingleBackendHasOneRank) {
  absl::StatusOr<std::unique_ptr<Communicator>> c = CreateCommunicator({CommBackend::kSingle});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->size(), 1);
  EXPECT_STREQ((*c)->backend_name(), "single");
}

TEST(CreateCommunicatorTest, MpiBackendJoinsEveryRank) {
  // Collective: every rank creates it.
  absl::StatusOr<std::unique_ptr<Communicator>> c = CreateCommunicator({CommBackend::kMpi});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->size(), TestComm().size());
  EXPECT_EQ((*c)->rank(), TestComm().rank());
  EXPECT_FALSE((*c)->device_buffers());
}

}  // namespace
}  // namespace headroom
