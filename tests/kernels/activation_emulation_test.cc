// The activation kernels' CUDA device code (kernels/cuda/activation_kernels.cuh) run on the CPU
// under tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float>
// (kernels/cpu/activation.cc), on ragged sizes, with the launcher's grid and with one block
// (every thread strides), per element and in 16-byte packs, out of place and in place.
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
// The bf16 instances (bf16 storage, fp32 arithmetic) are compared at the end of this file.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
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

// A forward kernel f(x, y, n, packed) and a backward kernel f(x, dy, dx, n, packed), as device
// code.
using ForwardKernel = void (*)(const float*, float*, int64_t, bool);
using BackwardKernel = void (*)(const float*, const float*, float*, int64_t, bool);

// The kernel's output for every ragged size and grid, per element and in 16-byte packs (the
// vectors' data is 16-byte aligned), out of place and in place (y == x), passed to
// check(n, x, y) (and, backward, check(n, x, dy, dx)).
void ForEachForward(ForwardKernel kernel,
                    const std::function<void(const std::vector<float>&, const std::vector<float>&,
                                             const std::string&)>& check) {
  for (int64_t n : RaggedSizes()) {
    const std::vector<float> x = RandomFloats(n, -6, 6, static_cast<uint64_t>(n));
    for (unsigned grid : GridStrideGrids(n, k::kBlock)) {
      for (bool packed : {false, true}) {
        const std::string what = "n=" + std::to_string(n) + " grid=" + std::to_string(grid) +
                                 " packed=" + std::to_string(packed);
        std::vector<float> y(static_cast<size_t>(n), NAN);
        Launch1D([&] { kernel(x.data(), y.data(), n, packed); }, grid, k::kBlock);
        check(x, y, what);
        std::vector<float> in_place = x;
        Launch1D([&] { kernel(in_place.data(), in_place.data(), n, packed); }, grid, k::kBlock);
        check(x, in_place, what + " in place");
      }
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
      for (bool packed : {false, true}) {
        const std::string what = "n=" + std::to_string(n) + " grid=" + std::to_string(grid) +
                                 " packed=" + std::to_string(packed);
        std::vector<float> dx(static_cast<size_t>(n), NAN);
        Launch1D([&] { kernel(x.data(), dy.data(), dx.data(), n, packed); }, grid, k::kBlock);
        check(x, dy, dx, what);
        std::vector<float> in_place = dy;
        Launch1D([&] { kernel(x.data(), in_place.data(), in_place.data(), n, packed); }, grid,
                 k::kBlock);
        check(x, dy, in_place, what + " in place");
      }
    }
  }
}

TEST(ActivationKernelEmulation, GeluWithinBandOfTwin) {
  CpuOps<float> ops(1);
  ForEachForward(k::gelu_forward_kernel<float>,
                 [&](const auto& x, const auto& y, const auto& what) {
                   std::vector<float> want(x.size());
                   ops.GeluForward(x.data(), want.data(), static_cast<int64_t>(x.size()));
                   std::vector<double> scale(x.size());
                   for (size_t i = 0; i < x.size(); ++i) scale[i] = std::fabs(x[i]);
                   ExpectWithinUlps(y, testing_util::Widen(want), scale, 3, "gelu " + what);
                 });
  ForEachBackward(k::gelu_backward_kernel<float>, [&](const auto& x, const auto& dy, const auto& dx,
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
  ForEachForward(k::gelu_tanh_forward_kernel<float>,
                 [&](const auto& x, const auto& y, const auto& what) {
                   std::vector<float> want(x.size());
                   ops.ActivationForward(Activation::kGeluTanh, x.data(), want.data(),
                                         static_cast<int64_t>(x.size()));
                   ExpectBitEqual(y, want, "gelu_tanh " + what);
                 });
  ForEachBackward(k::gelu_tanh_backward_kernel<float>,
                  [&](const auto& x, const auto& dy, const auto& dx, const auto& what) {
                    std::vector<float> want(x.size());
                    ops.ActivationBackward(Activation::kGeluTanh, x.data(), dy.data(), want.data(),
                                           static_cast<int64_t>(x.size()));
                    ExpectBitEqual(dx, want, "gelu_tanh' " + what);
                  });
}

TEST(ActivationKernelEmulation, ReluMatchesTwinBitForBit) {
  CpuOps<float> ops(1);
  ForEachForward(k::relu_forward_kernel<float>, [&](const auto& x, const auto& y,
                                                    const auto& what) {
    std::vector<float> want(x.size());
    ops.ActivationForward(Activation::kRelu, x.data(), want.data(), static_cast<int64_t>(x.size()));
    ExpectBitEqual(y, want, "relu " + what);
  });
  ForEachBackward(k::relu_backward_kernel<float>,
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
  ForEachForward(k::tanh_forward_kernel<float>,
                 [&](const auto& x, const auto& y, const auto& what) {
                   std::vector<float> want(x.size());
                   ops.TanhForward(x.data(), want.data(), static_cast<int64_t>(x.size()));
                   ExpectBitEqual(y, want, "tanh " + what);
                 });
  ForEachBackward(k::tanh_backward_kernel<float>, [&](const auto& y, const auto& dy, const auto& dx,
                                                      const auto& what) {
    std::vector<float> want(y.size());
    ops.TanhBackward(y.data(), dy.data(), want.data(), static_cast<int64_t>(y.size()));
    ExpectBitEqual(dx, want, "tanh' " + what);
  });
}

// ---- The __nv_bfloat16 instances ----------------------------------------------------------
// bf16 inputs (the twin reads the same values), outputs against the twin's float result rounded
// to bf16 (RoundToBf16): bit for bit where the float results are (tanh form of GELU, ReLU, tanh),
// within one bf16 ulp for the erf form (its float results differ by the few float ulps above,
// far below a bf16 ulp, so the two roundings land on the same or adjacent bf16 values).

using Bf16ForwardKernel = void (*)(const __nv_bfloat16*, __nv_bfloat16*, int64_t, bool);
using Bf16BackwardKernel = void (*)(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*,
                                    int64_t, bool);
using TwinForward = std::function<void(const float*, float*, int64_t)>;
using TwinBackward = std::function<void(const float*, const float*, float*, int64_t)>;

// Both kernels on every ragged size and grid, in packs (the last n % 8 elements one at a time),
// out of place and in place (y over x, dx over dy).
void CheckBf16Instances(Bf16ForwardKernel forward, Bf16BackwardKernel backward,
                        const TwinForward& twin_forward, const TwinBackward& twin_backward,
                        bool bit_exact, const std::string& name) {
  const auto check = [&](const std::vector<float>& got, const std::vector<float>& want,
                         const std::string& what) {
    if (bit_exact) {
      ExpectBitEqual(got, want, what);
    } else {
      testing_util::ExpectWithinBf16Ulp(got, want, what);
    }
  };
  for (int64_t n : RaggedSizes()) {
    const std::vector<float> x = testing_util::RandomBf16Floats(n, -6, 6, static_cast<uint64_t>(n));
    const std::vector<float> dy =
        testing_util::RandomBf16Floats(n, -1, 1, static_cast<uint64_t>(n) + 1);
    std::vector<float> want_y(static_cast<size_t>(n)), want_dx(static_cast<size_t>(n));
    twin_forward(x.data(), want_y.data(), n);
    twin_backward(x.data(), dy.data(), want_dx.data(), n);
    want_y = testing_util::RoundedToBf16(want_y);
    want_dx = testing_util::RoundedToBf16(want_dx);
    const std::vector<__nv_bfloat16> x16 = testing_util::ToDeviceBf16(x);
    const std::vector<__nv_bfloat16> dy16 = testing_util::ToDeviceBf16(dy);
    for (unsigned grid : GridStrideGrids(n, k::kBlock)) {
      // Packed (the float tests above cover the per-element path; here n % 8 elements take it).
      for (bool in_place : {false, true}) {
        const std::string what = name + " n=" + std::to_string(n) +
                                 " grid=" + std::to_string(grid) +
                                 " in_place=" + std::to_string(in_place);
        std::vector<__nv_bfloat16> y16 = x16;
        Launch1D([&] { forward(in_place ? y16.data() : x16.data(), y16.data(), n, true); }, grid,
                 k::kBlock);
        check(testing_util::FromDeviceBf16(y16), want_y, what);
        std::vector<__nv_bfloat16> dx16 = dy16;
        Launch1D(
            [&] {
              backward(x16.data(), in_place ? dx16.data() : dy16.data(), dx16.data(), n, true);
            },
            grid, k::kBlock);
        check(testing_util::FromDeviceBf16(dx16), want_dx, what + " backward");
      }
    }
  }
}

TEST(ActivationKernelEmulation, Bf16InstancesMatchTwinRoundedToBf16) {
  CpuOps<float> ops(1);
  const auto twin = [&](Activation act) {
    return std::pair<TwinForward, TwinBackward>{
        [&ops, act](const float* x, float* y, int64_t n) { ops.ActivationForward(act, x, y, n); },
        [&ops, act](const float* x, const float* dy, float* dx, int64_t n) {
          ops.ActivationBackward(act, x, dy, dx, n);
        }};
  };
  const auto [gelu_fwd, gelu_bwd] = twin(Activation::kGelu);
  CheckBf16Instances(k::gelu_forward_kernel<__nv_bfloat16>, k::gelu_backward_kernel<__nv_bfloat16>,
                     gelu_fwd, gelu_bwd, false, "gelu");
  const auto [tanh_form_fwd, tanh_form_bwd] = twin(Activation::kGeluTanh);
  CheckBf16Instances(k::gelu_tanh_forward_kernel<__nv_bfloat16>,
                     k::gelu_tanh_backward_kernel<__nv_bfloat16>, tanh_form_fwd, tanh_form_bwd,
                     true, "gelu_tanh");
  const auto [relu_fwd, relu_bwd] = twin(Activation::kRelu);
  CheckBf16Instances(k::relu_forward_kernel<__nv_bfloat16>, k::relu_backward_kernel<__nv_bfloat16>,
                     relu_fwd, relu_bwd, true, "relu");
  // Tanh backward reads the saved output y (x's role here).
  CheckBf16Instances(
      k::tanh_forward_kernel<__nv_bfloat16>, k::tanh_backward_kernel<__nv_bfloat16>,
      [&](const float* x, float* y, int64_t n) { ops.TanhForward(x, y, n); },
      [&](const float* y, const float* dy, float* dx, int64_t n) {
        ops.TanhBackward(y, dy, dx, n);
      },
      true, "tanh");
}

}  // namespace
}  // namespace headroom
