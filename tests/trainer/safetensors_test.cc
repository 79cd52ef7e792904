// safetensors: the writer's bytes against a hand-written file, the reader on files laid out as
// Hugging Face's library writes them, and every kind of malformed input the reader must reject
// with one clear line (never reading out of bounds): short files, huge or overlong header
// lengths, invalid JSON, deep nesting, bad dtypes/shapes/offsets, wrong sizes, overlaps, holes,
// duplicates. A corruption sweep flips and truncates every byte of a valid file.
#include "trainer/safetensors.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace headroom {
namespace {

// 8-byte little-endian length + header (padded with spaces to a multiple of 8 when `pad`) + data.
std::string File(const std::string& header, const std::string& data, bool pad = true) {
  std::string h = header;
  if (pad) h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + data;
}

std::string Floats(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Expects Parse to fail with a one-line message naming the file and containing `fragment`.
void ExpectRejected(const std::string& bytes, const std::string& fragment) {
  absl::StatusOr<SafeTensorsFile> f = SafeTensorsFile::Parse(bytes, "bad.safetensors");
  ASSERT_FALSE(f.ok()) << "accepted; expected an error containing: " << fragment;
  const std::string msg(f.status().message());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << msg;
  EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(SafeTensorsTest, WriterProducesTheDocumentedBytes) {
  const float a[2] = {1.0f, 2.0f};
  const int32_t b[3] = {7, 8, 9};
  SafeTensorsWriter w;
  ASSERT_TRUE(w.AddF32("a", {2}, a).ok());
  ASSERT_TRUE(w.Add("b", DType::kI32, {1, 3}, b, sizeof(b)).ok());
  w.SetMetadata("format", "pt");
  // Keys sorted (JSON objects are unordered), offsets in insertion order, header padded to 8.
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},)"
                             R"("b":{"data_offsets":[8,20],"dtype":"I32","shape":[1,3]}})";
  std::string data = Floats({1.0f, 2.0f});
  data.append(reinterpret_cast<const char*>(b), sizeof(b));
  const std::string want = File(header, data);
  EXPECT_EQ((want.size() - data.size()) % 8, 0u);
  EXPECT_EQ(w.Serialize(), want);
}

TEST(SafeTensorsTest, ReadsAFileLaidOutAsHuggingFaceWritesIt) {
  // The reference writer's key order (metadata first, then dtype, shape, data_offsets).
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("bert.pooler.dense.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("cls.w":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]}})";
  auto f = SafeTensorsFile::Parse(File(header, Floats({0.5f, -1.5f, 3.0f, 4.0f})), "x");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafeTensorInfo* w = f->Find("cls.w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(w->numel, 2);
  float out[2];
  ASSERT_TRUE(f->CopyF32("cls.w", {1, 2}, out).ok());
  EXPECT_EQ(out[0], 3.0f);
  EXPECT_EQ(out[1], 4.0f);
  ASSERT_TRUE(f->CopyF32("bert.pooler.dense.bias", {2}, out).ok());
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -1.5f);
  // Wrong expectations are clear errors.
  EXPECT_NE(f->CopyF32("cls.w", {2}, out).message().find("has shape [1, 2], expected [2]"),
            absl::string_view::npos);
  EXPECT_NE(f->CopyF32("nope", {2}, out).message().find("no tensor named nope"),
            absl::string_view::npos);
}

TEST(SafeTensorsTest, EmptyFileAndZeroSizedTensorsAreValid) {
  auto empty = SafeTensorsFile::Parse(File("{}", ""), "x");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->tensors().empty());
  auto zero =
      SafeTensorsFile::Parse(File(R"({"z":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
                                  R"("a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})",
                                  "abc"),
                             "x");
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->data(*zero->Find("a")), "abc");
  EXPECT_EQ(zero->data(*zero->Find("z")), "");
}

TEST(SafeTensorsTest, RejectsBadHeaderLengths) {
  ExpectRejected("", "shorter than its 8-byte header length");
  ExpectRejected(std::string("\x02\0\0\0", 4), "shorter than its 8-byte header length");
  // Length 2^63 + 5 and 0xffff...: over the limit, no allocation attempted.
  ExpectRejected(std::string("\x05\0\0\0\0\0\0\x80{}", 10), "exceeds the limit");
  ExpectRejected(std::string(8, '\xff') + "{}", "exceeds the limit");
  ExpectRejected(File(std::string(100'000'001, ' '), "", false).substr(0, 16), "exceeds the limit");
  // Within the limit but past the end of the file.
  ExpectRejected(std::string("\x40\0\0\0\0\0\0\0{}", 10), "runs past the end of the file");
  ExpectRejected(std::string(8, '\0'), "does not start with '{'");
}

TEST(SafeTensorsTest, RejectsHeadersThatAreNotTheFormat) {
  ExpectRejected(File("[]", ""), "does not start with '{'");
  ExpectRejected(File("{\"a\":", ""), "not valid JSON");
  ExpectRejected(File("{} {}", ""), "not valid JSON");
  ExpectRejected(File("{\"a\":\"\xff\xfe\"}", ""), "not valid JSON");  // invalid UTF-8
  ExpectRejected(File(R"({"a":1})", ""), "entry 'a' is not an object");
  ExpectRejected(File(R"({"__metadata__":[]})", ""), "__metadata__ is not an object");
  ExpectRejected(File(R"({"__metadata__":{"k":1}})", ""), "value of 'k' is not a string");
  // Deep nesting is refused before parsing (a million '[' costs nothing).
  ExpectRejected(
      File("{\"a\":" + std::string(1'000'000, '[') + std::string(1'000'000, ']') + "}", ""),
      "nests deeper");
  // ... but brackets inside strings do not count.
  auto quoted = SafeTensorsFile::Parse(File(R"({"__metadata__":{"k":"[[[[[[[[{{{{"}})", ""), "x");
  EXPECT_TRUE(quoted.ok()) << quoted.status();
}

TEST(SafeTensorsTest, RejectsBadTensorEntries) {
  auto one = [](const std::string& entry, const std::string& data = std::string(8, 'x')) {
    return File("{\"t\":" + entry + "}", data);
  };
  ExpectRejected(one(R"({"shape":[2],"data_offsets":[0,8]})"), "missing or unknown dtype");
  ExpectRejected(one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"), "unknown dtype");
  ExpectRejected(one(R"({"dtype":5,"shape":[2],"data_offsets":[0,8]})"), "unknown dtype");
  ExpectRejected(one(R"({"dtype":"F32","data_offsets":[0,8]})"), "no shape array");
  ExpectRejected(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), "non-negative");
  ExpectRejected(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), "non-negative");
  ExpectRejected(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), "non-negative");
  ExpectRejected(one(R"({"dtype":"F32","shape":[2]})"), "needs data_offsets");
  ExpectRejected(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), "needs data_offsets");
  ExpectRejected(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"),
                 "needs data_offsets");
  ExpectRejected(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), "needs data_offsets");
  ExpectRejected(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), "begin > end");
}

TEST(SafeTensorsTest, RejectsSizesThatDisagreeWithTheShape) {
  auto one = [](const std::string& entry, const std::string& data) {
    return File("{\"t\":" + entry + "}", data);
  };
  ExpectRejected(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", std::string(8, 'x')),
                 "holds 8 bytes but shape [3] of F32 needs 12");
  ExpectRejected(one(R"({"dtype":"BF16","shape":[2,2],"data_offsets":[0,4]})", std::string(4, 'x')),
                 "needs 8");
  // Products that overflow 64 bits are caught, not wrapped: 2^40 * 2^40.
  ExpectRejected(one(R"({"dtype":"F32","shape":[1099511627776,1099511627776],)"
                     R"("data_offsets":[0,8]})",
                     std::string(8, 'x')),
                 "more than 2^60 elements");
  // 2^62 elements of F64 would wrap to 0 bytes with unchecked arithmetic.
  ExpectRejected(one(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]})", ""),
                 "more than 2^60 elements");
}

TEST(SafeTensorsTest, RejectsOffsetsPastTheEndOverlapsAndHoles) {
  const std::string t8 = R"({"dtype":"U8","shape":[8],"data_offsets":)";
  ExpectRejected(File("{\"t\":" + t8 + "[0,8]}}", std::string(7, 'x')),
                 "run past the end of the data (7 bytes)");
  ExpectRejected(
      File("{\"t\":" + t8 + "[18446744073709551600,18446744073709551608]}}", std::string(8, 'x')),
      "run past the end");
  ExpectRejected(File("{\"t\":" + t8 + "[0,8]},\"u\":" + t8 + "[4,12]}}", std::string(12, 'x')),
                 "'t' and 'u' overlap");
  ExpectRejected(File("{\"t\":" + t8 + "[0,8]},\"u\":" + t8 + "[0,8]}}", std::string(8, 'x')),
                 "overlap");
  ExpectRejected(File("{\"t\":" + t8 + "[2,10]}}", std::string(10, 'x')),
                 "bytes [0, 2) of the data belong to no tensor");
  ExpectRejected(File("{\"t\":" + t8 + "[0,8]}}", std::string(9, 'x')),
                 "bytes [8, 9) of the data belong to no tensor");
}

TEST(SafeTensorsTest, RejectsDuplicateNames) {
  const std::string t = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  ExpectRejected(File("{\"t\":" + t + ",\"t\":" + t + "}", "x"), "names 't' twice");
  ExpectRejected(File(R"({"t":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
                 "names 'dtype' twice");
}

TEST(SafeTensorsTest, EveryFlippedOrTruncatedByteIsHandled) {
  const float a[3] = {1, 2, 3};
  SafeTensorsWriter w;
  ASSERT_TRUE(w.AddF32("layer.weight", {3}, a).ok());
  ASSERT_TRUE(w.AddF32("layer.bias", {0}, nullptr).ok());
  w.SetMetadata("step", "12");
  const std::string good = w.Serialize();
  ASSERT_TRUE(SafeTensorsFile::Parse(good, "x").ok());
  auto check = [](const std::string& bytes) {
    auto f = SafeTensorsFile::Parse(bytes, "x");
    if (!f.ok()) return;
    // Accepted: every tensor's bytes are the file's bytes at 8 + N + its offsets (N the
    // little-endian header length), read here from the input, not from the parser.
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = header << 8 | static_cast<unsigned char>(bytes[i]);
    ASSERT_LE(header, bytes.size() - 8);
    const absl::string_view data = absl::string_view(bytes).substr(8 + header);
    for (const SafeTensorInfo& t : f->tensors()) {
      ASSERT_LE(t.begin, t.end);
      ASSERT_LE(t.end, data.size());
      absl::string_view d = f->data(t);
      ASSERT_EQ(d.size(), static_cast<size_t>(t.numel) * DTypeSize(t.dtype));
      ASSERT_EQ(d, data.substr(t.begin, t.end - t.begin)) << t.name;  // reads every byte (ASan)
    }
  };
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_FALSE(SafeTensorsFile::Parse(good.substr(0, len), "x").ok()) << "truncated to " << len;
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char x : {0x01, 0x80, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(static_cast<unsigned char>(bad[i]) ^ x);
      check(bad);
    }
  }
}

TEST(SafeTensorsTest, WriterRejectsInconsistentTensors) {
  const float a[2] = {1, 2};
  SafeTensorsWriter w;
  ASSERT_TRUE(w.AddF32("a", {2}, a).ok());
  EXPECT_FALSE(w.AddF32("a", {2}, a).ok());
  EXPECT_FALSE(w.AddF32("", {2}, a).ok());
  EXPECT_FALSE(w.AddF32("__metadata__", {2}, a).ok());
  EXPECT_NE(w.Add("b", DType::kF32, {3}, a, 8).message().find("needs 12 bytes, got 8"),
            absl::string_view::npos);
}

TEST(SafeTensorsTest, WriteIsAtomicAndReportsBadPaths) {
  const std::string dir = ::testing::TempDir() + "safetensors_write_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const float a[2] = {1, 2};
  SafeTensorsWriter w;
  ASSERT_TRUE(w.AddF32("a", {2}, a).ok());
  const std::string path = dir + "/m.safetensors";
  ASSERT_TRUE(w.Write(path).ok());
  auto f = SafeTensorsFile::Read(path);
  ASSERT_TRUE(f.ok()) << f.status();
  float out[2];
  ASSERT_TRUE(f->CopyF32("a", {2}, out).ok());
  EXPECT_EQ(out[1], 2.0f);
  // No temporary is left beside it.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) entries += e.exists();
  EXPECT_EQ(entries, 1);
  absl::Status s = w.Write(dir + "/missing/m.safetensors");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing/m.safetensors"), absl::string_view::npos) << s;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace headroom
