// The fused attention's CUDA device code (kernels/cuda/attention_kernels.cuh), compiled for the
// CPU against tests/kernels/cuda_emulation.h and run against the float64 reference: CI checks
// the kernels' tiling, masks (padding, packed segments, causal), dropout indices, online softmax,
// synchronisation and shared-memory layout on every run, though it has no GPU. Packed rows also
// check that the other sentences of a row change nothing, bit for bit.
//
// Built twice (tests/kernels/CMakeLists.txt): with HR_EMULATE_EXACT_BF16 the bf16 operands keep
// full float precision, so the kernels must match the reference to float rounding (1e-5 of the
// largest value), which isolates logic errors; without it the operands are rounded to bf16 as on
// the GPU, and the tolerance is the CUDA op test's (1e-2 of the largest value).
#include "tests/kernels/cuda_emulation.h"
// The emulation header must come first: it defines what the device code expects of CUDA.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "kernels/cuda/attention_kernels.cuh"
#include "tests/kernels/attention_reference.h"
#include "tests/kernels/emulation_test_util.h"

namespace headroom {
namespace {

using cuda::attention_kernels::AttentionArgs;
using cuda::attention_kernels::Shapes;
using testing_util::RefAttention;

#ifdef HR_EMULATE_EXACT_BF16
constexpr double kRelativeTolerance = 1e-5;
#else
constexpr double kRelativeTolerance = 1e-2;
#endif

// Largest |got - want| over the elements, against kRelativeTolerance * max(max |want|, 1) (the
// floor: gradients that are exactly zero, e.g. with one key, come out as rounding noise); +inf
// wanted (lse of a row with every key masked) must come out +inf.
void ExpectNear(const std::vector<float>& got, const std::vector<double>& want,
                const std::string& what) {
  double largest = 1, worst = 0;
  for (double w : want) {
    if (std::isfinite(w)) largest = std::max(largest, std::fabs(w));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i])) {
      ASSERT_TRUE(std::isinf(got[i]) && got[i] > 0) << what << "[" << i << "] = " << got[i];
      continue;
    }
    const double err = std::fabs(got[i] - want[i]);
    ASSERT_FALSE(std::isnan(got[i])) << what << "[" << i << "] is NaN";
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, kRelativeTolerance * largest)
      << what << ": worst error " << worst << " against largest value " << largest;
}

enum Mask { kNone, kPadding, kPacked };

struct Case {
  int B, S, H;
  Mask mask;
  bool causal;
  float rate;
};

// The kernels' outputs for one call (forward, then the three backward kernels).
struct Outputs {
  std::vector<float> out, lse, dq, dk, dv;
};

// Runs the four kernels of `D` on q, k, v, dout under `shape`, with the tensors stored as A
// (float; or bf16, for which the inputs must already be bf16 values): the outputs widened.
template <int D, typename A = float>
Outputs RunKernels(const AttentionArgs& shape, const std::vector<float>& q,
                   const std::vector<float>& k, const std::vector<float>& v,
                   const std::vector<float>& dout) {
  using testing_util::FromDevice;
  using testing_util::ToDevice;
  cuda::attention_kernels::AttentionTensors<A> a;
  static_cast<cuda::attention_kernels::AttentionShape&>(a) = shape;
  const int64_t n = static_cast<int64_t>(q.size()), rows = int64_t{a.B} * a.H * a.S;
  // Outputs start as NaN: every element the kernels should write must be written.
  const std::vector<float> nan_n(n, NAN);
  std::vector<A> out = ToDevice<A>(nan_n), dq = out, dk = out, dv = out;
  Outputs o{{}, std::vector<float>(rows, NAN), {}, {}, {}};
  std::vector<float> delta(rows);
  const std::vector<A> q_d = ToDevice<A>(q), k_d = ToDevice<A>(k), v_d = ToDevice<A>(v),
                       dout_d = ToDevice<A>(dout);
  a.q = q_d.data();
  a.k = k_d.data();
  a.v = v_d.data();
  a.o = out.data();
  a.lse_out = o.lse.data();
  using Forward = typename Shapes<D>::Forward;
  using Dq = typename Shapes<D>::Dq;
  using Dkv = typename Shapes<D>::Dkv;
  namespace ak = cuda::attention_kernels;
  const unsigned grid_x = static_cast<unsigned>(a.B * a.H);
  auto grid_y = [&](int block_rows) {
    return static_cast<unsigned>((a.S + block_rows - 1) / block_rows);
  };
  emulation::Launch([&] { ak::attention_forward_kernel<Forward, A>(a); }, grid_x,
                    grid_y(Forward::kRows), Forward::kThreads, Forward::kForwardBytes);
  a.out = out.data();
  a.dout = dout_d.data();
  a.lse = o.lse.data();
  a.delta = delta.data();
  a.dq = dq.data();
  a.dk = dk.data();
  a.dv = dv.data();
  emulation::Launch([&] { ak::attention_delta_kernel<A>(a, D, delta.data()); },
                    static_cast<unsigned>((rows * 32 + 255) / 256), 1, 256, 0);
  emulation::Launch([&] { ak::attention_dkv_kernel<Dkv, A>(a); }, grid_x, grid_y(Dkv::kRows),
                    Dkv::kThreads, Dkv::kDkvBytes);
  emulation::Launch([&] { ak::attention_dq_kernel<Dq, A>(a); }, grid_x, grid_y(Dq::kRows),
                    Dq::kThreads, Dq::kDqBytes);
  o.out = FromDevice(out);
  o.dq = FromDevice(dq);
  o.dk = FromDevice(dk);
  o.dv = FromDevice(dv);
  return o;
}

// What storing x as bf16 keeps: x rounded (nearest even, base/bf16.h: independent of the
// emulation's rounding), or x itself where the emulation keeps bf16 exact.
std::vector<float> AsStored(const std::vector<float>& x) {
#ifdef HR_EMULATE_EXACT_BF16
  return x;
#else
  return testing_util::RoundedToBf16(x);
#endif
}

// The kernels with bf16 storage (q, k, v, dout read as bf16; out, dq, dk, dv stored as bf16).
// The float-storage kernels round their inputs to bf16 when loading a tile, so on the same bf16
// inputs both compute the same fp32 forward: the stored out must be the float kernels' out as
// stored, bit for bit, and lse (fp32 in both) equal. The backward reads the stored out for
// delta = rowsum(dout * out), so its gradients differ from the float kernels' by that rounding:
// they are held to the reference at the float kernels' tolerance.
template <int D>
void ExpectBf16StorageMatches(const AttentionArgs& a, const std::vector<float>& q,
                              const std::vector<float>& k, const std::vector<float>& v,
                              const std::vector<float>& dout, const std::vector<double>& want_dq,
                              const std::vector<double>& want_dk,
                              const std::vector<double>& want_dv) {
  const std::vector<float> q16 = AsStored(q), k16 = AsStored(k), v16 = AsStored(v),
                           dout16 = AsStored(dout);
  const Outputs wide = RunKernels<D>(a, q16, k16, v16, dout16);
  const Outputs stored = RunKernels<D, __nv_bfloat16>(a, q16, k16, v16, dout16);
  testing_util::ExpectBitEqual(stored.out, AsStored(wide.out), "bf16-storage out");
  testing_util::ExpectBitEqual(stored.lse, wide.lse, "bf16-storage lse");
  ExpectNear(stored.dq, want_dq, "bf16-storage dq");
  ExpectNear(stored.dk, want_dk, "bf16-storage dk");
  ExpectNear(stored.dv, want_dv, "bf16-storage dv");
}

// Attention across sentences is exactly 0: new keys and values for every token outside row 0's
// sentence 4 leave that sentence's outputs, lse and gradients bitwise unchanged.
template <int D>
void ExpectOtherSentencesIgnored(const Case& c, const AttentionArgs& a,
                                 const std::vector<int32_t>& segments, const Outputs& got,
                                 const std::vector<float>& q, std::vector<float> k,
                                 std::vector<float> v, const std::vector<float>& dout,
                                 std::mt19937_64& rng) {
  std::uniform_real_distribution<double> wide(-2, 2), unit(-1, 1);
  for (int64_t t = 0; t < int64_t{c.B} * c.S; ++t) {
    if (t < c.S && segments[t] == 4) continue;
    for (int64_t j = 0; j < int64_t{c.H} * D; ++j) {
      k[t * c.H * D + j] = static_cast<float>(wide(rng));
      v[t * c.H * D + j] = static_cast<float>(unit(rng));
    }
  }
  const Outputs other = RunKernels<D>(a, q, k, v, dout);
  int checked = 0;
  for (int s = 0; s < c.S; ++s) {
    if (segments[s] != 4) continue;
    ++checked;
    for (int h = 0; h < c.H; ++h) {
      ASSERT_EQ(other.lse[int64_t{h} * c.S + s], got.lse[int64_t{h} * c.S + s]) << s;
      for (int j = 0; j < D; ++j) {
        const int64_t i = (int64_t{s} * c.H + h) * D + j;
        ASSERT_EQ(other.out[i], got.out[i]) << "out, token " << s;
        ASSERT_EQ(other.dq[i], got.dq[i]) << "dq, token " << s;
        ASSERT_EQ(other.dk[i], got.dk[i]) << "dk, token " << s;
        ASSERT_EQ(other.dv[i], got.dv[i]) << "dv, token " << s;
      }
    }
  }
  EXPECT_GT(checked, 0);
}

// The kernels' argument block for case c (segments: null when unmasked).
AttentionArgs MakeArgs(const Case& c, double scale, const int32_t* segments,
                       const DropoutKey& key) {
  AttentionArgs a;
  a.B = c.B;
  a.S = c.S;
  a.H = c.H;
  a.scale = static_cast<float>(scale);
  a.segments = segments;
  a.causal = c.causal;
  a.dropout = c.rate > 0;
  a.threshold = DropoutThreshold(c.rate);
  a.keep_scale = c.rate >= 1 ? 0.0f : static_cast<float>(1.0 / (1.0 - c.rate));
  a.seed = key.seed;
  a.step = key.step;
  a.layer = key.layer;
  a.site = key.site;
  return a;
}

template <int D>
void RunCase(const Case& c) {
  SCOPED_TRACE("B=" + std::to_string(c.B) + " S=" + std::to_string(c.S) + " H=" +
               std::to_string(c.H) + " D=" + std::to_string(D) + " mask=" + std::to_string(c.mask) +
               " causal=" + std::to_string(c.causal) + " rate=" + std::to_string(c.rate));
  std::mt19937_64 rng(static_cast<uint64_t>(c.B * 1000 + c.S * 10 + c.H + D));
  std::uniform_real_distribution<double> wide(-2, 2), unit(-1, 1);
  const int64_t n = int64_t{c.B} * c.S * c.H * D;
  // Padding as the op test: sequence 0 loses keys 0 and 1, the last sequence is fully padded.
  // Packed: sentences of several lengths crossing the 64-token tiles, and padding tails.
  std::vector<int32_t> segments(int64_t{c.B} * c.S, 1);
  if (c.mask == kPadding) {
    for (int s = 0; s < std::min(c.S - 1, 2); ++s) segments[s] = 0;
    for (int b = 1; b < c.B; ++b) {
      for (int s = 0; s < c.S; ++s) segments[b * c.S + s] = b == c.B - 1 ? 0 : (s % 3 != 2);
    }
  } else if (c.mask == kPacked) {
    segments = testing_util::PackedSegments(c.B, c.S);
  }
  const bool masked = c.mask != kNone;
  const DropoutKey key{77, 3, 2, 0};
  const RefAttention ref{
      c.B,      c.S,    c.H, D, 1 / std::sqrt(double(D)), masked ? &segments : nullptr,
      c.causal, c.rate, key};
  std::vector<float> q(n), k(n), v(n), dout(n);
  for (float& x : q) x = static_cast<float>(wide(rng));
  for (float& x : k) x = static_cast<float>(wide(rng));
  for (float& x : v) x = static_cast<float>(unit(rng));
  for (float& x : dout) x = static_cast<float>(unit(rng));
  auto widen = [](const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); };
  std::vector<double> want_out, want_lse, want_dq, want_dk, want_dv;
  ref.Forward(widen(q), widen(k), widen(v), &want_out, &want_lse);
  ref.Backward(widen(q), widen(k), widen(v), widen(dout), &want_dq, &want_dk, &want_dv);

  const AttentionArgs a = MakeArgs(c, ref.scale, masked ? segments.data() : nullptr, key);
  const Outputs got = RunKernels<D>(a, q, k, v, dout);
  ExpectNear(got.out, want_out, "out");
  ExpectNear(got.lse, want_lse, "lse");
  ExpectNear(got.dq, want_dq, "dq");
  ExpectNear(got.dk, want_dk, "dk");
  ExpectNear(got.dv, want_dv, "dv");
  ExpectBf16StorageMatches<D>(a, q, k, v, dout, want_dq, want_dk, want_dv);
  if (c.mask == kPacked) ExpectOtherSentencesIgnored<D>(c, a, segments, got, q, k, v, dout, rng);
}

// Every head size the kernels have; sequences below, at and across the 64-row tiles; padding
// with a fully padded sequence, causal masks, dropout (rate 1 drops everything).
TEST(AttentionKernelEmulation, HeadSize16) {
  RunCase<16>({1, 1, 1, kNone, false, 0});
  RunCase<16>({2, 7, 3, kPadding, false, 0});
  RunCase<16>({2, 130, 1, kPadding, true, 0.5f});
}
TEST(AttentionKernelEmulation, HeadSize32) { RunCase<32>({2, 37, 2, kNone, true, 0.2f}); }
TEST(AttentionKernelEmulation, HeadSize64) {
  RunCase<64>({3, 64, 1, kPadding, true, 0});
  RunCase<64>({1, 129, 1, kPadding, false, 0.1f});
  RunCase<64>({1, 3, 2, kNone, true, 1.0f});
}
// Head size 128: dK/dV loops over 32-query tiles, so padding, non-causal rows and packed
// sentences cross those too.
TEST(AttentionKernelEmulation, HeadSize128) {
  RunCase<128>({1, 70, 1, kNone, true, 0.3f});
  RunCase<128>({3, 100, 1, kPadding, false, 0.1f});
  RunCase<128>({1, 130, 1, kPacked, true, 0});
}
// Packed rows of sentences (tensor2tensor's packed LM): causal within each sentence, nothing
// across, through tiles that hold parts of several sentences.
TEST(AttentionKernelEmulation, PackedSegments) {
  RunCase<32>({2, 130, 1, kPacked, true, 0.1f});
  RunCase<64>({1, 130, 1, kPacked, false, 0});
  RunCase<256>({1, 90, 1, kPacked, true, 0.2f});
}
// D = 256 runs dQ with 32-key tiles and dK/dV with 32-key blocks (attention_kernels::Shapes).
TEST(AttentionKernelEmulation, HeadSize256) {
  RunCase<256>({2, 45, 1, kPadding, true, 0.2f});
  RunCase<256>({1, 100, 1, kNone, false, 0});
}

}  // namespace
}  // namespace headroom
