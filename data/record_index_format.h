// The record index format: `<shard>.index` beside a record file (data/record_format.h) holds the
// byte offset where each of its records starts, so that a reader learns the record count from
// one small read and finds record r with one read of the block holding it, instead of reading
// every record header of the shard first. RecordWriter writes it beside every shard it closes;
// `headroom inspect --write_index` writes it for shards made elsewhere. All integers are
// little-endian; CRCs are masked CRC32C (crc32c::Mask), as in the record framing.
//
// Header, kRecordIndexHeaderBytes = 36 bytes:
//
//   offset  bytes  field
//   0       8      magic "HRINDEX\n"
//   8       4      version (kRecordIndexVersion)
//   12      4      B: entries per block (kRecordIndexBlockEntries = 64 when written here; any
//                  B >= 1 is read)
//   16      8      N: number of records in the shard
//   24      8      S: the shard's size in bytes when the index was written; an index whose S is
//                  not the shard's size now is stale and not used
//   32      4      masked CRC32C of bytes [0, 32)
//
// Then ceil(N / B) blocks. Block k holds the start offsets of records kB .. min(N, (k+1)B) - 1,
// 8 bytes each, followed by the masked CRC32C of those offset bytes (4 bytes). Block k therefore
// starts at byte 36 + k (8B + 4), record r's offset is entry r mod B of block r / B, and the
// file is 36 + 8N + 4 ceil(N / B) bytes long. An empty shard's index is the header alone.
//
// Why every record's offset, in small blocks: a loader reads examples in shuffled order, so each
// example it reads usually needs a block it does not have. Here that costs one read of 516 bytes
// (B = 64) and a CRC over them, a few microseconds beside the read of the record itself. An
// index of every K-th offset would be K times smaller (8 bytes per record on disk is ~1% of a
// BERT shard of 830-byte records at length 128; K = 64 would make it negligible) but would need
// up to K-1 further header reads in the shard to reach a record, on every shuffled read. Larger
// blocks would cut the CRCs' share of the index (0.8% at B = 64) but read, check and cache more
// per shuffled example: B = 512 measured ~1.5 us more CPU per example (7.2-7.9 us against
// 6.1-6.3) and needs 8x the memory per cached block (bench/RESULTS.md, "Data loading").
// Per-block CRCs let a block be checked when it is read, so opening an index never reads more
// than its header and one block, whatever N is.
#ifndef HEADROOM_DATA_RECORD_INDEX_FORMAT_H_
#define HEADROOM_DATA_RECORD_INDEX_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace headroom {

constexpr char kRecordIndexMagic[] = "HRINDEX\n";  // the 8 bytes before the terminating NUL
constexpr size_t kRecordIndexMagicBytes = 8;
constexpr uint32_t kRecordIndexVersion = 1;
constexpr size_t kRecordIndexHeaderBytes = 36;
// Bytes of the header covered by its CRC (everything before it).
constexpr size_t kRecordIndexHeaderCrcOffset = 32;
constexpr size_t kRecordIndexEntryBytes = 8;
constexpr size_t kRecordIndexCrcBytes = 4;
// B as written by RecordIndexWriter: 64 entries, a 512-byte block of offsets.
constexpr uint32_t kRecordIndexBlockEntries = 64;
// The suffix that names a shard's index: "<shard>.index".
constexpr char kRecordIndexSuffix[] = ".index";

}  // namespace headroom

#endif  // HEADROOM_DATA_RECORD_INDEX_FORMAT_H_
