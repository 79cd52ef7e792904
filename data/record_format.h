// The record file format: TFRecord framing, shared by RecordWriter and RecordReader, and
// readable by TensorFlow's tf.data.TFRecordDataset (and written by it: Google BERT's and
// MLPerf's shards open here unchanged). A file is a sequence of records, nothing else (no file
// header, no trailer, no padding):
//
//   offset  bytes  field
//   0       8      length: payload size in bytes, unsigned, little-endian
//   8       4      masked CRC32C of the 8 length bytes (crc32c::Mask), little-endian
//   12      length payload (for our shards, a serialized Example; see data/example.proto)
//   12+len  4      masked CRC32C of the payload, little-endian
//
// A record thus occupies length + 16 bytes and the next record starts right after it. The length
// has its own CRC so that a damaged length is caught before it is used to skip or allocate.
// Truncation exactly at a record boundary cannot be seen from the bytes (the file is then a valid
// shorter file); writers prevent it by renaming complete files into place.
#ifndef HEADROOM_DATA_RECORD_FORMAT_H_
#define HEADROOM_DATA_RECORD_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace headroom {

constexpr size_t kRecordLengthBytes = 8;
constexpr size_t kRecordCrcBytes = 4;
// Bytes before the payload: length and its CRC.
constexpr size_t kRecordHeaderBytes = kRecordLengthBytes + kRecordCrcBytes;
// Bytes after the payload: its CRC.
constexpr size_t kRecordFooterBytes = kRecordCrcBytes;
// Framing bytes per record.
constexpr size_t kRecordOverheadBytes = kRecordHeaderBytes + kRecordFooterBytes;

// Appends the low `bytes` bytes of `v` to `*dst`, least significant first (the byte order of
// every integer in record files and record indexes).
inline void AppendLittleEndian(std::string* dst, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) dst->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads a `bytes`-byte little-endian unsigned integer from `p`.
inline uint64_t DecodeLittleEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace headroom

#endif  // HEADROOM_DATA_RECORD_FORMAT_H_
