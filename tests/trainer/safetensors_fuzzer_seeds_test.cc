// Runs the libFuzzer entry point of safetensors_fuzzer.cc on seeds and their single-byte
// mutations with any compiler, so the fuzz target is compiled and exercised in every build.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "trainer/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace headroom {
namespace {

int FuzzOne(const std::string& s) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(SafeTensorsFuzzerSeedsTest, SeedsAndTheirMutationsRun) {
  const float w[4] = {1, 2, 3, 4};
  const int64_t ids[2] = {5, 6};
  SafeTensorsWriter writer;
  ASSERT_TRUE(writer.AddF32("a.weight", {2, 2}, w).ok());
  ASSERT_TRUE(writer.Add("b", DType::kI64, {2}, ids, sizeof(ids)).ok());
  writer.SetMetadata("format", "pt");
  std::vector<std::string> seeds = {writer.Serialize(), std::string(8, '\0'), "",
                                    std::string("\x02\0\0\0\0\0\0\0{}", 10)};
  for (const std::string& seed : seeds) {
    EXPECT_EQ(FuzzOne(seed), 0);
    for (size_t i = 0; i < seed.size(); ++i) {
      std::string m = seed;
      m[i] = static_cast<char>(m[i] + 1);
      EXPECT_EQ(FuzzOne(m), 0);
      EXPECT_EQ(FuzzOne(seed.substr(0, i)), 0);
    }
  }
}

}  // namespace
}  // namespace headroom
