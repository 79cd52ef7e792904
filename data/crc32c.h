// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of TFRecord
// framing (data/record_format.h), LevelDB logs and iSCSI. Software slice-by-8: portable and
// ~1-2 GB/s per core, enough to keep up with shard reads; the SSE4.2 `crc32` instruction would be
// the next step if the record reader's throughput ever needs it.
//
// Example:
//   uint32_t crc = crc32c::Value("123456789", 9);       // 0xe3069283
//   uint32_t stored = crc32c::Mask(crc);                 // what a record file holds
//   assert(crc32c::Unmask(stored) == crc);
#ifndef HEADROOM_DATA_CRC32C_H_
#define HEADROOM_DATA_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace headroom {
namespace crc32c {

// Returns the CRC32C of data[0, n), continuing from `init_crc`, the CRC32C of some string A:
// Extend(Value(A), B) == Value(A + B). Extend(0, data, n) == Value(data, n).
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);

// Returns the CRC32C of data[0, n).
inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// Stored CRCs are masked. Computing the CRC of a string that contains embedded CRCs (a record
// file checksummed again as a whole, a record whose payload is itself a record) behaves badly:
// the CRC of `data + crc(data)` is a constant, so corruption that rewrites both parts goes
// unseen. Rotating and adding a constant breaks that algebraic relation. The constant is the one
// TensorFlow and LevelDB use, so our files interoperate with theirs.
constexpr uint32_t kMaskDelta = 0xa282ead8u;

// Returns the masked representation of `crc`.
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

// Returns the crc whose masked representation is `masked_crc`: Unmask(Mask(c)) == c.
inline uint32_t Unmask(uint32_t masked_crc) {
  uint32_t rot = masked_crc - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace crc32c
}  // namespace headroom

#endif  // HEADROOM_DATA_CRC32C_H_
