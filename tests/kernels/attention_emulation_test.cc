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
#include <utility>

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

// The kernels' outputs for one call (forward, then the three backward kernels); ds: the stored
// dS ([B, H, S, S], NaN where not written) where the stored-dS path ran.
struct Outputs {
  std::vector<float> out, lse, dq, dk, dv, ds;
};

// Which backward RunKernels runs (head sizes up to 128 have both): the dQ kernel recomputing S
// and dP; the stored-dS path (the dK/dV kernel also writes dS, the dQ kernel reads it back: the
// launcher's path up to S = 512); or both, which must agree bit for bit (dQ, and dK, dV
// unchanged by the store), the outputs being the recomputing kernels'.
enum class Path { kRecompute, kStored, kBoth };

// `path` where the stored-dS path exists (head sizes up to 128), else the recomputing one.
template <int D>
constexpr Path WhereStored(Path path) {
  return Shapes<D>::Dq::kInRegisters ? path : Path::kRecompute;
}

// The stored-dS path's dK/dV and dQ kernels of `D` under `a` (forward outputs and delta set),
// into outputs of their own: dq, dk, dv and the workspace widened.
template <int D, typename A>
Outputs RunStoredBackward(cuda::attention_kernels::AttentionTensors<A> a) {
  using testing_util::FromDevice;
  using testing_util::ToDevice;
  using Dq = typename Shapes<D>::Dq;
  using Dkv = typename Shapes<D>::Dkv;
  namespace ak = cuda::attention_kernels;
  const int64_t n = int64_t{a.B} * a.S * a.H * D;
  // NaN to start with: dQ would read any entry that the dK/dV kernel should write but does not.
  std::vector<A> dq = ToDevice<A>(std::vector<float>(n, NAN)), dk = dq, dv = dq;
  std::vector<__nv_bfloat16> ds =
      ToDevice<__nv_bfloat16>(std::vector<float>(int64_t{a.B} * a.H * a.S * a.S, NAN));
  a.dq = dq.data();
  a.dk = dk.data();
  a.dv = dv.data();
  a.ds = ds.data();
  const unsigned grid_x = static_cast<unsigned>(a.B * a.H);
  auto grid_y = [&](int block_rows) {
    return static_cast<unsigned>((a.S + block_rows - 1) / block_rows);
  };
  emulation::Launch([&] { ak::attention_dkv_kernel<Dkv, A, true>(a); }, grid_x, grid_y(Dkv::kRows),
                    Dkv::kThreads, Dkv::kDkvBytes);
  emulation::Launch([&] { ak::attention_dq_kernel<Dq, A, true>(a); }, grid_x, grid_y(Dq::kRows),
                    Dq::kThreads, Dq::kDqStoredBytes);
  return {{}, {}, FromDevice(dq), FromDevice(dk), FromDevice(dv), FromDevice(ds)};
}

// Runs the four kernels of `D` on q, k, v, dout under `shape`, with the tensors stored as A
// (float; or bf16, for which the inputs must already be bf16 values): the outputs widened.
template <int D, typename A = float>
Outputs RunKernels(const AttentionArgs& shape, const std::vector<float>& q,
                   const std::vector<float>& k, const std::vector<float>& v,
                   const std::vector<float>& dout, Path path = Path::kRecompute) {
  using testing_util::FromDevice;
  using testing_util::ToDevice;
  cuda::attention_kernels::AttentionTensors<A> a;
  static_cast<cuda::attention_kernels::AttentionShape&>(a) = shape;
  const int64_t n = static_cast<int64_t>(q.size()), rows = int64_t{a.B} * a.H * a.S;
  // Outputs start as NaN: every element the kernels should write must be written.
  const std::vector<float> nan_n(n, NAN);
  std::vector<A> out = ToDevice<A>(nan_n), dq = out, dk = out, dv = out;
  Outputs o{{}, std::vector<float>(rows, NAN), {}, {}, {}, {}};
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
  o.out = FromDevice(out);
  if (path != Path::kStored) {
    emulation::Launch([&] { ak::attention_dkv_kernel<Dkv, A>(a); }, grid_x, grid_y(Dkv::kRows),
                      Dkv::kThreads, Dkv::kDkvBytes);
    emulation::Launch([&] { ak::attention_dq_kernel<Dq, A>(a); }, grid_x, grid_y(Dq::kRows),
                      Dq::kThreads, Dq::kDqBytes);
    o.dq = FromDevice(dq);
    o.dk = FromDevice(dk);
    o.dv = FromDevice(dv);
  }
  if constexpr (Dq::kInRegisters) {
    if (path == Path::kRecompute) return o;
    Outputs stored = RunStoredBackward<D, A>(a);
    o.ds = std::move(stored.ds);
    if (path == Path::kStored) {
      o.dq = std::move(stored.dq);
      o.dk = std::move(stored.dk);
      o.dv = std::move(stored.dv);
      return o;
    }
    testing_util::ExpectBitEqual(stored.dq, o.dq, "dq from the stored dS against recomputed");
    testing_util::ExpectBitEqual(stored.dk, o.dk, "dk of the dK/dV kernel that stores dS");
    testing_util::ExpectBitEqual(stored.dv, o.dv, "dv of the dK/dV kernel that stores dS");
  }
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
// they are held to the reference at the float kernels' tolerance. The bf16 instance's backward
// takes one path per case (CI's time: the float kernels check the two against each other bit
// for bit, RunCase): `path`, where the stored-dS path exists.
template <int D>
void ExpectBf16StorageMatches(Path path, const AttentionArgs& a, const std::vector<float>& q,
                              const std::vector<float>& k, const std::vector<float>& v,
                              const std::vector<float>& dout, const std::vector<double>& want_dq,
                              const std::vector<double>& want_dk,
                              const std::vector<double>& want_dv) {
  const std::vector<float> q16 = AsStored(q), k16 = AsStored(k), v16 = AsStored(v),
                           dout16 = AsStored(dout);
  const Outputs wide = RunKernels<D>(a, q16, k16, v16, dout16);
  const Outputs stored =
      RunKernels<D, __nv_bfloat16>(a, q16, k16, v16, dout16, WhereStored<D>(path));
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

// One case's inputs: segments, q, k, v, dout (random; with `bf16_values`, bf16 values, so that
// the kernels' tiles hold them exactly) and the reference on them.
struct Problem {
  Case c;
  int D;
  std::vector<int32_t> segments;
  std::vector<float> q, k, v, dout;
  DropoutKey key{77, 3, 2, 0};

  bool masked() const { return c.mask != kNone; }
  RefAttention Ref() const {
    return {c.B,      c.S,    c.H, D, 1 / std::sqrt(double(D)), masked() ? &segments : nullptr,
            c.causal, c.rate, key};
  }
  AttentionArgs Args() const {
    return MakeArgs(c, Ref().scale, masked() ? segments.data() : nullptr, key);
  }
};

Problem MakeProblem(const Case& c, int D, std::mt19937_64& rng, bool bf16_values) {
  Problem p{c, D, std::vector<int32_t>(int64_t{c.B} * c.S, 1), {}, {}, {}, {}};
  // Padding as the op test: sequence 0 loses keys 0 and 1, the last sequence is fully padded.
  // Packed: sentences of several lengths crossing the 64-token tiles, and padding tails.
  if (c.mask == kPadding) {
    for (int s = 0; s < std::min(c.S - 1, 2); ++s) p.segments[s] = 0;
    for (int b = 1; b < c.B; ++b) {
      for (int s = 0; s < c.S; ++s) p.segments[b * c.S + s] = b == c.B - 1 ? 0 : (s % 3 != 2);
    }
  } else if (c.mask == kPacked) {
    p.segments = testing_util::PackedSegments(c.B, c.S);
  }
  std::uniform_real_distribution<double> wide(-2, 2), unit(-1, 1);
  const int64_t n = int64_t{c.B} * c.S * c.H * D;
  auto draw = [&](std::vector<float>* x, std::uniform_real_distribution<double>& dist) {
    x->resize(n);
    for (float& e : *x) e = static_cast<float>(dist(rng));
    if (bf16_values) *x = AsStored(*x);
  };
  draw(&p.q, wide);
  draw(&p.k, wide);
  draw(&p.v, unit);
  draw(&p.dout, unit);
  return p;
}

std::vector<double> Widen(const std::vector<float>& f) { return {f.begin(), f.end()}; }

template <int D>
void RunCase(const Case& c) {
  SCOPED_TRACE("B=" + std::to_string(c.B) + " S=" + std::to_string(c.S) + " H=" +
               std::to_string(c.H) + " D=" + std::to_string(D) + " mask=" + std::to_string(c.mask) +
               " causal=" + std::to_string(c.causal) + " rate=" + std::to_string(c.rate));
  std::mt19937_64 rng(static_cast<uint64_t>(c.B * 1000 + c.S * 10 + c.H + D));
  const Problem p = MakeProblem(c, D, rng, false);
  const RefAttention ref = p.Ref();
  std::vector<double> want_out, want_lse, want_dq, want_dk, want_dv;
  ref.Forward(Widen(p.q), Widen(p.k), Widen(p.v), &want_out, &want_lse);
  ref.Backward(Widen(p.q), Widen(p.k), Widen(p.v), Widen(p.dout), &want_dq, &want_dk, &want_dv);

  const AttentionArgs a = p.Args();
  // Both backward paths, bit for bit the same (the reference checks the recomputing one).
  const Outputs got = RunKernels<D>(a, p.q, p.k, p.v, p.dout, WhereStored<D>(Path::kBoth));
  ExpectNear(got.out, want_out, "out");
  ExpectNear(got.lse, want_lse, "lse");
  ExpectNear(got.dq, want_dq, "dq");
  ExpectNear(got.dk, want_dk, "dk");
  ExpectNear(got.dv, want_dv, "dv");
  // The recomputing bf16 path (the launcher's past S = 512); RunStoredCase runs the stored one.
  ExpectBf16StorageMatches<D>(Path::kRecompute, a, p.q, p.k, p.v, p.dout, want_dq, want_dk,
                              want_dv);
  if (c.mask == kPacked) {
    ExpectOtherSentencesIgnored<D>(c, a, p.segments, got, p.q, p.k, p.v, p.dout, rng);
  }
}

// The reference's dS [B, H, S, S] (RefAttention::ScoreGradients, float64) and, per entry, how far
// the kernels' bf16 forward moves it: out sums bf16-rounded dropped probabilities (within 2^-9
// of each), so delta = rowsum(dout * out) is off by up to 2^-9 sum_j |dout_j| sum_k p_k keep_k
// |v_kj|, which dS = scale P (dP - delta) carries times scale * P.
void ReferenceScoreGradients(const Problem& p, std::vector<double>* want,
                             std::vector<double>* from_forward) {
  const Case& c = p.c;
  const RefAttention ref = p.Ref();
  const std::vector<double> q = Widen(p.q), k = Widen(p.k), v = Widen(p.v), dout = Widen(p.dout);
  want->assign(int64_t{c.B} * c.H * c.S * c.S, 0.0);
  from_forward->assign(want->size(), 0.0);
  std::vector<double> probs;
  for (int b = 0; b < c.B; ++b) {
    for (int h = 0; h < c.H; ++h) {
      for (int qi = 0; qi < c.S; ++qi) {
        const std::vector<double> row = ref.ScoreGradients(q, k, v, dout, b, h, qi, &probs);
        double delta_error = 0;
        for (int j = 0; j < p.D; ++j) {
          double out = 0;
          for (int kk = 0; kk < c.S; ++kk) {
            out += probs[kk] * ref.Keep(b, h, qi, kk) * std::fabs(v[ref.At(b, kk, h, j)]);
          }
          delta_error += std::ldexp(std::fabs(dout[ref.At(b, qi, h, j)]) * out, -9);
        }
        const int64_t row0 = ((int64_t{b} * c.H + h) * c.S + qi) * c.S;
        for (int kk = 0; kk < c.S; ++kk) {
          (*want)[row0 + kk] = row[kk];
          (*from_forward)[row0 + kk] = ref.scale * probs[kk] * delta_error;
        }
      }
    }
  }
}

// The stored dS against the reference's over every entry the dQ kernel reads: queries and keys
// below S, and (causal) the keys of the key tiles up to the one holding the query. 0 exactly
// where the mask hides the key (the dK/dV kernel writes those zeros); elsewhere within the
// stored value's bf16 rounding (2^-8 of it), what the bf16 forward moves it by
// (ReferenceScoreGradients) and fp32 rounding (1e-5 of the largest dS). The inputs are bf16
// values, so the kernels' operands are exact.
template <int D>
void ExpectStoredDsNear(const Problem& p, const std::vector<float>& ds) {
  const Case& c = p.c;
  const RefAttention ref = p.Ref();
  constexpr int kTile = Shapes<D>::Dq::kCols;
  std::vector<double> want, from_forward;
  ReferenceScoreGradients(p, &want, &from_forward);
  double largest = 0, worst = 0;
  for (double w : want) largest = std::max(largest, std::fabs(w));
  ASSERT_GT(largest, 0);
  for (int b = 0; b < c.B; ++b) {
    for (int h = 0; h < c.H; ++h) {
      for (int qi = 0; qi < c.S; ++qi) {
        const int keys = c.causal ? std::min(c.S, (qi / kTile + 1) * kTile) : c.S;
        for (int kk = 0; kk < keys; ++kk) {
          const int64_t i = ((int64_t{b} * c.H + h) * c.S + qi) * c.S + kk;
          if (ref.Masked(b, qi, kk)) {
            ASSERT_EQ(ds[i], 0.0f) << "dS of a hidden key: query " << qi << ", key " << kk;
            continue;
          }
          const double err = std::fabs(ds[i] - want[i]);
          ASSERT_LE(err, std::ldexp(std::fabs(want[i]), -8) + from_forward[i] + 1e-5 * largest)
              << "dS, query " << qi << ", key " << kk << ": got " << ds[i] << ", want " << want[i];
          worst = std::max(worst, err / largest);
        }
      }
    }
  }
  ::testing::Test::RecordProperty("worst_ds_error_of_largest", std::to_string(worst));
}

// The stored-dS path (the launcher's for S up to 512 at head sizes up to 128) on bf16 inputs:
// dQ bit for bit the recomputing kernel's, dK and dV unchanged by the store, all three against
// the reference, and the stored dS itself against the reference's; then its bf16-storage
// instance.
template <int D>
void RunStoredCase(const Case& c) {
  SCOPED_TRACE("stored dS: B=" + std::to_string(c.B) + " S=" + std::to_string(c.S) + " H=" +
               std::to_string(c.H) + " D=" + std::to_string(D) + " mask=" + std::to_string(c.mask) +
               " causal=" + std::to_string(c.causal) + " rate=" + std::to_string(c.rate));
  std::mt19937_64 rng(static_cast<uint64_t>(c.B * 1000 + c.S * 10 + c.H + D + 1));
  const Problem p = MakeProblem(c, D, rng, true);
  std::vector<double> want_dq, want_dk, want_dv;
  p.Ref().Backward(Widen(p.q), Widen(p.k), Widen(p.v), Widen(p.dout), &want_dq, &want_dk, &want_dv);
  const Outputs got = RunKernels<D>(p.Args(), p.q, p.k, p.v, p.dout, Path::kBoth);
  ExpectNear(got.dq, want_dq, "dq");
  ExpectNear(got.dk, want_dk, "dk");
  ExpectNear(got.dv, want_dv, "dv");
  ExpectStoredDsNear<D>(p, got.ds);
  ExpectBf16StorageMatches<D>(Path::kStored, p.Args(), p.q, p.k, p.v, p.dout, want_dq, want_dk,
                              want_dv);
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

// The stored-dS path on bf16 values (RunStoredCase): every head size it has, sequences that are
// no multiple of the tiles (80, 200) and the longest it takes (512), causal or not, padding,
// packed sentences and dropout.
TEST(AttentionKernelEmulation, StoredScoreGradients) {
  RunStoredCase<16>({1, 512, 1, kPacked, true, 0.1f});
  RunStoredCase<32>({1, 80, 2, kPacked, false, 0.2f});
  RunStoredCase<64>({1, 200, 1, kPadding, true, 0.1f});
  RunStoredCase<128>({1, 80, 1, kNone, false, 0});
}

}  // namespace
}  // namespace headroom
