// libFuzzer target for the record reader and the Example parser: whatever the bytes of a file,
// reading it must end in records or a DataLoss naming the file, never a crash, a hang, an ASan
// report or a huge allocation; sequential reads and indexed reads must agree.
//
// Input: byte 0 picks a mode. Even: the rest is the file, raw (exercises the framing checks).
// Odd: the rest is a list of payloads, each one length byte then that many bytes, framed here
// with correct CRCs, so that mutations reach the Example parser and the feature helpers behind
// the CRCs; if bit 1 is set, the last (byte 0 >> 2) bytes of the framed file are cut off.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/crc32c.h"
#include "data/example_io.h"
#include "data/record_reader.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void AppendLE(std::string* s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}

std::string Frame(const uint8_t* data, size_t size) {
  std::string file;
  size_t i = 0;
  while (i < size) {
    size_t len = std::min<size_t>(data[i], size - i - 1);
    std::string payload(reinterpret_cast<const char*>(data + i + 1), len);
    i += 1 + len;
    std::string length;
    AppendLE(&length, payload.size(), 8);
    file += length;
    AppendLE(&file, headroom::crc32c::Mask(headroom::crc32c::Value(length.data(), 8)), 4);
    file += payload;
    AppendLE(&file, headroom::crc32c::Mask(headroom::crc32c::Value(payload.data(), payload.size())),
             4);
  }
  return file;
}

void Exercise(const std::string& payload, const headroom::RecordLocation& where) {
  headroom::tf::Example example;
  if (!headroom::ParseExample(payload, where, &example).ok()) return;
  for (const auto& [name, feature] : example.features().feature()) {
    (void)headroom::GetInt64Feature(example, name, where);
    (void)headroom::GetFloatFeature(example, name, where);
    (void)headroom::GetBytesFeature(example, name, where);
    (void)headroom::FeatureKindName(feature);
  }
  // A name absent from the example must be an error (the fuzzer can create any name, so ask).
  const std::string absent = "no such feature \x01";
  absl::Status missing = headroom::GetFeature(example, absent, where).status();
  Check(example.features().feature().contains(absent) || !missing.ok());
  (void)example.SerializeAsString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string file;
  if ((data[0] & 1) == 0) {
    file.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  } else {
    file = Frame(data + 1, size - 1);
    if (data[0] & 2) file.resize(file.size() - std::min<size_t>(file.size(), data[0] >> 2));
  }
  auto reader = headroom::RecordReader::FromString(file, "fuzz.tfrecord");
  std::vector<std::string> records;
  std::vector<uint64_t> starts;
  std::string record;
  absl::Status end;
  while (true) {
    uint64_t offset = reader->offset();
    absl::StatusOr<bool> more = reader->ReadNext(&record);
    if (!more.ok()) {
      end = more.status();
      Check(end.code() == absl::StatusCode::kDataLoss);
      Check(end.message().find("fuzz.tfrecord: record ") == 0);
      break;
    }
    if (!*more) break;
    Check(records.size() < file.size());  // each record takes at least 16 bytes
    records.push_back(record);
    starts.push_back(offset);
    Exercise(record, {"fuzz.tfrecord", static_cast<int64_t>(records.size() - 1), offset});
  }
  // The header-only index agrees with the sequential read up to the first damage.
  absl::StatusOr<std::vector<uint64_t>> index = reader->IndexRecords();
  if (index.ok()) {
    Check(index->size() >= starts.size());
    for (size_t i = 0; i < starts.size(); ++i) Check((*index)[i] == starts[i]);
    if (end.ok()) Check(index->size() == starts.size());
    for (size_t i = 0; i < starts.size(); ++i) {
      Check(reader->ReadAt(starts[i], static_cast<int64_t>(i), &record).ok());
      Check(record == records[i]);
    }
  } else {
    Check(!end.ok());
  }
  return 0;
}
