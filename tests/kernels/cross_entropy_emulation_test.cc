// The fused cross-entropy's CUDA device code (kernels/cuda/cross_entropy_kernels.cuh) run on the
// CPU under tests/kernels/cuda_emulation.h against the CPU twin, CpuOps<float>::
// SoftmaxCrossEntropy / LabelSmoothedCrossEntropy (kernels/cpu/cross_entropy.cc): vocabularies
// of 1, 2, 7, 513 and 1100 logits (no multiple of a warp; more than the 512 threads of a block,
// so threads stride), one-hot and smoothed targets, with and without weights, rows without a
// target (label -1: loss 0, gradient exactly 0), loss only, and the gradient written over the
// logits in place, and rows of a padded vocabulary (`ld` > V: the padding columns hold large
// logits that must not count, and get a gradient of exactly 0); in 16-byte packs where ld is a
// multiple of the pack, per column otherwise, as the launcher. The target's on / off / entropy are
// built as the launcher builds them (kernels/ops.h's definition, in double, rounded to float).
//
// Tolerances (u = 2^-24). The row maximum and the label's logit are the same floats on both
// sides. The twin sums exp(x - max) in double with cpu_math::Exp (within 2e-7 relative), the
// device in float with expf (within 1 ulp here): the sums differ by at most (V + 6) u relative.
// Loss: log(sum) then moves by that much, and the few float roundings of max + log(sum) - x and
// of the smoothed terms add 4 u of their magnitudes; smoothing adds the float sum of the logits,
// within (V + 1) u sum |x|, times off. Gradient: p = coef exp(x - max) / sum moves by
// (V + 12) u |p| (the sum, exp and three roundings), the subtraction of the target and its
// rounding to float add 2 u (|dx| + |coef| (on + off)). The bf16 instance (bf16 logits, the
// twin reading the same values) has the same loss band; each side then rounds its gradient to
// bf16, which adds one bf16 ulp (of the larger of the two) to the gradient's band.
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cross_entropy_kernels.cuh"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

namespace k = cuda::cross_entropy_kernels;
using testing_util::RandomFloats;

constexpr double kUnitRoundoff = 0x1p-24;

struct Case {
  int rows, V;
  float smoothing;
  bool weighted, gradient, in_place;
  int pad = 0;        // padding columns per row: ld = V + pad
  bool bf16 = false;  // logits and gradient stored as bf16 (the kernel's __nv_bfloat16 instance)
};

std::string Describe(const Case& c) {
  return "rows=" + std::to_string(c.rows) + " V=" + std::to_string(c.V) +
         " smoothing=" + std::to_string(c.smoothing) + " weighted=" + std::to_string(c.weighted) +
         " gradient=" + std::to_string(c.gradient) + " in_place=" + std::to_string(c.in_place) +
         " pad=" + std::to_string(c.pad) + " bf16=" + std::to_string(c.bf16);
}

// The launcher's target for label_smoothing over V classes.
k::Target MakeTarget(float smoothing, int V) {
  k::Target t;
  if (smoothing > 0.0f && V >= 2) {
    const double eps = smoothing, on = 1.0 - eps, off = eps / (V - 1);
    t.on = static_cast<float>(on);
    t.off = static_cast<float>(off);
    t.entropy = static_cast<float>(-on * std::log(on) - eps * std::log(off));
  }
  return t;
}

// The kernel's losses and gradient (loss, dx) against the twin's (want_loss, want_dx) on case
// c's inputs, row by row, within the float error bounds derived here (plus the bf16 storage's
// rounding of the gradient).
void CheckRows(const Case& c, const k::Target& t, const std::vector<float>& logits,
               const std::vector<int32_t>& labels, const float* weights, float grad_scale,
               const std::vector<float>& loss, const std::vector<float>& want_loss,
               const std::vector<float>& dx, const std::vector<float>& want_dx) {
  const int ld = c.V + c.pad;
  for (int r = 0; r < c.rows; ++r) {
    const float* xr = logits.data() + int64_t{r} * ld;
    for (int v = c.V; v < ld && c.gradient; ++v) {
      ASSERT_EQ(dx[int64_t{r} * ld + v], 0.0f) << "padding column " << v << " of row " << r;
      ASSERT_EQ(want_dx[int64_t{r} * ld + v], 0.0f) << "the twin's padding column " << v;
    }
    const int label = labels[r];
    if (label < 0) {
      ASSERT_EQ(loss[r], 0.0f) << "row " << r << " has no target";
      for (int v = 0; v < c.V && c.gradient; ++v) ASSERT_EQ(dx[int64_t{r} * ld + v], 0.0f);
      continue;
    }
    double mx = xr[0], x_abs = 0;
    for (int v = 0; v < c.V; ++v) {
      mx = std::max(mx, double{xr[v]});
      x_abs += std::fabs(xr[v]);
    }
    double sum = 0;
    for (int v = 0; v < c.V; ++v) sum += std::exp(xr[v] - mx);
    const double log_sum = std::log(sum), x_label = xr[label];
    double loss_bound =
        (c.V + 6) * kUnitRoundoff +
        4 * kUnitRoundoff * (std::fabs(mx) + std::fabs(log_sum) + std::fabs(x_label));
    if (t.off != 0.0f) {
      loss_bound += t.off * (c.V + 1) * kUnitRoundoff * x_abs +
                    4 * kUnitRoundoff * (t.on * std::fabs(x_label) + t.off * x_abs + t.entropy);
    }
    ASSERT_LE(std::fabs(double{loss[r]} - want_loss[r]), loss_bound)
        << "loss of row " << r << ": got " << loss[r] << ", want " << want_loss[r];
    if (!c.gradient) continue;
    const double coef = grad_scale * (weights != nullptr ? weights[r] : 1.0);
    for (int v = 0; v < c.V; ++v) {
      const int64_t i = int64_t{r} * ld + v;
      const double p = coef * std::exp(xr[v] - mx) / sum;
      // bf16: each side rounds its float gradient to bf16 (half an ulp each).
      const double rounding =
          c.bf16 ? std::max(testing_util::Bf16Ulp(dx[i]), testing_util::Bf16Ulp(want_dx[i])) : 0;
      const double bound = (c.V + 12) * kUnitRoundoff * std::fabs(p) +
                           2 * kUnitRoundoff * (std::fabs(want_dx[i]) + coef * (t.on + t.off)) +
                           rounding;
      ASSERT_LE(std::fabs(double{dx[i]} - want_dx[i]), bound)
          << "dlogits[" << r << ", " << v << "]: got " << dx[i] << ", want " << want_dx[i];
    }
  }
}

// One run of the kernel on case c, per column or (packed) in 16-byte packs.
void RunCaseOnce(const Case& c, bool packed) {
  SCOPED_TRACE(Describe(c) + " packed=" + std::to_string(packed));
  CpuOps<float> ops(1);
  const int ld = c.V + c.pad;
  const int64_t n = int64_t{c.rows} * ld;
  std::vector<float> logits = RandomFloats(n, -6, 6, static_cast<uint64_t>(n));
  if (c.bf16) logits = testing_util::RoundedToBf16(logits);  // the twin reads the bf16 values
  for (int64_t i = 0; i < n; ++i) {
    if (i % ld >= c.V) logits[i] = 50.0f;  // a padding column: would dominate if it counted
  }
  std::vector<int32_t> labels(static_cast<size_t>(c.rows));
  std::mt19937 rng(static_cast<uint32_t>(n));
  for (int r = 0; r < c.rows; ++r) {
    // Row 1 has no target; the others the last class, the first, or one at random.
    labels[r] = r == 1 ? -1 : r == 0 ? c.V - 1 : r == 2 ? 0 : static_cast<int32_t>(rng() % c.V);
  }
  const std::vector<float> weights = RandomFloats(c.rows, 0.5f, 2, 3);
  const float* w = c.weighted ? weights.data() : nullptr;
  const float grad_scale = 0.5f;

  std::vector<float> want_loss(c.rows, NAN), want_dx(n, NAN);
  ops.LabelSmoothedCrossEntropy(logits.data(), labels.data(), w, c.rows, c.V, ld, c.smoothing,
                                want_loss.data(), c.gradient ? want_dx.data() : nullptr,
                                grad_scale);
  std::vector<float> loss(c.rows, NAN), dx = c.in_place ? logits : std::vector<float>(n, NAN);
  const k::Target t = MakeTarget(c.smoothing, c.V);
  if (c.bf16) {
    const std::vector<__nv_bfloat16> x16 = testing_util::ToDeviceBf16(logits);
    std::vector<__nv_bfloat16> dx16 = c.in_place ? x16 : testing_util::ToDeviceBf16(dx);
    const __nv_bfloat16* x = c.in_place ? dx16.data() : x16.data();
    testing_util::Launch1D(
        [&] {
          k::cross_entropy_kernel(x, labels.data(), w, c.V, ld, t, loss.data(),
                                  c.gradient ? dx16.data() : nullptr, grad_scale, packed);
        },
        static_cast<unsigned>(c.rows), k::kBlock);
    dx = testing_util::FromDeviceBf16(dx16);
    // The twin's gradient stored as the device stores it.
    want_dx = testing_util::RoundedToBf16(want_dx);
  } else {
    const float* x = c.in_place ? dx.data() : logits.data();
    testing_util::Launch1D(
        [&] {
          k::cross_entropy_kernel(x, labels.data(), w, c.V, ld, t, loss.data(),
                                  c.gradient ? dx.data() : nullptr, grad_scale, packed);
        },
        static_cast<unsigned>(c.rows), k::kBlock);
  }

  CheckRows(c, t, logits, labels, c.weighted ? weights.data() : nullptr, grad_scale, loss,
            want_loss, dx, want_dx);
}

// As the launcher runs it: in packs where rows start 16-byte aligned (ld a multiple of the pack),
// per column otherwise (the cases have both).
void RunCase(const Case& c) { RunCaseOnce(c, (c.V + c.pad) % (c.bf16 ? 8 : 4) == 0); }

TEST(CrossEntropyKernelEmulation, OneHotWithinBandOfTwin) {
  RunCase({3, 1, 0, false, true, false});
  RunCase({3, 2, 0, true, true, false});
  RunCase({4, 7, 0, false, true, true});
  RunCase({4, 513, 0, true, true, false});
  RunCase({3, 1100, 0, false, false, false});
  RunCase({3, 1100, 0, true, true, true});
}

TEST(CrossEntropyKernelEmulation, LabelSmoothedWithinBandOfTwin) {
  RunCase({3, 2, 0.1f, false, true, false});
  RunCase({4, 7, 0.1f, true, true, true});
  RunCase({4, 513, 0.2f, false, false, false});
  RunCase({3, 1100, 0.1f, true, true, false});
}

TEST(CrossEntropyKernelEmulation, PaddedVocabularyColumnsDoNotCount) {
  RunCase({3, 7, 0, false, true, false, 121});  // V = 7 padded to 128
  RunCase({4, 513, 0.1f, true, true, true, 127});
  RunCase({3, 1100, 0, true, false, false, 52});
}

// The __nv_bfloat16 instance: bf16 logits, the bf16 gradient (in place over the logits and not),
// fp32 losses; padded and smoothed.
TEST(CrossEntropyKernelEmulation, Bf16LogitsWithinBandOfTwin) {
  RunCase({3, 2, 0, true, true, false, 0, true});
  RunCase({4, 513, 0, false, true, true, 127, true});
  RunCase({3, 1100, 0.1f, true, true, true, 52, true});
  RunCase({4, 7, 0.1f, false, true, false, 121, true});
}

}  // namespace
}  // namespace headroom
