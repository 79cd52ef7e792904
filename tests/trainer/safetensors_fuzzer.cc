// libFuzzer target for the safetensors reader (trainer/safetensors.h): any bytes either parse
// into tensors whose bytes all lie inside the input, or give an error; nothing else (no crash,
// no out-of-bounds read under AddressSanitizer, no unbounded allocation). After a successful
// parse the promise is checked against the input itself, not against the parser's own view:
// the data buffer starts at 8 + N (N the little-endian header length in the first 8 bytes), the
// tensors tile it exactly in offset order, each is numel x dtype size bytes, and each tensor's
// bytes ARE the input's bytes at its offsets (compared byte for byte, which also reads them all
// under AddressSanitizer).
//
// Built with clang only (tests/trainer/CMakeLists.txt); run, e.g.
//   build/tests/trainer/trainer_safetensors_fuzzer -max_total_time=60
// The same entry point also runs under GoogleTest on a seed set with any compiler
// (safetensors_fuzzer_seeds_test.cc), so it stays compiled and exercised everywhere.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "trainer/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  auto f = headroom::SafeTensorsFile::Parse(bytes, "fuzz");
  if (!f.ok()) return 0;
  if (size < 8) std::abort();
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header << 8 | data[i];
  if (header > size - 8) std::abort();
  const uint64_t data_start = 8 + header, data_size = size - data_start;
  uint64_t next = 0;  // where the next tensor must begin
  for (const headroom::SafeTensorInfo& t : f->tensors()) {
    if (t.begin != next || t.end < t.begin || t.end > data_size) std::abort();
    next = t.end;
    absl::string_view d = f->data(t);
    if (d.size() != t.end - t.begin) std::abort();
    if (d.size() != static_cast<size_t>(t.numel) * headroom::DTypeSize(t.dtype)) std::abort();
    if (d.size() > 0 && std::memcmp(d.data(), data + data_start + t.begin, d.size()) != 0) {
      std::abort();
    }
    if (f->Find(t.name) == nullptr) std::abort();
  }
  if (next != data_size) std::abort();  // bytes that belong to no tensor
  return 0;
}
