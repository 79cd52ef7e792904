// Philox-4x32-10 counter-based random numbers (Salmon et al., SC'11, "Random123"), shared by the
// CPU and CUDA backends so both draw bit-identical dropout masks.
//
// A counter-based generator is a keyed bijection: the random word for element i is a pure
// function of (key, counter), so no state is stored, any element can be drawn independently by
// any thread, and backward recomputes the forward mask instead of keeping it in memory.
//
// Dropout mask definition (kernels/ops.h, Ops::Dropout): element i of site (seed, step, layer,
// site) is kept iff DropoutWord(...) >= DropoutThreshold(rate), where the word is output word
// (i & 3) of Philox(counter = {lo32(i >> 2), hi32(i >> 2), layer << 8 | site, lo32(step)},
// key = {lo32(seed), hi32(seed) ^ hi32(step)}).
#ifndef HEADROOM_KERNELS_PHILOX_H_
#define HEADROOM_KERNELS_PHILOX_H_

#include <cstdint>

#if defined(__CUDACC__)
#define HR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HR_HOST_DEVICE inline
#endif

namespace headroom {

struct Philox4x32 {
  uint32_t v[4];
};

HR_HOST_DEVICE void PhiloxMulHiLo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

// Ten rounds of Philox-4x32 on `ctr` with key `k0, k1`.
HR_HOST_DEVICE Philox4x32 Philox4x32_10(Philox4x32 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    PhiloxMulHiLo(kM0, ctr.v[0], &hi0, &lo0);
    PhiloxMulHiLo(kM1, ctr.v[2], &hi1, &lo1);
    Philox4x32 next;
    next.v[0] = hi1 ^ ctr.v[1] ^ k0;
    next.v[1] = lo1;
    next.v[2] = hi0 ^ ctr.v[3] ^ k1;
    next.v[3] = lo0;
    ctr = next;
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The four random words shared by elements 4*group .. 4*group+3 of a dropout site.
HR_HOST_DEVICE Philox4x32 DropoutWords(uint64_t seed, uint64_t step, uint32_t layer, uint32_t site,
                                       uint64_t group) {
  Philox4x32 ctr;
  ctr.v[0] = static_cast<uint32_t>(group);
  ctr.v[1] = static_cast<uint32_t>(group >> 32);
  ctr.v[2] = (layer << 8) | (site & 0xFFu);
  ctr.v[3] = static_cast<uint32_t>(step);
  return Philox4x32_10(ctr, static_cast<uint32_t>(seed),
                       static_cast<uint32_t>(seed >> 32) ^ static_cast<uint32_t>(step >> 32));
}

// Words below the threshold are dropped: P(drop) = threshold / 2^32 = rate (to 2^-32).
HR_HOST_DEVICE uint32_t DropoutThreshold(float rate) {
  double t = static_cast<double>(rate) * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
}

}  // namespace headroom

#endif  // HEADROOM_KERNELS_PHILOX_H_
