// The activation kernels' CUDA device code (kernels/cuda/activation_kernels.cuh) run on the CPU
// under tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float>
// (kernels/cpu/activation.cc), on ragged sizes, with the launcher's grid and with one block
// (every thread strides), out of place and in place.
//
// Tolerances. The emulation build has no FMA contraction (-ffp-contract=off, as the CPU
// backend), so where the twin evaluates the same float formula in the same order with the same
// libm call (ReLU, tanh, the tanh form of GELU) the results must be bit-identical. The erf form
// of GELU differs by design: the twin evaluates erf and exp with cpu_math::ErfFloat / ExpFloat
// (relative error below 2e-7, kernels/cpu/fast_math.h), the device code with erff / expf (here
// the host's, within 1 ulp). An error d in erf moves gelu(v) = 0.5 v (1 + erf) by 0.5 |v| d and
// gelu'(v) by 0.5 d; exp's error moves v * pdf by |v| pdf d. With d <= 2e-7 + 1.2e-7 <= 2.7
// FLT_EPSILON and the few final roundings of both sides (each at most half an ulp of the
// result), the band is 3 ulps of |v| (forward) and 3 ulps of |dy| (1 + |v| pdf) (backward).
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/activation_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::activation_kernels;
using testing_util::ExpectBitEqual;
using testing_util::ExpectWithinUlps;
using testing_util::GridStrideGrids;
using testing_util::Launch1D;
using testing_util::RaggedSizes;
using testing_util::RandomFloats;

// A forward kernel f(x, y, n) and a backward kernel f(x, dy, dx, n), as device code.
using ForwardKernel = void (*)(const float*, float*, int64_t);
using BackwardKernel = void (*)(const float*, const float*, float*, int64_t);

// The kernel's output for every ragged size and grid, out of place and in place (y == x),
// passed to check(n, x, y) (and, backward, check(n, x, dy, dx)).
void ForEachForward(ForwardKernel kernel,
                    const std::function<void(const std::vector<float>&, const std::vector<float>&,
                                             const std::string&)>& check) {
  for (int64_t n : RaggedSizes()) {
    const std::vector<float> x = RandomFloats(n, -6, 6, static_cast<uint64_t>(n));
    for (unsigned grid : GridStrideGrids(n, k::kBlock)) {
      const std::string what = "n=" + std::to_string(n) + " grid=" + std::to_string(grid);
      std::vector<float> y(static_cast<size_t>(n), NAN);
      Launch1D([&] { kernel(x.data(), y.data(), n); }, grid, k::kBlock);
      check(x, y, what);
      std::vector<float> in_place = x;
      Launch1D([&] { kernel(in_place.data(), in_place.data(), n); }, grid, k::kBlock);
      check(x, in_place, what + " in place");
    }
  }
}

void ForEachBackward(
    BackwardKernel kernel,
    const std::function<void(const std::vector<float>&, const std::vector<float>&,
                             const std::vector<float>&, const std::string&)>& check) {
  for (int64_t n : RaggedSizes()) {
    const std::vector<float> x = RandomFloats(n, -6, 6, static_cast<uint64_t>(n));
    const std::vector<float> dy = RandomFloats(n, -2, 2, static_cast<uint64_t>(n) + 1);
    for (unsigned grid : GridStrideGrids(n, k::kBlock)) {
      const std::string what = "n=" + std::to_string(n) + " grid=" + std::to_string(grid);
      std::vector<float> dx(static_cast<size_t>(n), NAN);
      Launch1D([&] { kernel(x.data(), dy.data(), dx.data(), n); }, grid, k::kBlock);
      check(x, dy, dx, what);
      std::vector<float> in_place = dy;
      Launch1D([&] { kernel(x.data(), in_place.data(), in_place.data(), n); }, grid, k::kBlock);
      check(x, dy, in_place, what + " in place");
    }
  }
}

TEST(ActivationKernelEmulation, GeluWithinBandOfTwin) {
  CpuOps<float> ops(1);
  ForEachForward(k::gelu_forward_kernel, [&](const auto& x, const auto& y, const auto& what) {
    std::vector<float> want(x.size());
    ops.GeluForward(x.data(), want.data(), static_cast<int64_t>(x.size()));
    std::vector<double> scale(x.size());
    for (size_t i = 0; i < x.size(); ++i) scale[i] = std::fabs(x[i]);
    ExpectWithinUlps(y, testing_util::Widen(want), scale, 3, "gelu " + what);
  });
  ForEachBackward(k::gelu_backward_kernel, [&](const auto& x, const auto& dy, const auto& dx,
                                               const auto& what) {
    std::vector<float> want(x.size());
    ops.GeluBackward(x.data(), dy.data(), want.data(), static_cast<int64_t>(x.size()));
    std::vector<double> scale(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i], pdf = std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
      scale[i] = std::fabs(dy[i]) * (1 + std::fabs(v) * pdf);
    }
    ExpectWithinUlps(dx, testing_util::Widen(want), scale, 3, "gelu' " + what);
  });
}

TEST(ActivationKernelEmulation, GeluTanhMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  ForEachForward(k::gelu_tanh_forward_kernel, [&](const auto& x, const auto& y, const auto& what) {
    std::vector<float> want(x.size());
    ops.ActivationForward(Activation::kGeluTanh, x.data(), want.data(),
                          static_cast<int64_t>(x.size()));
    ExpectBitEqual(y, want, "gelu_tanh " + what);
  });
  ForEachBackward(k::gelu_tanh_backward_kernel,
                  [&](const auto& x, const auto& dy, const auto& dx, const auto& what) {
                    std::vector<float> want(x.size());
                    ops.ActivationBackward(Activation::kGeluTanh, x.data(), dy.data(), want.data(),
                                           static_cast<int64_t>(x.size()));
                    ExpectBitEqual(dx, want, "gelu_tanh' " + what);
                  });
}

TEST(ActivationKernelEmulation, ReluMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  ForEachForward(k::relu_forward_kernel, [&](const auto& x, const auto& y, const auto& what) {
    std::vector<float> want(x.size());
    ops.ActivationForward(Activation::kRelu, x.data(), want.data(), static_cast<int64_t>(x.size()));
    ExpectBitEqual(y, want, "relu " + what);
  });
  ForEachBackward(k::relu_backward_kernel,
                  [&](const auto& x, const auto& dy, const auto& dx, const auto& what) {
                    std::vector<float> want(x.size());
                    ops.ActivationBackward(Activation::kRelu, x.data(), dy.data(), want.data(),
                                           static_cast<int64_t>(x.size()));
                    ExpectBitEqual(dx, want, "relu' " + what);
                  });
}

// Tanh backward takes the saved output y = tanh(x) (here x's role is played by y).
TEST(ActivationKernelEmulation, TanhMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  ForEachForward(k::tanh_forward_kernel, [&](const auto& x, const auto& y, const auto& what) {
    std::vector<float> want(x.size());
    ops.TanhForward(x.data(), want.data(), static_cast<int64_t>(x.size()));
    ExpectBitEqual(y, want, "tanh " + what);
  });
  ForEachBackward(k::tanh_backward_kernel, [&](const auto& y, const auto& dy, const auto& dx,
                                               const auto& what) {
    std::vector<float> want(y.size());
    ops.TanhBackward(y.data(), dy.data(), want.data(), static_cast<int64_t>(y.size()));
    ExpectBitEqual(dx, want, "tanh' " + what);
  });
}

}  // namespace
}  // namespace headroom
