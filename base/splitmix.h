// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fully specified 64-bit generator, so that
// seeded random numbers (initial weights, random batches, shuffles) are the same on every
// platform and compiler, unlike the <random> distributions.
//
// Example:
//   SplitMix rng{seed};
//   uint64_t bits = rng.Next();
//   int token = rng.Uniform(1, vocab - 1);
#ifndef HEADROOM_BASE_SPLITMIX_H_
#define HEADROOM_BASE_SPLITMIX_H_

#include <cstdint>

namespace headroom {

struct SplitMix {
  uint64_t state;
  // The next 64 random bits (advances the state by the golden-ratio increment, then mixes).
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi] (inclusive, hi >= lo); the modulo bias (< 2^-32 for small ranges) is
  // irrelevant for test batches.
  int Uniform(int lo, int hi) {
    return lo + static_cast<int>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  // Uniform in (0, 1): 53 random bits, never exactly 0 or 1 (safe under log).
  double Open01() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
};

}  // namespace headroom

#endif  // HEADROOM_BASE_SPLITMIX_H_
