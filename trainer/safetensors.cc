// safetensors writer and validating reader; the format and the checks are listed in
// safetensors.h. The header is parsed with nlohmann::json (Debian's nlohmann-json3-dev) after a
// linear pre-scan that bounds its nesting depth, so a hostile header of a million '[' costs
// neither stack nor a parse tree.
#include "trainer/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace headroom {
namespace {

using nlohmann::json;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},   {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4}, {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},   {DType::kF64, "F64", 8}, {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},
};

// The format nests at most 3 deep: root object > tensor object > shape array (or root >
// "__metadata__" object). One level of slack; anything deeper is not a safetensors header.
constexpr int kMaxDepth = 4;

// Largest accepted dimension / element count: keeps every product below 2^63 bytes.
constexpr uint64_t kMaxElements = uint64_t{1} << 60;

// Maximum bracket nesting of JSON text, ignoring brackets inside strings.
int NestingDepth(absl::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > kMaxDepth) return max_depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// A non-negative JSON integer as uint64, or false.
bool AsUnsigned(const json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

// HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES (see WriteAllToFd): how many of the `n` bytes
// about to be written may still go out; n when the variable is unset.
size_t FaultInjectionAllowance(size_t n) {
  static std::mutex mu;
  static std::string value;  // the variable's value when `written` was last reset
  static uint64_t written = 0;
  const char* env = std::getenv("HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES");
  if (env == nullptr) return n;
  std::lock_guard<std::mutex> lock(mu);
  if (value != env) {
    value = env;
    written = 0;
  }
  const uint64_t limit = std::strtoull(env, nullptr, 10);
  const size_t allowed =
      static_cast<size_t>(std::min<uint64_t>(n, limit - std::min(limit, written)));
  written += allowed;
  return allowed;
}

}  // namespace

// HEADROOM_FAULT_INJECT_KILL_AFTER_BYTES (see WriteAllToFd): SIGKILLs the process once that
// many bytes have gone out through WriteAllToFd, as a crash in the middle of a checkpoint would.
void MaybeKillForFaultInjection(size_t n) {
  static std::atomic<uint64_t> written{0};
  const char* env = std::getenv("HEADROOM_FAULT_INJECT_KILL_AFTER_BYTES");
  if (env == nullptr) return;
  if (written.fetch_add(n) + n >= std::strtoull(env, nullptr, 10)) ::raise(SIGKILL);
}

absl::Status WriteAllToFd(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  const size_t allowed = FaultInjectionAllowance(n);
  size_t left = allowed;
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write failed", path);
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  MaybeKillForFaultInjection(allowed);
  if (allowed < n) {
    errno = ENOSPC;
    return ErrnoError("write failed (HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES)", path);
  }
  return absl::OkStatus();
}

const char* DTypeName(DType dtype) {
  for (const DTypeInfo& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  for (const DTypeInfo& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

bool ParseDType(absl::string_view name, DType* dtype) {
  for (const DTypeInfo& d : kDTypes) {
    if (name == d.name) {
      *dtype = d.dtype;
      return true;
    }
  }
  return false;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// ---- Writer --------------------------------------------------------------------------------

absl::Status SafeTensorsWriter::Add(const std::string& name, DType dtype,
                                    const std::vector<int64_t>& shape, const void* data,
                                    size_t bytes) {
  if (name.empty() || name == "__metadata__") {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: invalid tensor name '", name, "'"));
  }
  for (const Entry& e : entries_) {
    if (e.name == name) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: duplicate tensor ", name));
    }
  }
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor ", name, " has a negative dimension"));
    }
    numel *= static_cast<uint64_t>(d);
  }
  if (numel * DTypeSize(dtype) != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: tensor ", name, " of shape ", ShapeString(shape), " and dtype ",
                     DTypeName(dtype), " needs ", numel * DTypeSize(dtype), " bytes, got ", bytes));
  }
  entries_.push_back(Entry{name, dtype, shape, static_cast<const char*>(data), bytes});
  return absl::OkStatus();
}

absl::Status SafeTensorsWriter::AddF32(const std::string& name, const std::vector<int64_t>& shape,
                                       const float* data) {
  uint64_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
  return Add(name, DType::kF32, shape, data, numel * sizeof(float));
}

void SafeTensorsWriter::SetMetadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

std::string SafeTensorsWriter::Header() const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry& e : entries_) {
    header[e.name] = {{"dtype", DTypeName(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.bytes}}};
    offset += e.bytes;
  }
  std::string text = header.dump();
  // Spaces up to a multiple of 8 so the data buffer (at 8 + N) is 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text;
}

std::string SafeTensorsWriter::Serialize() const {
  std::string out = Header();
  for (const Entry& e : entries_) {
    if (e.bytes > 0) out.append(e.data, e.bytes);
  }
  return out;
}

absl::Status SafeTensorsWriter::Write(const std::string& path) const {
  // Streamed rather than Serialize()d: a BERT-large checkpoint is 1.3 GB per file.
  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  absl::Status s = [&]() -> absl::Status {
    const std::string header = Header();
    HR_RETURN_IF_ERROR(WriteAllToFd(fd, header.data(), header.size(), tmp));
    for (const Entry& e : entries_) HR_RETURN_IF_ERROR(WriteAllToFd(fd, e.data, e.bytes, tmp));
    if (::fsync(fd) != 0) return ErrnoError("fsync failed", tmp);
    return absl::OkStatus();
  }();
  if (::close(fd) != 0 && s.ok()) s = ErrnoError("close failed", tmp);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError("rename failed", path);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return SyncDirectory(std::filesystem::path(path).parent_path().string());
}

// ---- Reader --------------------------------------------------------------------------------

absl::StatusOr<SafeTensorsFile> SafeTensorsFile::Read(const std::string& path) {
  HR_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return Parse(std::move(bytes), path);
}

namespace {

// "<source>: safetensors <what...>" as InvalidArgument: every reader error names the file.
template <typename... Args>
absl::Status BadFile(const std::string& source, const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": safetensors ", what...));
}

// The header's JSON object. Duplicate keys are kept by JSON parsers (last wins) but make a file
// ambiguous: they are rejected. The callback sees every key with the stack of objects open
// around it.
absl::StatusOr<json> ParseHeaderJson(absl::string_view text, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  json header;
  try {
    header = json::parse(
        text.begin(), text.end(),
        [&](int /*depth*/, json::parse_event_t event, json& parsed) {
          if (event == json::parse_event_t::object_start) {
            open_objects.emplace_back();
          } else if (event == json::parse_event_t::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
          } else if (event == json::parse_event_t::key && !open_objects.empty()) {
            if (!open_objects.back().insert(parsed.get<std::string>()).second &&
                duplicate.empty()) {
              duplicate = parsed.get<std::string>();
            }
          }
          return true;
        },
        /*allow_exceptions=*/false);
  } catch (const json::exception& e) {
    return BadFile(source, "header is not valid JSON: ", e.what());
  }
  if (header.is_discarded()) return BadFile(source, "header is not valid JSON");
  if (!header.is_object()) return BadFile(source, "header is not a JSON object");
  if (!duplicate.empty()) return BadFile(source, "header names '", duplicate, "' twice");
  return header;
}

// The shape of tensor `name` and its element count (at most kMaxElements).
absl::Status ParseShape(const std::string& name, const json& value, const std::string& source,
                        SafeTensorInfo* t) {
  auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) {
    return BadFile(source, "tensor '", name, "' has no shape array");
  }
  uint64_t numel = 1;
  for (const json& d : *shape) {
    uint64_t dim = 0;
    if (!AsUnsigned(d, &dim)) {
      return BadFile(source, "tensor '", name,
                     "' has a shape entry that is not a non-negative integer");
    }
    // numel * dim <= kMaxElements, without overflow.
    if (dim != 0 && numel > kMaxElements / dim) {
      return BadFile(source, "tensor '", name, "' has a shape with more than 2^60 elements");
    }
    numel *= dim;
    t->shape.push_back(static_cast<int64_t>(dim));
  }
  t->numel = static_cast<int64_t>(numel);
  return absl::OkStatus();
}

// One tensor entry of the header: dtype, shape and data offsets inside a data buffer of
// `buffer` bytes, consistent with each other.
absl::StatusOr<SafeTensorInfo> ParseTensorEntry(const std::string& name, const json& value,
                                                uint64_t buffer, const std::string& source) {
  if (!value.is_object()) return BadFile(source, "entry '", name, "' is not an object");
  SafeTensorInfo t;
  t.name = name;
  auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string() ||
      !ParseDType(dtype->get<std::string>(), &t.dtype)) {
    return BadFile(source, "tensor '", name, "' has a missing or unknown dtype");
  }
  HR_RETURN_IF_ERROR(ParseShape(name, value, source, &t));
  auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !AsUnsigned((*offsets)[0], &t.begin) || !AsUnsigned((*offsets)[1], &t.end)) {
    return BadFile(source, "tensor '", name,
                   "' needs data_offsets [begin, end] of non-negative integers");
  }
  if (t.begin > t.end) {
    return BadFile(source, "tensor '", name, "' has data_offsets with begin > end");
  }
  if (t.end > buffer) {
    return BadFile(source, "tensor '", name, "' data_offsets [", t.begin, ", ", t.end,
                   "] run past the end of the data (", buffer, " bytes)");
  }
  // < 2^63: numel <= 2^60, size <= 8.
  const uint64_t want = static_cast<uint64_t>(t.numel) * DTypeSize(t.dtype);
  if (t.end - t.begin != want) {
    return BadFile(source, "tensor '", name, "' holds ", t.end - t.begin, " bytes but shape ",
                   ShapeString(t.shape), " of ", DTypeName(t.dtype), " needs ", want);
  }
  return t;
}

// Tensors must tile the data buffer: sorted by offset, each begins where the previous ended.
absl::Status CheckTiling(std::vector<SafeTensorInfo>* tensors, uint64_t buffer,
                         const std::string& source) {
  std::sort(tensors->begin(), tensors->end(), [](const SafeTensorInfo& a, const SafeTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const SafeTensorInfo* previous = nullptr;
  for (const SafeTensorInfo& t : *tensors) {
    if (t.begin < cursor) {
      return BadFile(source, "tensors '", previous->name, "' and '", t.name, "' overlap");
    }
    if (t.begin > cursor) {
      return BadFile(source, "bytes [", cursor, ", ", t.begin, ") of the data belong to no tensor");
    }
    cursor = t.end;
    previous = &t;
  }
  if (cursor != buffer) {
    return BadFile(source, "bytes [", cursor, ", ", buffer, ") of the data belong to no tensor");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafeTensorsFile> SafeTensorsFile::Parse(std::string bytes,
                                                       const std::string& source) {
  const uint64_t size = bytes.size();
  if (size < 8) {
    return BadFile(source, "file is ", size, " bytes, shorter than its 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > kMaxSafeTensorsHeader) {
    return BadFile(source, "header length ", n, " exceeds the limit of ", kMaxSafeTensorsHeader,
                   " bytes");
  }
  if (n > size - 8) {
    return BadFile(source, "header length ", n, " runs past the end of the file (", size,
                   " bytes)");
  }
  const absl::string_view text(bytes.data() + 8, n);
  if (text.empty() || text[0] != '{') return BadFile(source, "header does not start with '{'");
  if (NestingDepth(text) > kMaxDepth) {
    return BadFile(source, "header nests deeper than the format allows");
  }
  HR_ASSIGN_OR_RETURN(json header, ParseHeaderJson(text, source));

  SafeTensorsFile f;
  f.source_ = source;
  f.data_start_ = 8 + n;
  const uint64_t buffer = size - f.data_start_;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return BadFile(source, "__metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) {
          return BadFile(source, "__metadata__ value of '", k, "' is not a string");
        }
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    HR_ASSIGN_OR_RETURN(SafeTensorInfo t, ParseTensorEntry(name, value, buffer, source));
    f.tensors_.push_back(std::move(t));
  }
  HR_RETURN_IF_ERROR(CheckTiling(&f.tensors_, buffer, source));
  f.bytes_ = std::move(bytes);
  return f;
}

const SafeTensorInfo* SafeTensorsFile::Find(absl::string_view name) const {
  for (const SafeTensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::string_view SafeTensorsFile::data(const SafeTensorInfo& info) const {
  return absl::string_view(bytes_.data() + data_start_ + info.begin, info.end - info.begin);
}

absl::Status SafeTensorsFile::CopyF32(const std::string& name, const std::vector<int64_t>& shape,
                                      float* out) const {
  const SafeTensorInfo* t = Find(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": no tensor named ", name));
  }
  if (t->dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": tensor ", name, " is ", DTypeName(t->dtype), ", expected F32"));
  }
  if (t->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": tensor ", name, " has shape ",
                                                   ShapeString(t->shape), ", expected ",
                                                   ShapeString(shape)));
  }
  const absl::string_view d = data(*t);
  if (!d.empty()) std::memcpy(out, d.data(), d.size());
  return absl::OkStatus();
}

}  // namespace headroom
