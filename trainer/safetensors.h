// safetensors files (Hugging Face's tensor container): a writer, and a reader for untrusted input.
//
// Format (https://github.com/huggingface/safetensors):
//
//   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8 + N)    the header: a JSON object, UTF-8, possibly padded with trailing spaces
//                       { "__metadata__": {"key": "value", ...},            (optional, str->str)
//                         "<tensor name>": {"dtype": "F32", "shape": [2, 3],
//                                           "data_offsets": [begin, end]}, ... }
//   bytes [8 + N, EOF)  the data buffer; a tensor's bytes are [begin, end) relative to its start,
//                       row-major, little-endian
//
// The reader treats a file as untrusted (checkpoints are downloaded and copied around) and
// rejects, with one line naming the file and the tensor, everything Hugging Face's reference
// implementation rejects: a file shorter than 8 bytes, a header length past the end of the file
// or over 100 MB, a header that is not a JSON object of the form above (unknown dtype, negative or
// non-integer sizes, data_offsets not [begin <= end], duplicate names, nesting deeper than the
// format has), a size that is not shape x dtype size (with overflow-checked arithmetic), offsets
// past the end of the buffer, overlapping tensors, and bytes that belong to no tensor (tensors
// must tile the buffer exactly). After a successful Parse every tensor's bytes are in bounds.
//
// The writer pads the header with spaces so the data buffer starts 8-byte aligned (as the
// reference writer), lays tensors out in the order they were added, and writes the file
// atomically (temporary name, fsync, rename, fsync of the directory).
//
// Example:
//   SafeTensorsWriter w;
//   HR_RETURN_IF_ERROR(w.AddF32("bert.pooler.dense.bias", {768}, bias));
//   w.SetMetadata("format", "pt");
//   HR_RETURN_IF_ERROR(w.Write("model.safetensors"));
//
//   HR_ASSIGN_OR_RETURN(SafeTensorsFile f, SafeTensorsFile::Read("model.safetensors"));
//   std::vector<float> b(768);
//   HR_RETURN_IF_ERROR(f.CopyF32("bert.pooler.dense.bias", {768}, b.data()));
#ifndef HEADROOM_TRAINER_SAFETENSORS_H_
#define HEADROOM_TRAINER_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

enum class DType { kBool, kU8, kI8, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64 };

// "F32", "BF16", ... (the format's names).
const char* DTypeName(DType dtype);
// Bytes per element.
size_t DTypeSize(DType dtype);
// Parses a format name; false when unknown.
bool ParseDType(absl::string_view name, DType* dtype);

// Largest header the reader accepts (the reference implementation's limit).
inline constexpr uint64_t kMaxSafeTensorsHeader = 100'000'000;

class SafeTensorsWriter {
 public:
  // Adds a tensor of `bytes` bytes at `data`, which is NOT copied: it must stay valid and
  // unchanged until Write/Serialize returns. Errors: empty or duplicate name, "__metadata__",
  // negative dimensions, bytes != product(shape) * DTypeSize(dtype).
  [[nodiscard]] absl::Status Add(const std::string& name, DType dtype,
                                 const std::vector<int64_t>& shape, const void* data, size_t bytes);
  [[nodiscard]] absl::Status AddF32(const std::string& name, const std::vector<int64_t>& shape,
                                    const float* data);
  // "__metadata__" entries (later calls with the same key replace the value).
  void SetMetadata(const std::string& key, const std::string& value);

  // The whole file in memory.
  std::string Serialize() const;
  // Writes the file atomically to `path`; errors (e.g. a full disk) name the path and leave no
  // file under `path` (an existing one is kept). With `crc_out` set, it receives the CRC32C
  // (data/crc32c.h, unmasked) of the bytes written, computed on the way out (the checkpoint
  // manifest records it without reading the file back).
  [[nodiscard]] absl::Status Write(const std::string& path, uint32_t* crc_out = nullptr) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const char* data;
    size_t bytes;
  };
  std::string Header() const;

  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// One tensor of a parsed file. Its bytes are SafeTensorsFile::data(info).
struct SafeTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0;  // offsets in the data buffer, validated
  uint64_t end = 0;
};

class SafeTensorsFile {
 public:
  // Validates `bytes` (the whole file; `source` names it in errors, e.g. its path). All errors
  // are InvalidArgument ("<source>: safetensors <what>").
  [[nodiscard]] static absl::StatusOr<SafeTensorsFile> Parse(std::string bytes,
                                                             const std::string& source);
  // Reads and parses `path`.
  [[nodiscard]] static absl::StatusOr<SafeTensorsFile> Read(const std::string& path);

  // Tensors in data-offset order.
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor named `name`, or nullptr.
  const SafeTensorInfo* Find(absl::string_view name) const;
  // The bytes of `info` (a tensor of this file); valid while this object lives.
  absl::string_view data(const SafeTensorInfo& info) const;

  // Copies tensor `name` into `out` (product(shape) floats) after checking that it exists, is
  // F32 and has exactly `shape`; errors say which of these failed, naming the file.
  [[nodiscard]] absl::Status CopyF32(const std::string& name, const std::vector<int64_t>& shape,
                                     float* out) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::string bytes_;
  uint64_t data_start_ = 0;
  std::vector<SafeTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// "[2, 3]" for messages.
std::string ShapeString(const std::vector<int64_t>& shape);

// Writes the `n` bytes at `data` to file descriptor `fd`, retrying short writes and EINTR;
// errors name `path`. Every byte of a checkpoint (both safetensors files, trainer_state.json and
// config.textproto, trainer/checkpoint.h) is written through it.
//
// Fault injection, for tests only: with HEADROOM_FAULT_INJECT_WRITE_FAIL_AFTER_BYTES=N in the
// environment, the calls of this process together write N bytes and then fail with ENOSPC
// ("No space left on device"), as a full disk would; the count restarts whenever the variable's
// value changes. With HEADROOM_FAULT_INJECT_KILL_AFTER_BYTES=N, the process SIGKILLs itself
// once the calls have written N bytes, as a crash in the middle of a checkpoint would. Unset
// (always, outside tests), they cost two getenv calls per call.
[[nodiscard]] absl::Status WriteAllToFd(int fd, const void* data, size_t n,
                                        const std::string& path);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_SAFETENSORS_H_
