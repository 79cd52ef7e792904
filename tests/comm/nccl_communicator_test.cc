// NcclCommunicator on device buffers. The collectives need a GPU: they skip, saying why, where
// none is present (tests/cuda_skip.h; the development machines have the toolkit but no driver)
// and fail where a driver is present but CUDA does not work. NCCL refuses two ranks on one GPU,
// so this runs as a single rank (the multi-rank logic is the shared Communicator contract,
// tested over MPI in communicator_test.cc). With one rank every collective copies its input, so
// each is checked OUT OF PLACE into a buffer filled with a sentinel first: a communicator that
// does nothing leaves the sentinel and fails. Also: the stream/event plumbing (results land
// before the caller's stream continues), sum and average, every dtype, sizes 0..several MB, and
// the dtype and reduce-op mapping to NCCL's enums (no GPU needed).
#include "comm/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "comm/nccl_types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cuda_skip.h"

namespace headroom {
namespace {

NcclCommunicator* Comm() {
  static NcclCommunicator* comm = [] {
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> c = NcclCommunicator::Create();
    if (!c.ok()) {
      ADD_FAILURE() << c.status();
      return static_cast<NcclCommunicator*>(nullptr);
    }
    return c->release();
  }();
  return comm;
}

// Every byte 0xA5: no value the tests send (small integers) has this pattern.
constexpr int kSentinelByte = 0xA5;

template <typename T>
T Sentinel() {
  T v;
  std::memset(&v, kSentinelByte, sizeof(T));
  return v;
}

template <typename T>
void RoundTrip(NcclCommunicator* comm, size_t n, DataType type, ReduceOp op) {
  SCOPED_TRACE(testing::Message() << "n=" << n << " bytes/element=" << sizeof(T)
                                  << (op == ReduceOp::kSum ? " sum" : " average"));
  std::vector<T> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<T>(i % 101 + 1);
  T *send = nullptr, *recv = nullptr;
  ASSERT_EQ(cudaMalloc(&send, n * sizeof(T) + 1), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&recv, n * sizeof(T) + 1), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  comm->set_caller_stream(stream);
  // Enqueued on the caller's stream before the collective: the collective must see both.
  ASSERT_EQ(cudaMemcpyAsync(send, host.data(), n * sizeof(T), cudaMemcpyHostToDevice, stream),
            cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(recv, kSentinelByte, n * sizeof(T), stream), cudaSuccess);
  absl::StatusOr<CommHandle> h = comm->AllReduceAsync(send, recv, n, type, op);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE((*h)->Wait().ok());
  // Ordered after the collective by Wait() on the caller's stream.
  std::vector<T> back(n, Sentinel<T>()), sent(n, Sentinel<T>());
  ASSERT_EQ(cudaMemcpyAsync(back.data(), recv, n * sizeof(T), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(sent.data(), send, n * sizeof(T), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  // ElementsAreArray names the first element that differs (the H100 run of 2026-12-06 saw only
  // the 32 equal leading elements that EXPECT_EQ prints).
  EXPECT_THAT(back, testing::ElementsAreArray(host))
      << "one rank: the sum and the average of one contribution are itself";
  EXPECT_THAT(sent, testing::ElementsAreArray(host)) << "the send buffer changed";
  comm->set_caller_stream(nullptr);
  cudaStreamDestroy(stream);
  cudaFree(send);
  cudaFree(recv);
}

TEST(NcclCommunicatorTest, AllReduceOutOfPlaceOrderedWithTheCallerStream) {
  HR_SKIP_WITHOUT_CUDA();
  NcclCommunicator* comm = Comm();
  ASSERT_NE(comm, nullptr);
  EXPECT_TRUE(comm->device_buffers());
  for (size_t n : {size_t{0}, size_t{1}, size_t{1001}, (size_t{1} << 22) + 3}) {
    RoundTrip<float>(comm, n, DataType::kFloat32, ReduceOp::kAverage);
    RoundTrip<float>(comm, n, DataType::kFloat32, ReduceOp::kSum);
    RoundTrip<double>(comm, n, DataType::kFloat64, ReduceOp::kSum);
    RoundTrip<double>(comm, n, DataType::kFloat64, ReduceOp::kAverage);
    RoundTrip<int32_t>(comm, n, DataType::kInt32, ReduceOp::kSum);
  }
}

// Copies n floats back from the device.
std::vector<float> Back(const float* device, size_t n) {
  std::vector<float> v(n, Sentinel<float>());
  EXPECT_EQ(cudaMemcpy(v.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

TEST(NcclCommunicatorTest, GatherAndScatterOutOfPlaceBroadcastAndBarrier) {
  HR_SKIP_WITHOUT_CUDA();
  NcclCommunicator* comm = Comm();
  ASSERT_NE(comm, nullptr);
  ASSERT_EQ(comm->size(), 1);
  const size_t n = 4097;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i + 1);
  float *a = nullptr, *b = nullptr, *c = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&c, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  // In place by contract; with one rank the root's buffer stays what it was.
  ASSERT_TRUE(comm->Broadcast(a, n, DataType::kFloat32, 0).ok());
  EXPECT_EQ(Back(a, n), host);

  ASSERT_EQ(cudaMemset(b, kSentinelByte, n * sizeof(float)), cudaSuccess);
  ASSERT_TRUE(comm->AllGather(a, b, n, DataType::kFloat32).ok());
  EXPECT_EQ(Back(b, n), host) << "AllGather did not write the receive buffer";

  ASSERT_EQ(cudaMemset(c, kSentinelByte, n * sizeof(float)), cudaSuccess);
  ASSERT_TRUE(comm->ReduceScatter(b, c, n, DataType::kFloat32, ReduceOp::kAverage).ok());
  EXPECT_THAT(Back(c, n), testing::ElementsAreArray(host))
      << "ReduceScatter did not write the receive buffer";
  EXPECT_EQ(Back(a, n), host) << "a send buffer changed";

  ASSERT_TRUE(comm->Barrier().ok());
  EXPECT_EQ(comm->AllReduce(a, a, 1, DataType::kInt32, ReduceOp::kAverage).code(),
            absl::StatusCode::kInvalidArgument);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
}

// Runs everywhere: the table against NCCL's own enums (nccl.h), and each NCCL type's width
// against DataTypeSize, so a type mapped to another of a different width would fail.
TEST(NcclTypesTest, DataTypesAndReduceOpsMapToTheirNcclEnums) {
  struct Row {
    DataType type;
    ncclDataType_t nccl;
    size_t bytes;
  };
  for (const Row& r :
       {Row{DataType::kFloat32, ncclFloat32, 4}, Row{DataType::kFloat64, ncclFloat64, 8},
        Row{DataType::kInt32, ncclInt32, 4}}) {
    EXPECT_EQ(NcclDataType(r.type), r.nccl) << static_cast<int>(r.type);
    EXPECT_EQ(DataTypeSize(r.type), r.bytes) << static_cast<int>(r.type);
  }
  EXPECT_NE(NcclDataType(DataType::kFloat32), NcclDataType(DataType::kInt32));
  for (int ranks : {1, 2, 8}) {
    EXPECT_EQ(NcclReduceOp(ReduceOp::kSum, ranks), ncclSum) << ranks;
  }
  EXPECT_EQ(NcclReduceOp(ReduceOp::kAverage, 2), ncclAvg);
  EXPECT_EQ(NcclReduceOp(ReduceOp::kAverage, 8), ncclAvg);
  // One rank: the sum, which is the average, avoiding NCCL < 2.29.7's one-rank ncclAvg (it left
  // the last elements unwritten on the H100 machine's NCCL 2.28.3: comm/nccl_types.h).
  EXPECT_EQ(NcclReduceOp(ReduceOp::kAverage, 1), ncclSum);
}

// Without a GPU Create is Unavailable (not a crash, not a hang); with one it gives a one-rank
// communicator on device buffers.
TEST(NcclCommunicatorTest, CreateIsUnavailableWithoutAGpuAndWorksWithOne) {
  const absl::Status cuda = CudaStatus();
  if (!cuda.ok() && !absl::IsUnavailable(cuda))
    FAIL() << "CUDA fails with a driver present: " << cuda;
  if (cuda.ok()) {
    NcclCommunicator* comm = Comm();
    ASSERT_NE(comm, nullptr);
    EXPECT_EQ(comm->size(), 1);
    EXPECT_TRUE(comm->device_buffers());
    return;
  }
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> c = NcclCommunicator::Create();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_NE(c.status().message().find("use the mpi backend"), absl::string_view::npos)
      << c.status();
}

}  // namespace
}  // namespace headroom
