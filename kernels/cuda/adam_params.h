// AdamParams: one optimizer update's scalars as the CUDA optimizer kernels take them
// (kernels/cuda/launch.h's LaunchAdamW / LaunchLamb, kernels/cuda/optimizer_kernels.cuh). A header
// of its own, plain C++ without CUDA, so that the emulation test of those kernels
// (tests/kernels/optimizer_emulation_test.cc) builds without the CUDA toolkit.
#ifndef HEADROOM_KERNELS_CUDA_ADAM_PARAMS_H_
#define HEADROOM_KERNELS_CUDA_ADAM_PARAMS_H_

namespace headroom::cuda {

// In float, bias-correction factors already inverted (computed in double on the host).
struct AdamParams {
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, grad_scale = 1;
  float inv_bc1 = 1, inv_bc2 = 1;
};

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_ADAM_PARAMS_H_
