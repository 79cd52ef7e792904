// Dropout with a Philox-4x32-10 mask (kernels/philox.h defines the mask; this follows it).
//
// Element i is kept iff word (i & 3) of DropoutWords(seed, step, layer, site, i >> 2) is >=
// DropoutThreshold(rate); kept elements are scaled by 1 / (1 - rate). One Philox call yields
// the words of four consecutive elements, so chunks are processed in groups of four. The mask is
// a pure function of (key, i): backward is the same call on the gradient, and any split of the
// range between threads draws the same mask.
//
// The float path runs Philox on kLanes groups at once, structure-of-arrays (one array per
// counter word), so the compiler turns each round into vector 32x32->64 multiplies
// (vpmuludq) across groups; the scalar DropoutWords loop does one group at a time through a
// chain of dependent multiplies (~4 ns an element). The rounds repeat philox.h's arithmetic
// exactly (integer operations: the words are bit-identical, which tests/kernels/ops_test.cc
// checks against an independent Philox). The Philox block and the mask-and-scale loop are both
// compiled per ISA level with target_clones, because the build targets generic x86-64 (SSE2 has
// 4 lanes of 32 bits and no 64-bit lane multiply GCC will use here).
#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/philox.h"

namespace headroom {
namespace {

// Philox groups per block: 16 groups = 64 elements, two AVX-512 registers per counter word.
constexpr int kLanes = 16;

// words[4 * l + j] = word j of DropoutWords(key, g0 + l), for l < kLanes. A function of its own
// (noinline, with its own ISA clones): inlined into the element loop, GCC unrolls the lane loops
// first and then leaves them scalar. Clang refuses noinline beside target_clones (and does not
// inline a multiversioned function anyway), so it gets the clones alone.
#if defined(__clang__)
#define HR_DROPOUT_BLOCK_ATTRIBUTES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HR_DROPOUT_BLOCK_ATTRIBUTES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), noinline))
#endif
HR_DROPOUT_BLOCK_ATTRIBUTES void DropoutWordsBlock(const DropoutKey& key, uint64_t g0,
                                                   uint32_t* words) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const uint64_t g = g0 + static_cast<uint64_t>(l);
    c0[l] = static_cast<uint32_t>(g);
    c1[l] = static_cast<uint32_t>(g >> 32);
    c2[l] = (key.layer << 8) | (key.site & 0xFFu);
    c3[l] = static_cast<uint32_t>(key.step);
  }
  uint32_t k0 = static_cast<uint32_t>(key.seed);
  uint32_t k1 = static_cast<uint32_t>(key.seed >> 32) ^ static_cast<uint32_t>(key.step >> 32);
  for (int round = 0; round < 10; ++round) {
    for (int l = 0; l < kLanes; ++l) {
      const uint64_t p0 = static_cast<uint64_t>(kM0) * c0[l];
      const uint64_t p1 = static_cast<uint64_t>(kM1) * c2[l];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = static_cast<uint32_t>(p1);
      c3[l] = static_cast<uint32_t>(p0);
      c0[l] = n0;
      c2[l] = n2;
    }
    k0 += kW0;
    k1 += kW1;
  }
  for (int l = 0; l < kLanes; ++l) {
    words[4 * l] = c0[l];
    words[4 * l + 1] = c1[l];
    words[4 * l + 2] = c2[l];
    words[4 * l + 3] = c3[l];
  }
}

// y[i] = x[i] * keep(i) * keep_scale for elements [4 * g_lo, min(4 * g_hi, n)).
// always_inline: a call from the ISA clones of DropoutRangeFloat to one shared copy would run
// the mask-and-scale loop with baseline (SSE2) code.
template <typename T>
[[gnu::always_inline]] inline void DropoutRange(const T* x, T* y, int64_t n, const DropoutKey& key,
                                                uint32_t threshold, T keep_scale, int64_t g_lo,
                                                int64_t g_hi) {
  constexpr int kElems = 4 * kLanes;
  alignas(64) uint32_t words[kElems];
  alignas(64) T in[kElems];
  for (int64_t g = g_lo; g < g_hi; g += kLanes) {
    DropoutWordsBlock(key, static_cast<uint64_t>(g), words);
    const int64_t i0 = g * 4;
    T* out = y + i0;
    // Through a local copy: y may alias x, and a possibly-overlapping store would make the
    // compiler keep the select loop scalar. Full blocks copy a constant size (inlined, no call).
    if (n - i0 >= kElems) {
      std::memcpy(in, x + i0, sizeof(in));
      for (int j = 0; j < kElems; ++j) out[j] = words[j] >= threshold ? in[j] * keep_scale : T(0);
    } else {
      const int count = static_cast<int>(n - i0);
      std::memcpy(in, x + i0, sizeof(T) * static_cast<size_t>(count));
      for (int j = 0; j < count; ++j) out[j] = words[j] >= threshold ? in[j] * keep_scale : T(0);
    }
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void
DropoutRangeFloat(const float* x, float* y, int64_t n, const DropoutKey& key, uint32_t threshold,
                  float keep_scale, int64_t g_lo, int64_t g_hi) {
  DropoutRange(x, y, n, key, threshold, keep_scale, g_lo, g_hi);
}

void DropoutRangeOf(const float* x, float* y, int64_t n, const DropoutKey& key, uint32_t threshold,
                    float keep_scale, int64_t g_lo, int64_t g_hi) {
  DropoutRangeFloat(x, y, n, key, threshold, keep_scale, g_lo, g_hi);
}
void DropoutRangeOf(const double* x, double* y, int64_t n, const DropoutKey& key,
                    uint32_t threshold, double keep_scale, int64_t g_lo, int64_t g_hi) {
  DropoutRange(x, y, n, key, threshold, keep_scale, g_lo, g_hi);
}

}  // namespace

template <typename T>
void CpuOps<T>::Dropout(const T* x, T* y, int64_t n, float rate, const DropoutKey& key) {
  if (rate <= 0.0f) {
    if (y != x) CopyDevice(y, x, sizeof(T) * static_cast<size_t>(n));
    return;
  }
  if (rate >= 1.0f) {  // everything dropped (1 / (1 - rate) would be infinite)
    Fill(y, n, T(0));
    return;
  }
  const uint32_t threshold = DropoutThreshold(rate);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - static_cast<double>(rate)));
  // Split blocks of kLanes groups between threads, so every chunk starts on a block boundary.
  const int64_t groups = (n + 3) / 4;
  const int64_t blocks = (groups + kLanes - 1) / kLanes;
  pool_.ParallelFor(blocks, kElementwiseGrain / 4 / (4 * kLanes), [&](int64_t lo, int64_t hi) {
    DropoutRangeOf(x, y, n, key, threshold, keep_scale, lo * kLanes, std::min(groups, hi * kLanes));
  });
}

template void CpuOps<float>::Dropout(const float*, float*, int64_t, float, const DropoutKey&);
template void CpuOps<double>::Dropout(const double*, double*, int64_t, float, const DropoutKey&);

}  // namespace headroom
