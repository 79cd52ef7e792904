// The GPU half of mma_cuda_test.cc, compiled by nvcc (mma_cuda_check.cu).
#ifndef HEADROOM_TESTS_KERNELS_MMA_CUDA_CHECK_H_
#define HEADROOM_TESTS_KERNELS_MMA_CUDA_CHECK_H_

#include <string>
#include <vector>

namespace headroom::testing_util {

// Runs one warp of kernels/cuda/mma.cuh's MmaBf16 twice on the GPU, each lane's fragments built
// from mma_fragment_layout.h with A = Value(0, ., .) and B = Value(3, ., .), from Start(); returns
// the 32 x 4 accumulators (lane-major), or an empty vector with `error` set when CUDA fails.
std::vector<float> RunMmaOnGpu(std::string* error);

}  // namespace headroom::testing_util

#endif  // HEADROOM_TESTS_KERNELS_MMA_CUDA_CHECK_H_
