// Example (data/example.proto) is wire-compatible with TensorFlow's tf.train.Example: bytes
// encoded here by hand from the protobuf wire format and TensorFlow's field numbers parse, and
// what we serialize is those bytes. The feature helpers report missing features and wrong kinds
// naming file, record and feature.
#include "data/example_io.h"

#include <string>

#include "gtest/gtest.h"

namespace headroom {
namespace {

// Protobuf wire format by hand: a length-delimited field (wire type 2) with a one-byte length.
std::string Field(int number, const std::string& bytes) {
  EXPECT_LT(bytes.size(), 128u);
  return std::string{static_cast<char>(number << 3 | 2), static_cast<char>(bytes.size())} + bytes;
}

// tf.train.Example{features: Features{feature: {name: value}...}}; a map entry is a message
// with key = 1 and value = 2.
std::string ExampleBytes(const std::vector<std::pair<std::string, std::string>>& features) {
  std::string entries;
  for (const auto& [name, feature] : features)
    entries += Field(1, Field(1, name) + Field(2, feature));
  return Field(1, entries);
}

// Feature.kind: bytes_list = 1, float_list = 2, int64_list = 3; each List's values are field 1.
std::string Int64ListFeature(const std::string& packed_varints) {
  return Field(3, Field(1, packed_varints));
}

const RecordLocation kWhere{"shards/train-7", 41, 98304};

TEST(ExampleWireTest, ParsesHandEncodedInt64Feature) {
  // int64_list {1, 300}: packed varints 01, ac 02.
  std::string bytes = ExampleBytes({{"a", Int64ListFeature("\x01\xac\x02")}});
  ASSERT_EQ(bytes.size(), 16u);
  tf::Example e;
  ASSERT_TRUE(ParseExample(bytes, kWhere, &e).ok());
  absl::StatusOr<absl::Span<const int64_t>> v = GetInt64Feature(e, "a", kWhere);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(std::vector<int64_t>(v->begin(), v->end()), (std::vector<int64_t>{1, 300}));
}

TEST(ExampleWireTest, SerializesToTheHandEncodedBytes) {
  tf::Example e;
  SetInt64Feature(&e, "a", {1, 300});
  EXPECT_EQ(e.SerializeAsString(), ExampleBytes({{"a", Int64ListFeature("\x01\xac\x02")}}));
  tf::Example neg;
  SetInt64Feature(&neg, "n", {-1});  // ten-byte varint, two's complement
  EXPECT_EQ(neg.SerializeAsString(),
            ExampleBytes({{"n", Int64ListFeature("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")}}));
  tf::Example f;
  SetFloatFeature(&f, "f", {1.5f});  // packed fixed32, little-endian 0x3fc00000
  EXPECT_EQ(f.SerializeAsString(),
            ExampleBytes({{"f", Field(2, Field(1, std::string("\x00\x00\xc0\x3f", 4)))}}));
}

TEST(ExampleWireTest, ParsesEveryKindIncludingUnpackedInt64) {
  std::string floats = Field(2, Field(1, std::string("\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8)));
  std::string bytes_list = Field(1, Field(1, "xy") + Field(1, ""));
  // Older writers emit repeated int64 unpacked (tag 08 per value); parsers must accept both.
  std::string unpacked = Field(3, "\x08\x07\x08\x08");
  std::string bytes = ExampleBytes({{"f", floats}, {"b", bytes_list}, {"i", unpacked}});
  tf::Example e;
  ASSERT_TRUE(ParseExample(bytes, kWhere, &e).ok());
  auto f = GetFloatFeature(e, "f", kWhere);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(std::vector<float>(f->begin(), f->end()), (std::vector<float>{1.5f, -2.0f}));
  auto b = GetBytesFeature(e, "b", kWhere);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, (std::vector<std::string>{"xy", ""}));
  auto i = GetInt64Feature(e, "i", kWhere);
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(std::vector<int64_t>(i->begin(), i->end()), (std::vector<int64_t>{7, 8}));
}

TEST(ExampleIoTest, RoundTripsThroughSerialization) {
  tf::Example e;
  SetInt64Feature(&e, "input_ids", {101, 7592, 102});
  SetFloatFeature(&e, "masked_lm_weights", {1.0f, 0.0f});
  SetBytesFeature(&e, "text", {std::string("a\0b", 3)});
  SetInt64Feature(&e, "input_ids", {5});  // replaces
  tf::Example back;
  ASSERT_TRUE(ParseExample(e.SerializeAsString(), kWhere, &back).ok());
  auto ids = GetInt64Feature(back, "input_ids", kWhere);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(std::vector<int64_t>(ids->begin(), ids->end()), std::vector<int64_t>{5});
  auto w = GetFloatFeature(back, "masked_lm_weights", kWhere);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(std::vector<float>(w->begin(), w->end()), (std::vector<float>{1.0f, 0.0f}));
  auto t = GetBytesFeature(back, "text", kWhere);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, std::vector<std::string>{std::string("a\0b", 3)});
}

TEST(ExampleIoTest, MissingFeatureNamesFileRecordFeatureAndWhatIsThere) {
  tf::Example e;
  SetInt64Feature(&e, "segment_ids", {0});
  SetInt64Feature(&e, "input_mask", {1});
  auto ids = GetInt64Feature(e, "input_ids", kWhere);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ids.status().message(),
            "shards/train-7: record 41 at byte offset 98304: feature 'input_ids' missing (the "
            "example has only: input_mask, segment_ids)");
}

TEST(ExampleIoTest, WrongKindNamesBothKinds) {
  tf::Example e;
  SetFloatFeature(&e, "input_ids", {1.0f});
  auto ids = GetInt64Feature(e, "input_ids", kWhere);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ids.status().message(),
            "shards/train-7: record 41 at byte offset 98304: feature 'input_ids' is a float_list, "
            "expected an int64_list");
  EXPECT_FALSE(GetFloatFeature(tf::Example(), "x", kWhere).ok());
  tf::Example empty_kind;
  (*empty_kind.mutable_features()->mutable_feature())["x"];
  auto b = GetBytesFeature(empty_kind, "x", kWhere);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("empty feature"), absl::string_view::npos);
}

TEST(ExampleIoTest, InvalidBytesAreDataLossWithLocation) {
  tf::Example e;
  absl::Status s = ParseExample(
      "\x0a\x05"
      "ab",
      kWhere, &e);  // length 5, only 2 bytes follow
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("shards/train-7: record 41 at byte offset 98304"),
            absl::string_view::npos);
}

}  // namespace
}  // namespace headroom
