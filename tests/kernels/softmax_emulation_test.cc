// The attention softmax's CUDA device code (kernels/cuda/softmax_kernels.cuh) run on the CPU
// under tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float>::SoftmaxForward /
// SoftmaxBackward (kernels/cpu/softmax.cc): no mask, padding, packed segments, causal, Sq != Sk,
// a fully masked sequence (its rows must be exact zeros), rows shorter and longer than a warp
// (Sk = 1 .. 70), row counts no multiple of the 8 rows of a block, in place.
//
// Tolerances, relative to each probability p (masked ones must be exactly 0, as on the twin):
// the maximum is the same float on both sides; exp differs by at most 2e-7 relative on the twin
// (cpu_math::Exp, kernels/cpu/fast_math.h) plus 1 ulp on the host's expf, together under 6 u
// (u = 2^-24); the device sums the Sk positive exponentials in float, within (Sk - 1) u of the
// twin's double sum; the reciprocal and the products add a few roundings. Forward: |dp| <=
// (Sk + 10) u p. Backward, ds = scale p (dp - dot): the device's float dot of Sk products is
// within (Sk + 1) u sum |p dp| of the twin's double one, and the three roundings of the
// element formula add 3 u scale p (|dp| + |dot|).
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/softmax_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::softmax_kernels;
using testing_util::RandomFloats;

constexpr double kUnitRoundoff = 0x1p-24;

enum Mask { kNone, kPadding, kPacked };

struct Case {
  int B, H, Sq, Sk;
  Mask mask;
  bool causal;
};

std::string Describe(const Case& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) + " Sq=" + std::to_string(c.Sq) +
         " Sk=" + std::to_string(c.Sk) + " mask=" + std::to_string(c.mask) +
         " causal=" + std::to_string(c.causal);
}

// Padding: sequence 0 loses its first key, the last sequence (when B > 1) is fully padded.
// Packed: segments 1, 2, 3 of lengths 3, 5, ... then padding.
std::vector<int32_t> Segments(const Case& c) {
  std::vector<int32_t> seg(static_cast<size_t>(c.B) * c.Sk, 1);
  for (int b = 0; b < c.B; ++b) {
    for (int s = 0; s < c.Sk; ++s) {
      int32_t& v = seg[static_cast<size_t>(b) * c.Sk + s];
      if (c.mask == kPadding) {
        v = (b == c.B - 1 && c.B > 1) || (b == 0 && s == 0 && c.Sk > 1) ? 0 : 1;
      } else if (c.mask == kPacked) {
        v = s < 3 ? 1 : s < 8 ? 2 : s < c.Sk - 2 ? 3 : 0;
      }
    }
  }
  return seg;
}

unsigned RowBlocks(int64_t rows) {
  return static_cast<unsigned>(cuda::CeilDiv(rows, k::kRowsPerBlock));
}

// The backward's band (the file comment) for each element of ds = scale p (dp - dot).
std::vector<double> BackwardBand(const std::vector<float>& p, const std::vector<float>& dp,
                                 int64_t rows, int Sk, float scale) {
  std::vector<double> band(p.size());
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0, dot_abs = 0;
    for (int64_t j = r * Sk; j < (r + 1) * Sk; ++j) {
      dot += double{p[j]} * dp[j];
      dot_abs += std::fabs(double{p[j]} * dp[j]);
    }
    for (int64_t j = r * Sk; j < (r + 1) * Sk; ++j) {
      band[j] = std::fabs(double{scale} * p[j]) *
                ((Sk + 1) * kUnitRoundoff * dot_abs +
                 3 * kUnitRoundoff * (std::fabs(dp[j]) + std::fabs(dot)));
    }
  }
  return band;
}

void RunCase(const Case& c) {
  SCOPED_TRACE(Describe(c));
  CpuOps<float> ops(1);
  const int64_t rows = int64_t{c.B} * c.H * c.Sq, n = rows * c.Sk;
  const std::vector<int32_t> seg = Segments(c);
  const int32_t* segments = c.mask == kNone ? nullptr : seg.data();
  const float scale = 0.37f;
  const std::vector<float> scores = RandomFloats(n, -8, 8, static_cast<uint64_t>(n));
  std::vector<float> want(n, NAN), got(n, NAN);
  ops.SoftmaxForward(scores.data(), want.data(), c.B, c.H, c.Sq, c.Sk, scale, segments, c.causal);
  testing_util::Launch1D(
      [&] {
        k::softmax_forward_kernel(scores.data(), got.data(), rows, c.H, c.Sq, c.Sk, scale, segments,
                                  c.causal);
      },
      RowBlocks(rows), k::kBlock);
  for (int64_t i = 0; i < n; ++i) {
    if (want[i] == 0.0f) {
      ASSERT_EQ(got[i], 0.0f) << "masked probability " << i;
    } else {
      ASSERT_LE(std::fabs(double{got[i]} - want[i]), (c.Sk + 10) * kUnitRoundoff * want[i])
          << "probability " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
  std::vector<float> in_place = scores;  // probs may alias scores
  testing_util::Launch1D(
      [&] {
        k::softmax_forward_kernel(in_place.data(), in_place.data(), rows, c.H, c.Sq, c.Sk, scale,
                                  segments, c.causal);
      },
      RowBlocks(rows), k::kBlock);
  testing_util::ExpectBitEqual(in_place, got, "forward in place");

  // Backward from the twin's probabilities, so both sides start from the same p.
  const std::vector<float> dprobs = RandomFloats(n, -1, 1, static_cast<uint64_t>(n) + 1);
  std::vector<float> want_ds(n, NAN), got_ds(n, NAN);
  ops.SoftmaxBackward(want.data(), dprobs.data(), want_ds.data(), rows, c.Sk, scale);
  testing_util::Launch1D(
      [&] {
        k::softmax_backward_kernel(want.data(), dprobs.data(), got_ds.data(), rows, c.Sk, scale);
      },
      RowBlocks(rows), k::kBlock);
  const std::vector<double> bound = BackwardBand(want, dprobs, rows, c.Sk, scale);
  for (int64_t j = 0; j < n; ++j) {
    ASSERT_LE(std::fabs(double{got_ds[j]} - want_ds[j]), bound[j])
        << "dscores " << j << ": got " << got_ds[j] << ", want " << want_ds[j];
  }
  std::vector<float> ds_in_place = dprobs;  // dscores may alias dprobs
  testing_util::Launch1D(
      [&] {
        k::softmax_backward_kernel(want.data(), ds_in_place.data(), ds_in_place.data(), rows, c.Sk,
                                   scale);
      },
      RowBlocks(rows), k::kBlock);
  testing_util::ExpectBitEqual(ds_in_place, got_ds, "backward in place");
}

// The bf16 instances (scores, probabilities and gradients stored in bf16, statistics fp32): the
// twin is CpuOps<float> on the widened bf16 inputs; each output within one bf16 ulp (the store's
// rounding on either side) plus the float band above (zero where masked: exact zeros).
void RunBf16Case(const Case& c) {
  SCOPED_TRACE("bf16 " + Describe(c));
  CpuOps<float> ops(1);
  const int64_t rows = int64_t{c.B} * c.H * c.Sq, n = rows * c.Sk;
  const std::vector<int32_t> seg = Segments(c);
  const int32_t* segments = c.mask == kNone ? nullptr : seg.data();
  const float scale = 0.37f;
  const std::vector<float> scores = testing_util::RandomBf16Floats(n, -8, 8, 11);
  std::vector<float> want(n);
  ops.SoftmaxForward(scores.data(), want.data(), c.B, c.H, c.Sq, c.Sk, scale, segments, c.causal);
  std::vector<__nv_bfloat16> probs = testing_util::ToDeviceBf16(scores);  // in place
  testing_util::Launch1D(
      [&] {
        k::softmax_forward_kernel(probs.data(), probs.data(), rows, c.H, c.Sq, c.Sk, scale,
                                  segments, c.causal);
      },
      RowBlocks(rows), k::kBlock);
  std::vector<double> band(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) band[i] = (c.Sk + 10) * kUnitRoundoff * want[i];
  testing_util::ExpectWithinBf16Ulp(testing_util::FromDeviceBf16(probs), want, "probabilities",
                                    band);

  // Backward from the bf16 probabilities the forward stored (both sides read the same p).
  const std::vector<float> p = testing_util::FromDeviceBf16(probs);
  const std::vector<float> dprobs = testing_util::RandomBf16Floats(n, -1, 1, 12);
  std::vector<float> want_ds(n);
  ops.SoftmaxBackward(p.data(), dprobs.data(), want_ds.data(), rows, c.Sk, scale);
  std::vector<__nv_bfloat16> ds = testing_util::ToDeviceBf16(dprobs);  // in place
  testing_util::Launch1D(
      [&] { k::softmax_backward_kernel(probs.data(), ds.data(), ds.data(), rows, c.Sk, scale); },
      RowBlocks(rows), k::kBlock);
  testing_util::ExpectWithinBf16Ulp(testing_util::FromDeviceBf16(ds), want_ds, "dscores",
                                    BackwardBand(p, dprobs, rows, c.Sk, scale));
}

TEST(SoftmaxKernelEmulation, Bf16StorageWithinOneBf16UlpOfTwin) {
  RunBf16Case({2, 3, 5, 5, kPadding, false});
  RunBf16Case({1, 2, 33, 33, kPacked, true});
  RunBf16Case({2, 1, 7, 70, kNone, false});
}

TEST(SoftmaxKernelEmulation, ForwardAndBackwardWithinBandOfTwin) {
  RunCase({1, 1, 1, 1, kNone, false});
  RunCase({1, 1, 1, 1, kNone, true});
  RunCase({2, 3, 5, 5, kNone, false});
  RunCase({1, 2, 33, 33, kNone, true});
  RunCase({3, 1, 7, 7, kPadding, false});
  RunCase({2, 2, 9, 9, kPadding, true});
  RunCase({2, 1, 3, 11, kPadding, false});  // Sq != Sk: queries see every non-padding key
  RunCase({1, 2, 40, 40, kPacked, true});
  RunCase({1, 1, 70, 70, kPacked, false});
  RunCase({1, 1, 3, 70, kNone, true});  // Sq < Sk, causal: keys past q are masked
}

}  // namespace
}  // namespace headroom
