// Feature helpers; see example_io.h.
#include "data/example_io.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace headroom {
namespace {

absl::Status WrongKind(const tf::Feature& f, absl::string_view name, const char* expected,
                       const RecordLocation& where) {
  return absl::InvalidArgumentError(absl::StrCat(where.ToString(), ": feature '", name, "' is ",
                                                 FeatureKindName(f), ", expected ", expected));
}

}  // namespace

std::string RecordLocation::ToString() const {
  return absl::StrCat(file, ": record ", record, " at byte offset ", offset);
}

absl::Status ParseExample(absl::string_view bytes, const RecordLocation& where,
                          tf::Example* example) {
  example->Clear();
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !example->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat(where.ToString(), ": not a valid tf.Example (",
                                            bytes.size(),
                                            " bytes; its CRC is correct, so it was "
                                            "written as something else)"));
  }
  return absl::OkStatus();
}

void SetInt64Feature(tf::Example* example, const std::string& name,
                     absl::Span<const int64_t> values) {
  tf::Int64List* list =
      (*example->mutable_features()->mutable_feature())[name].mutable_int64_list();
  list->mutable_value()->Assign(values.begin(), values.end());
}

void SetFloatFeature(tf::Example* example, const std::string& name,
                     absl::Span<const float> values) {
  tf::FloatList* list =
      (*example->mutable_features()->mutable_feature())[name].mutable_float_list();
  list->mutable_value()->Assign(values.begin(), values.end());
}

void SetBytesFeature(tf::Example* example, const std::string& name,
                     absl::Span<const std::string> values) {
  tf::BytesList* list =
      (*example->mutable_features()->mutable_feature())[name].mutable_bytes_list();
  list->clear_value();
  for (const std::string& v : values) list->add_value(v);
}

std::string FeatureKindName(const tf::Feature& feature) {
  switch (feature.kind_case()) {
    case tf::Feature::kInt64List:
      return "an int64_list";
    case tf::Feature::kFloatList:
      return "a float_list";
    case tf::Feature::kBytesList:
      return "a bytes_list";
    case tf::Feature::KIND_NOT_SET:
      break;
  }
  return "an empty feature (no list set)";
}

absl::StatusOr<const tf::Feature*> GetFeature(const tf::Example& example, absl::string_view name,
                                              const RecordLocation& where) {
  const auto& features = example.features().feature();
  auto it = features.find(std::string(name));
  if (it == features.end()) {
    std::vector<std::string> present;
    for (const auto& [key, value] : features) present.push_back(key);
    std::sort(present.begin(), present.end());  // map order is unspecified
    return absl::NotFoundError(absl::StrCat(
        where.ToString(), ": feature '", name, "' missing (the example has ",
        present.empty() ? "no features" : absl::StrCat("only: ", absl::StrJoin(present, ", ")),
        ")"));
  }
  return &it->second;
}

absl::StatusOr<absl::Span<const int64_t>> GetInt64Feature(const tf::Example& example,
                                                          absl::string_view name,
                                                          const RecordLocation& where) {
  HR_ASSIGN_OR_RETURN(const tf::Feature* f, GetFeature(example, name, where));
  if (!f->has_int64_list()) return WrongKind(*f, name, "an int64_list", where);
  const auto& v = f->int64_list().value();
  return absl::Span<const int64_t>(v.data(), v.size());
}

absl::StatusOr<absl::Span<const float>> GetFloatFeature(const tf::Example& example,
                                                        absl::string_view name,
                                                        const RecordLocation& where) {
  HR_ASSIGN_OR_RETURN(const tf::Feature* f, GetFeature(example, name, where));
  if (!f->has_float_list()) return WrongKind(*f, name, "a float_list", where);
  const auto& v = f->float_list().value();
  return absl::Span<const float>(v.data(), v.size());
}

absl::StatusOr<std::vector<std::string>> GetBytesFeature(const tf::Example& example,
                                                         absl::string_view name,
                                                         const RecordLocation& where) {
  HR_ASSIGN_OR_RETURN(const tf::Feature* f, GetFeature(example, name, where));
  if (!f->has_bytes_list()) return WrongKind(*f, name, "a bytes_list", where);
  return std::vector<std::string>(f->bytes_list().value().begin(), f->bytes_list().value().end());
}

}  // namespace headroom
