// Record indexes (`<shard>.index`): the file RecordWriter writes beside a shard equals one built
// by hand from the format definition (data/record_index_format.h) with offsets computed from
// the payload sizes; reading it gives the offsets a scan of the shard gives; a stale index (the
// shard's size changed), every truncation and every single flipped bit is an error naming the
// index file, never a wrong offset; the writer leaves nothing behind when abandoned.
#include "data/record_index.h"

#include <filesystem>
#include <string>
#include <vector>

#include "data/record_reader.h"
#include "data/record_writer.h"
#include "gtest/gtest.h"
#include "tests/data/record_test_util.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;
using testing::HandFramed;
using testing::LittleEndian;
using testing::MaskedCrc;
using testing::ReadAll;
using testing::TestDir;
using testing::WriteAll;

// Payload i has i % 7 bytes, so records differ in size.
std::string Payload(int i) { return std::string(static_cast<size_t>(i % 7), 'a' + i % 26); }

void WriteShard(const std::string& path, int records) {
  auto w = RecordWriter::Create(path);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int i = 0; i < records; ++i) ASSERT_TRUE((*w)->Write(Payload(i)).ok());
  ASSERT_TRUE((*w)->Close().ok());
}

// The index of a shard of `records` records of Payload(i), built from the format definition:
// header (magic, version 1, B = 64 entries per block, N, shard size, masked CRC), then blocks of
// up to 64 LE offsets, each followed by the masked CRC of its offsets.
std::string HandBuiltIndex(int records) {
  std::vector<uint64_t> starts;
  uint64_t size = 0;
  for (int i = 0; i < records; ++i) {
    starts.push_back(size);
    size += Payload(i).size() + 16;  // length 8, its CRC 4, payload, payload CRC 4
  }
  std::string header = std::string("HRINDEX\n") + LittleEndian(1, 4) + LittleEndian(64, 4) +
                       LittleEndian(records, 8) + LittleEndian(size, 8);
  std::string index = header + LittleEndian(MaskedCrc(header), 4);
  for (size_t b = 0; b < starts.size(); b += 64) {
    std::string block;
    for (size_t i = b; i < std::min(starts.size(), b + 64); ++i) {
      block += LittleEndian(starts[i], 8);
    }
    index += block + LittleEndian(MaskedCrc(block), 4);
  }
  return index;
}

// Every offset of the index of `shard` through RecordIndex (Open, then every block).
absl::StatusOr<std::vector<uint64_t>> ReadIndex(const std::string& shard) {
  uint64_t size = fs::file_size(shard);
  absl::StatusOr<std::unique_ptr<RecordIndex>> index = RecordIndex::Open(shard, size);
  if (!index.ok()) return index.status();
  std::vector<uint64_t> all, block;
  for (int64_t b = 0; b < (*index)->num_blocks(); ++b) {
    absl::Status s = (*index)->ReadBlock(b, &block);
    if (!s.ok()) return s;
    all.insert(all.end(), block.begin(), block.end());
  }
  if (static_cast<int64_t>(all.size()) != (*index)->num_records()) {
    return absl::InternalError("block entries do not add up to the record count");
  }
  return all;
}

TEST(RecordIndexTest, WriterWritesTheIndexBuiltByHandBesideTheShard) {
  const std::string dir = TestDir();
  for (int records : {0, 1, 63, 64, 65, 1500}) {
    const std::string shard = dir + "/shard-" + std::to_string(records);
    WriteShard(shard, records);
    EXPECT_EQ(ReadAll(shard + ".index"), HandBuiltIndex(records)) << records << " records";
  }
  EXPECT_EQ(ReadAll(dir + "/shard-0.index").size(), 36u);  // an empty shard: the header alone
}

TEST(RecordIndexTest, ReadsTheOffsetsAScanOfTheShardFinds) {
  const std::string shard = TestDir() + "/shard";
  WriteShard(shard, 1300);
  auto reader = RecordReader::Open(shard);
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::vector<uint64_t>> scanned = (*reader)->IndexRecords();
  ASSERT_TRUE(scanned.ok());
  absl::StatusOr<std::vector<uint64_t>> indexed = ReadIndex(shard);
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  EXPECT_EQ(*indexed, *scanned);
  auto index = RecordIndex::Open(shard, fs::file_size(shard));
  ASSERT_TRUE(index.ok());
  EXPECT_EQ((*index)->num_records(), 1300);
  EXPECT_EQ((*index)->num_blocks(), 21);  // 20 of 64 entries, then 20
}

TEST(RecordIndexTest, WriteRecordIndexIndexesAShardWrittenElsewhere) {
  const std::string dir = TestDir();
  std::string bytes;  // a shard as TensorFlow writes it, and no index
  for (int i = 0; i < 700; ++i) bytes += HandFramed(Payload(i));
  WriteAll(dir + "/foreign", bytes);
  EXPECT_EQ(RecordIndex::Open(dir + "/foreign", bytes.size()).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<int64_t> n = WriteRecordIndex(dir + "/foreign");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 700);
  EXPECT_EQ(ReadAll(dir + "/foreign.index"), HandBuiltIndex(700));

  // A damaged shard writes no index and names the record.
  bytes[bytes.size() - 20] ^= 1;
  WriteAll(dir + "/damaged", bytes);
  absl::StatusOr<int64_t> bad = WriteRecordIndex(dir + "/damaged");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(dir + "/damaged.index"));
}

TEST(RecordIndexTest, AnIndexForAnotherShardSizeIsStaleNamingBothSizes) {
  const std::string shard = TestDir() + "/shard";
  WriteShard(shard, 10);
  const uint64_t size = fs::file_size(shard);
  WriteAll(shard, ReadAll(shard) + HandFramed("one more"));
  absl::StatusOr<std::unique_ptr<RecordIndex>> index =
      RecordIndex::Open(shard, fs::file_size(shard));
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(index.status().message());
  EXPECT_NE(message.find(shard + ".index: stale"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(size) + " bytes"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(size + 24) + " bytes"), std::string::npos) << message;
}

TEST(RecordIndexTest, EveryTruncationAndEveryBitFlipIsAnErrorNamingTheIndex) {
  const std::string dir = TestDir();
  const std::string shard = dir + "/shard";
  WriteShard(shard, 520);  // 9 blocks: 8 of 64 entries, then 8
  const std::string good = ReadAll(shard + ".index");
  ASSERT_TRUE(ReadIndex(shard).ok());
  auto expect_refused = [&](const std::string& bytes, const std::string& what) {
    WriteAll(shard + ".index", bytes);
    absl::StatusOr<std::vector<uint64_t>> offsets = ReadIndex(shard);
    ASSERT_FALSE(offsets.ok()) << what << " was not detected";
    EXPECT_NE(offsets.status().message().find(shard + ".index:"), absl::string_view::npos)
        << what << ": " << offsets.status();
  };
  for (size_t n = 0; n < good.size(); n += (n < 64 ? 1 : 97)) {
    expect_refused(good.substr(0, n), "truncation to " + std::to_string(n) + " bytes");
  }
  // Every bit of the header and of the last block; elsewhere one bit of every 7th byte.
  for (size_t byte = 0; byte < good.size(); ++byte) {
    const bool all_bits = byte < 36 || byte + 8 * 8 + 4 >= good.size();
    if (!all_bits && byte % 7 != 0) continue;
    for (int bit = all_bits ? 0 : static_cast<int>(byte % 8); bit < 8; bit += all_bits ? 1 : 8) {
      std::string bad = good;
      bad[byte] ^= static_cast<char>(1 << bit);
      expect_refused(bad,
                     "flip of bit " + std::to_string(bit) + " of byte " + std::to_string(byte));
    }
  }
}

TEST(RecordIndexTest, RewritingAShardReplacesItsIndex) {
  const std::string shard = TestDir() + "/shard";
  WriteShard(shard, 900);
  WriteShard(shard, 3);
  EXPECT_EQ(ReadAll(shard + ".index"), HandBuiltIndex(3));
}

TEST(RecordIndexTest, AnAbandonedWriterLeavesNeitherShardNorIndex) {
  const std::string dir = TestDir();
  {
    auto w = RecordWriter::Create(dir + "/shard");
    ASSERT_TRUE(w.ok());
    // Past one index block, so that the index's temporary exists.
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE((*w)->Write(Payload(i)).ok());
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
  }
  EXPECT_TRUE(fs::is_empty(dir)) << "no shard, index or temporary may remain";
}

}  // namespace
}  // namespace headroom
