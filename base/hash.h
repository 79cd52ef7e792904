// Fnv1a: the 64-bit FNV-1a hash, a checksum that sees every byte and its position (not
// cryptographic). Used to compare configs and weights across ranks.
//
// Example:
//   const uint64_t h = Fnv1a(params.data(), sizeof(float) * params.size());
#ifndef HEADROOM_BASE_HASH_H_
#define HEADROOM_BASE_HASH_H_

#include <cstddef>
#include <cstdint>

namespace headroom {

// FNV-1a over `bytes` bytes at `data`, continuing from `h` (the FNV offset basis by default).
inline uint64_t Fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace headroom

#endif  // HEADROOM_BASE_HASH_H_
