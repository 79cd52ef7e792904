// RecordWriter and RecordReader: the bytes on disk equal a file built by hand from the format
// definition (TFRecord framing), writes are atomic, and every truncation and every single flipped
// bit of a small file is reported as DataLoss naming the file, the record index and its byte
// offset, never a crash, a hang or a wrong record.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/crc32c.h"
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

const std::vector<std::string>& Payloads() {
  static const std::vector<std::string> p = {"abc", "", std::string("he\0lo", 5)};
  return p;
}

// Start offsets of the records of Payloads(): each takes payload + 16 bytes.
const std::vector<uint64_t> kStarts = {0, 19, 35};
constexpr uint64_t kFileSize = 56;

std::string HandBuiltFile() {
  std::string file;
  for (const std::string& p : Payloads()) file += HandFramed(p);
  return file;
}

// Reads every record of `reader`; returns the status at the end and the records read.
absl::Status ReadAllRecords(RecordReader* reader, std::vector<std::string>* records) {
  std::string record;
  for (int guard = 0; guard < 100; ++guard) {
    absl::StatusOr<bool> more = reader->ReadNext(&record);
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
    records->push_back(record);
  }
  return absl::InternalError("reader did not stop");
}

// Expects `s` to be DataLoss naming `name`, record `index` and `offset`.
void ExpectDamageAt(const absl::Status& s, const std::string& name, int64_t index, uint64_t offset,
                    const std::string& context) {
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << context << ": " << s;
  std::string where =
      name + ": record " + std::to_string(index) + " at byte offset " + std::to_string(offset);
  EXPECT_NE(std::string(s.message()).find(where), std::string::npos)
      << context << ": expected '" << where << "' in: " << s.message();
}

TEST(RecordWriterTest, FileIsByteIdenticalToHandBuiltFraming) {
  std::string path = TestDir() + "/shard";
  auto writer = RecordWriter::Create(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (const std::string& p : Payloads()) ASSERT_TRUE((*writer)->Write(p).ok());
  EXPECT_EQ((*writer)->records_written(), 3);
  EXPECT_EQ((*writer)->bytes_written(), kFileSize);
  ASSERT_TRUE((*writer)->Close().ok());
  std::string expected = HandBuiltFile();
  ASSERT_EQ(expected.size(), kFileSize);
  EXPECT_EQ(ReadAll(path), expected);
}

TEST(RecordWriterTest, EmptyRecordIsTheKnownSixteenBytes) {
  // Eight zero length bytes, Mask(CRC32C(8 zero bytes)) = 0x07980329 and Mask(CRC32C("")) =
  // Mask(0) = 0xa282ead8, little-endian; computed with an independent bitwise CRC32C.
  const std::string expected("\0\0\0\0\0\0\0\0\x29\x03\x98\x07\xd8\xea\x82\xa2", 16);
  std::string path = TestDir() + "/empty_record";
  auto writer = RecordWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write("").ok());
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ(ReadAll(path), expected);
}

TEST(RecordWriterTest, AppendRecordMatchesHandBuiltFraming) {
  std::string out;
  RecordWriter::AppendRecord(&out, "payload");
  EXPECT_EQ(out, HandFramed("payload"));
}

TEST(RecordWriterTest, NothingUnderFinalNameUntilClose) {
  std::string dir = TestDir();
  std::string path = dir + "/shard";
  auto writer = RecordWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write(std::string(3 << 20, 'x')).ok());  // past the flush size
  EXPECT_FALSE(fs::exists(path));
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_TRUE(fs::exists(path));
  // The shard and its index (tests/data/record_index_test.cc checks its bytes), no temporary.
  EXPECT_TRUE(fs::exists(path + ".index"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
}

TEST(RecordWriterTest, AbandonedWriterLeavesNoFile) {
  std::string dir = TestDir();
  {
    auto writer = RecordWriter::Create(dir + "/shard");
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write("abc").ok());
    ASSERT_TRUE((*writer)->Write(std::string(2 << 20, 'y')).ok());
  }
  EXPECT_TRUE(fs::is_empty(dir)) << "neither the file nor its temporary may remain";
}

TEST(RecordWriterTest, AbandonedRewriteKeepsTheOldFile) {
  std::string path = TestDir() + "/shard";
  WriteAll(path, "old contents");
  {
    auto writer = RecordWriter::Create(path);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write("new").ok());
  }
  EXPECT_EQ(ReadAll(path), "old contents");
}

TEST(RecordWriterTest, MissingDirectoryIsNotFoundNamingThePath) {
  auto writer = RecordWriter::Create(TestDir() + "/no/such/dir/shard");
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(writer.status().message().find("no/such/dir/shard"), absl::string_view::npos);
}

TEST(RecordWriterTest, CloseTwiceAndWriteAfterCloseAreErrors) {
  auto writer = RecordWriter::Create(TestDir() + "/shard");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ((*writer)->Close().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Write("x").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RecordReaderTest, ReadsHandBuiltFileWithOffsets) {
  std::string path = TestDir() + "/shard";
  WriteAll(path, HandBuiltFile());
  auto reader = RecordReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->size(), kFileSize);
  std::string record;
  for (size_t i = 0; i < Payloads().size(); ++i) {
    EXPECT_EQ((*reader)->offset(), kStarts[i]);
    EXPECT_EQ((*reader)->record_index(), static_cast<int64_t>(i));
    absl::StatusOr<bool> more = (*reader)->ReadNext(&record);
    ASSERT_TRUE(more.ok()) << more.status();
    ASSERT_TRUE(*more);
    EXPECT_EQ(record, Payloads()[i]);
  }
  absl::StatusOr<bool> more = (*reader)->ReadNext(&record);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  EXPECT_EQ((*reader)->offset(), kFileSize);

  absl::StatusOr<std::vector<uint64_t>> offsets = (*reader)->IndexRecords();
  ASSERT_TRUE(offsets.ok()) << offsets.status();
  EXPECT_EQ(*offsets, kStarts);
  for (int i = 2; i >= 0; --i) {
    ASSERT_TRUE((*reader)->ReadAt(kStarts[i], i, &record).ok());
    EXPECT_EQ(record, Payloads()[i]);
  }
}

TEST(RecordReaderTest, EmptyFileHasNoRecords) {
  auto reader = RecordReader::FromString("", "empty");
  std::vector<std::string> records;
  EXPECT_TRUE(ReadAllRecords(reader.get(), &records).ok());
  EXPECT_TRUE(records.empty());
  EXPECT_TRUE(reader->IndexRecords().ok());
}

TEST(RecordReaderTest, MissingFileIsNotFoundNamingIt) {
  auto reader = RecordReader::Open(TestDir() + "/absent");
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(reader.status().message().find("absent"), absl::string_view::npos);
}

TEST(RecordReaderTest, RoundTripsManyRecordsThroughReadAhead) {
  // Records straddling the 256 KiB read-ahead boundary and larger than it.
  std::string path = TestDir() + "/shard";
  std::vector<std::string> payloads;
  for (int i = 0; i < 40; ++i) payloads.push_back(std::string((i * 7919) % 70000, 'a' + i % 26));
  payloads.push_back(std::string(600000, 'z'));
  auto writer = RecordWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  for (const auto& p : payloads) ASSERT_TRUE((*writer)->Write(p).ok());
  ASSERT_TRUE((*writer)->Close().ok());
  auto reader = RecordReader::Open(path);
  ASSERT_TRUE(reader.ok());
  std::vector<std::string> records;
  ASSERT_TRUE(ReadAllRecords(reader->get(), &records).ok());
  EXPECT_EQ(records, payloads);
}

TEST(RecordReaderTest, EveryTruncationIsReportedWithRecordAndOffset) {
  const std::string file = HandBuiltFile();
  std::string dir = TestDir();
  for (uint64_t size = 0; size < kFileSize; ++size) {
    std::string path = dir + "/cut" + std::to_string(size);
    WriteAll(path, file.substr(0, size));
    auto reader = RecordReader::Open(path);
    ASSERT_TRUE(reader.ok());
    std::vector<std::string> records;
    absl::Status s = ReadAllRecords(reader->get(), &records);
    absl::StatusOr<std::vector<uint64_t>> index = (*reader)->IndexRecords();
    // The record the cut falls in (or the count of complete records, for a cut between records).
    int64_t k = 0;
    while (k + 1 < 3 && kStarts[k + 1] <= size) ++k;
    if (size == kStarts[k]) {
      // A cut exactly between records leaves a valid, shorter file (see record_format.h).
      EXPECT_TRUE(s.ok()) << size << ": " << s;
      EXPECT_EQ(records.size(), static_cast<size_t>(k));
      EXPECT_TRUE(index.ok());
      continue;
    }
    std::string context = "cut at " + std::to_string(size);
    ExpectDamageAt(s, path, k, kStarts[k], context);
    ExpectDamageAt(index.status(), path, k, kStarts[k], context + " (index)");
    EXPECT_EQ(records.size(), static_cast<size_t>(k)) << context;
    for (int64_t i = 0; i < k; ++i) EXPECT_EQ(records[i], Payloads()[i]);
  }
}

TEST(RecordReaderTest, EverySingleBitFlipIsDetectedAtItsRecord) {
  const std::string file = HandBuiltFile();
  for (uint64_t byte = 0; byte < kFileSize; ++byte) {
    int64_t k = 0;
    while (k + 1 < 3 && kStarts[k + 1] <= byte) ++k;
    const bool in_header = byte - kStarts[k] < 12;
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = file;
      damaged[byte] = static_cast<char>(damaged[byte] ^ (1 << bit));
      std::string context = "byte " + std::to_string(byte) + " bit " + std::to_string(bit);
      auto reader = RecordReader::FromString(damaged, "flipped.tfrecord");
      std::vector<std::string> records;
      ExpectDamageAt(ReadAllRecords(reader.get(), &records), "flipped.tfrecord", k, kStarts[k],
                     context);
      ASSERT_EQ(records.size(), static_cast<size_t>(k)) << context;
      for (int64_t i = 0; i < k; ++i) EXPECT_EQ(records[i], Payloads()[i]) << context;
      // The index reads headers only: it sees header damage; payload damage shows on ReadAt.
      absl::StatusOr<std::vector<uint64_t>> index = reader->IndexRecords();
      if (in_header) {
        ExpectDamageAt(index.status(), "flipped.tfrecord", k, kStarts[k], context + " (index)");
      } else {
        ASSERT_TRUE(index.ok()) << context;
        std::string record;
        ExpectDamageAt(reader->ReadAt(kStarts[k], k, &record), "flipped.tfrecord", k, kStarts[k],
                       context + " (ReadAt)");
      }
    }
  }
}

TEST(RecordReaderTest, HugeLengthWithValidCrcIsAnErrorNotAnAllocation) {
  // A length of 2^62 with a correct CRC: only the bound by the file size stops it.
  std::string length = LittleEndian(uint64_t{1} << 62, 8);
  std::string file = length + LittleEndian(MaskedCrc(length), 4) + "tiny";
  auto reader = RecordReader::FromString(file, "huge");
  std::string record;
  absl::StatusOr<bool> more = reader->ReadNext(&record);
  ExpectDamageAt(more.status(), "huge", 0, 0, "huge length");
  EXPECT_NE(more.status().message().find("truncated"), absl::string_view::npos);
  ExpectDamageAt(reader->IndexRecords().status(), "huge", 0, 0, "huge length (index)");
}

TEST(RecordReaderTest, ErrorIsStickyAfterDamage) {
  std::string file = HandBuiltFile();
  file[20] ^= 1;  // length of record 1
  auto reader = RecordReader::FromString(file, "f");
  std::string record;
  ASSERT_TRUE(reader->ReadNext(&record).ok());
  absl::StatusOr<bool> first = reader->ReadNext(&record);
  absl::StatusOr<bool> again = reader->ReadNext(&record);
  EXPECT_FALSE(first.ok());
  EXPECT_EQ(first.status(), again.status());
}

}  // namespace
}  // namespace headroom
