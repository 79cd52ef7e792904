// NcclCommunicator on device buffers. Needs a GPU: skips with the reason otherwise (the
// development machine has the toolkit but no driver). NCCL refuses two ranks on one GPU, so
// this runs as a single rank (its multi-rank logic is the shared Communicator contract, tested
// over MPI in communicator_test.cc): it checks the stream/event plumbing, average and sum, all
// dtypes, sizes 0..several MB, and that results land before the caller's stream continues.
#include "comm/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <vector>

#include "gtest/gtest.h"

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

#define SKIP_WITHOUT_GPU()                                                                   \
  do {                                                                                       \
    int count = 0;                                                                           \
    cudaError_t e = cudaGetDeviceCount(&count);                                              \
    if (e != cudaSuccess || count == 0) {                                                    \
      GTEST_SKIP() << "no CUDA device (" << (e != cudaSuccess ? cudaGetErrorString(e) : "0") \
                   << "): NCCL is checked on the GPU machine (scripts/gpu-check)";           \
    }                                                                                        \
  } while (0)

template <typename T>
void RoundTrip(NcclCommunicator* comm, size_t n, DataType type, ReduceOp op) {
  std::vector<T> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<T>(i % 101);
  T* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, n * sizeof(T) + 1), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  comm->set_caller_stream(stream);
  // Enqueued on the caller's stream before the collective: the collective must see it.
  ASSERT_EQ(cudaMemcpyAsync(device, host.data(), n * sizeof(T), cudaMemcpyHostToDevice, stream),
            cudaSuccess);
  absl::StatusOr<CommHandle> h = comm->AllReduceAsync(device, device, n, type, op);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE((*h)->Wait().ok());
  std::vector<T> back(n, T(-1));
  ASSERT_EQ(cudaMemcpyAsync(back.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(back, host) << "one rank: sum and average are the identity, n=" << n;
  comm->set_caller_stream(nullptr);
  cudaStreamDestroy(stream);
  cudaFree(device);
}

TEST(NcclCommunicatorTest, AllReduceOnDeviceBuffersOrderedWithTheCallerStream) {
  SKIP_WITHOUT_GPU();
  NcclCommunicator* comm = Comm();
  ASSERT_NE(comm, nullptr);
  EXPECT_TRUE(comm->device_buffers());
  for (size_t n : {size_t{0}, size_t{1}, size_t{1001}, (size_t{1} << 22) + 3}) {
    RoundTrip<float>(comm, n, DataType::kFloat32, ReduceOp::kAverage);
    RoundTrip<double>(comm, n, DataType::kFloat64, ReduceOp::kSum);
    RoundTrip<int32_t>(comm, n, DataType::kInt32, ReduceOp::kSum);
  }
}

TEST(NcclCommunicatorTest, BroadcastGatherScatterAndBarrier) {
  SKIP_WITHOUT_GPU();
  NcclCommunicator* comm = Comm();
  ASSERT_NE(comm, nullptr);
  const size_t n = 4097;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i);
  float *a = nullptr, *b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(comm->Broadcast(a, n, DataType::kFloat32, 0).ok());
  ASSERT_TRUE(comm->AllGather(a, b, n, DataType::kFloat32).ok());
  ASSERT_TRUE(comm->ReduceScatter(b, a, n, DataType::kFloat32, ReduceOp::kAverage).ok());
  ASSERT_TRUE(comm->Barrier().ok());
  std::vector<float> back(n);
  ASSERT_EQ(cudaMemcpy(back.data(), a, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, host);
  EXPECT_EQ(comm->AllReduce(a, a, 1, DataType::kInt32, ReduceOp::kAverage).code(),
            absl::StatusCode::kInvalidArgument);
  cudaFree(a);
  cudaFree(b);
}

TEST(NcclCommunicatorTest, CreateWithoutAGpuIsUnavailableNotACrash) {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) {
    GTEST_SKIP() << "a GPU is present; this checks the no-GPU path";
  }
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> c = NcclCommunicator::Create();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
}

}  // namespace
}  // namespace headroom
