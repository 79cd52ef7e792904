// Causal-LM record files for the trainer tests: one "targets" int64 feature per record.
#ifndef HEADROOM_TESTS_TRAINER_LM_SHARDS_H_
#define HEADROOM_TESTS_TRAINER_LM_SHARDS_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data/example_io.h"
#include "data/record_writer.h"

namespace headroom::testing {

// Writes one record per sequence to `path`.
inline void WriteTargetsRecords(const std::string& path,
                                const std::vector<std::vector<int64_t>>& sequences) {
  auto w = RecordWriter::Create(path);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const std::vector<int64_t>& t : sequences) {
    tf::Example e;
    SetInt64Feature(&e, "targets", t);
    ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
  }
  ASSERT_TRUE((*w)->Close().ok());
}

// `n` sequences of 8 targets in `shards` files DIR/NAME-<s>.tfrecord (sequence i in file
// i % shards): 1 2 3 ... 15 1 2 ... from a random start, so there is something to learn.
inline void WriteCountingLmShards(const std::string& dir, const std::string& name, int shards,
                                  int n, uint32_t seed) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(seed);
  for (int s = 0; s < shards; ++s) {
    std::vector<std::vector<int64_t>> sequences;
    for (int i = s; i < n; i += shards) {
      std::vector<int64_t> t(8);
      const int start = static_cast<int>(rng() % 15);
      for (int j = 0; j < 8; ++j) t[j] = 1 + (start + j) % 15;
      sequences.push_back(t);
    }
    WriteTargetsRecords(dir + "/" + name + "-" + std::to_string(s) + ".tfrecord", sequences);
  }
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_TRAINER_LM_SHARDS_H_
