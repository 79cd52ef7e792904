// AdamParams: one optimizer update's scalars (ToAdamParams makes them from an OptimizerStep) as the
// CUDA optimizer kernels take them (kernels/cuda/launch.h's LaunchAdamW / LaunchLamb,
// kernels/cuda/optimizer_kernels.cuh). A header of its own, plain C++ without CUDA, so that the
// emulation test of those kernels (tests/kernels/optimizer_emulation_test.cc) builds without the
// CUDA toolkit.
#ifndef HEADROOM_KERNELS_CUDA_ADAM_PARAMS_H_
#define HEADROOM_KERNELS_CUDA_ADAM_PARAMS_H_

#include <cmath>

#include "kernels/ops.h"

namespace headroom::cuda {

// In float, bias-correction factors already inverted (computed in double on the host).
struct AdamParams {
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, grad_scale = 1;
  float inv_bc1 = 1, inv_bc2 = 1;
};

// The update's scalars in float; bias-correction factors in double first (as the CPU backend).
inline AdamParams ToAdamParams(const OptimizerStep& s) {
  AdamParams p;
  p.lr = s.lr;
  p.beta1 = s.beta1;
  p.beta2 = s.beta2;
  p.eps = s.eps;
  p.weight_decay = s.weight_decay;
  p.grad_scale = s.grad_scale;
  if (s.bias_correction) {
    const double t = static_cast<double>(s.step);
    p.inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(s.beta1), t)));
    p.inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(s.beta2), t)));
  }
  return p;
}

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_ADAM_PARAMS_H_
