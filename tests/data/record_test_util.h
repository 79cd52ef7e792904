// Test helpers for record files and their indexes: a fresh directory per test, whole-file reads
// and writes, and the TFRecord framing built by hand from its definition (little-endian
// integers, CRC32C masked as TensorFlow masks it), independently of data/record_writer.cc.
#ifndef HEADROOM_TESTS_DATA_RECORD_TEST_UTIL_H_
#define HEADROOM_TESTS_DATA_RECORD_TEST_UTIL_H_

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "data/crc32c.h"
#include "gtest/gtest.h"

namespace headroom::testing {

// A fresh empty directory for the current test.
inline std::string TestDir() {
  namespace fs = std::filesystem;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir =
      fs::path(::testing::TempDir()) / (std::string("headroom_") + info->test_suite_name() + "_" +
                                        info->name() + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

inline std::string LittleEndian(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// The mask as TensorFlow's record writer defines it.
inline uint32_t MaskedCrc(const std::string& bytes) {
  uint32_t crc = crc32c::Value(bytes.data(), bytes.size());
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// One record, framed by hand: u64 LE length, masked CRC of those 8 bytes, payload, masked CRC of
// the payload.
inline std::string HandFramed(const std::string& payload) {
  std::string length = LittleEndian(payload.size(), 8);
  return length + LittleEndian(MaskedCrc(length), 4) + payload +
         LittleEndian(MaskedCrc(payload), 4);
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_DATA_RECORD_TEST_UTIL_H_
