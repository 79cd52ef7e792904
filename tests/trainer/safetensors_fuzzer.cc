// libFuzzer target for the safetensors reader (trainer/safetensors.h): any bytes either parse
// into tensors whose bytes all lie inside the input, or give an error; nothing else (no crash,
// no out-of-bounds read under AddressSanitizer, no unbounded allocation).
//
// Built with clang only (tests/trainer/CMakeLists.txt); run, e.g.
//   build/tests/trainer/trainer_safetensors_fuzzer -max_total_time=60
// The same entry point also runs under GoogleTest on a seed set with any compiler
// (safetensors_fuzzer_seeds_test.cc), so it stays compiled and exercised everywhere.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "trainer/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  auto f = headroom::SafeTensorsFile::Parse(bytes, "fuzz");
  if (!f.ok()) return 0;
  uint64_t total = 0;
  for (const headroom::SafeTensorInfo& t : f->tensors()) {
    absl::string_view d = f->data(t);
    if (d.size() != static_cast<size_t>(t.numel) * headroom::DTypeSize(t.dtype)) std::abort();
    if (d.data() < f->data(t).data() || t.end > size) std::abort();
    unsigned char x = 0;
    for (char c : d) x ^= static_cast<unsigned char>(c);  // touch every byte (ASan checks)
    total += x;
    if (f->Find(t.name) == nullptr) std::abort();
  }
  return total == UINT64_MAX ? 1 : 0;
}
