// Building and reading tf.Example features (data/example.proto) with errors that say where.
//
// Every reader takes a RecordLocation (file, record index, byte offset) and puts it, with the
// feature name, in its error, so a bad shard is reported as e.g.
//   "data/train-00002: record 41 at byte offset 98304: feature 'input_ids' is a float_list,
//    expected an int64_list"
//
// Example:
//   tf::Example e;
//   SetInt64Feature(&e, "input_ids", {101, 7592, 102});
//   std::string bytes = e.SerializeAsString();           // a record payload
//   ...
//   RecordLocation where{"shard-0", 0, 0};
//   HR_RETURN_IF_ERROR(ParseExample(bytes, where, &e));
//   HR_ASSIGN_OR_RETURN(absl::Span<const int64_t> ids, GetInt64Feature(e, "input_ids", where));
//   // ids == {101, 7592, 102}; the span points into `e` and lives as long as it is unchanged.
#ifndef HEADROOM_DATA_EXAMPLE_IO_H_
#define HEADROOM_DATA_EXAMPLE_IO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "data/example.pb.h"

namespace headroom {

// Where a record is, for error messages.
struct RecordLocation {
  std::string file;
  int64_t record = 0;   // index of the record in the file, 0-based
  uint64_t offset = 0;  // byte offset where the record starts
  // "FILE: record R at byte offset O" (the prefix RecordReader uses too).
  std::string ToString() const;
};

// Parses a record payload into `*example` (cleared first). DataLoss naming `where` if the bytes
// are not a valid Example (its CRC was fine, so the writer wrote something else).
[[nodiscard]] absl::Status ParseExample(absl::string_view bytes, const RecordLocation& where,
                                        tf::Example* example);

// Sets feature `name` of `*example` to the given values, replacing any previous value.
void SetInt64Feature(tf::Example* example, const std::string& name,
                     absl::Span<const int64_t> values);
void SetFloatFeature(tf::Example* example, const std::string& name, absl::Span<const float> values);
void SetBytesFeature(tf::Example* example, const std::string& name,
                     absl::Span<const std::string> values);

// "an int64_list", "a float_list", "a bytes_list", or "an empty feature (no list set)".
std::string FeatureKindName(const tf::Feature& feature);

// Returns feature `name` of `example`: NotFound if it is absent (the message lists the features
// present), InvalidArgument if it holds another kind. The pointer stays valid while `example` is
// not modified.
[[nodiscard]] absl::StatusOr<const tf::Feature*> GetFeature(const tf::Example& example,
                                                            absl::string_view name,
                                                            const RecordLocation& where);

// The values of an int64_list / float_list / bytes_list feature, with GetFeature's errors plus
// InvalidArgument for a feature of another kind. Spans point into `example`.
[[nodiscard]] absl::StatusOr<absl::Span<const int64_t>> GetInt64Feature(
    const tf::Example& example, absl::string_view name, const RecordLocation& where);
[[nodiscard]] absl::StatusOr<absl::Span<const float>> GetFloatFeature(const tf::Example& example,
                                                                      absl::string_view name,
                                                                      const RecordLocation& where);
[[nodiscard]] absl::StatusOr<std::vector<std::string>> GetBytesFeature(const tf::Example& example,
                                                                       absl::string_view name,
                                                                       const RecordLocation& where);

}  // namespace headroom

#endif  // HEADROOM_DATA_EXAMPLE_IO_H_
