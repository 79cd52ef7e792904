// One warp of kernels/cuda/mma.cuh's MmaBf16 on the GPU (mma_cuda_check.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/mma.cuh"
#include "tests/kernels/mma_cuda_check.h"
#include "tests/kernels/mma_fragment_layout.h"

namespace headroom::testing_util {
namespace {

namespace L = mma_layout;

__global__ void MmaKernel(float* d) {
  const int lane = static_cast<int>(threadIdx.x);
  cuda::Bf16x2 a[4], b[2];
  for (int p = 0; p < 4; ++p) {
    a[p] = __floats2bfloat162_rn(L::Value(0, L::ARow(lane, 2 * p), L::ACol(lane, 2 * p)),
                                 L::Value(0, L::ARow(lane, 2 * p + 1), L::ACol(lane, 2 * p + 1)));
  }
  for (int p = 0; p < 2; ++p) {
    b[p] = __floats2bfloat162_rn(L::Value(3, L::BRow(lane, 2 * p), L::BCol(lane)),
                                 L::Value(3, L::BRow(lane, 2 * p + 1), L::BCol(lane)));
  }
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = L::Start(L::CRow(lane, i), L::CCol(lane, i));
  cuda::MmaBf16(acc, a, b);
  cuda::MmaBf16(acc, a, b);
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

}  // namespace

std::vector<float> RunMmaOnGpu(std::string* error) {
  float* d = nullptr;
  std::vector<float> host(32 * 4);
  cudaError_t e = cudaMalloc(&d, sizeof(float) * host.size());
  if (e == cudaSuccess) {
    MmaKernel<<<1, 32>>>(d);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess)
    e = cudaMemcpy(host.data(), d, sizeof(float) * host.size(), cudaMemcpyDeviceToHost);
  cudaFree(d);
  if (e != cudaSuccess) {
    *error = cudaGetErrorString(e);
    return {};
  }
  return host;
}

}  // namespace headroom::testing_util
