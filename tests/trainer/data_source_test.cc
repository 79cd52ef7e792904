// OpenBatchSource on LM shards: packed shards (tensor2tensor's targets_segmentation and
// targets_position, as prepare-lm --pack writes them) deliver both features with the targets,
// zero-padded like them; unpacked ones deliver `targets` only; a shard without the packed
// features among packed ones is an error naming it.
#include "trainer/data_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/example_io.h"
#include "data/record_writer.h"
#include "tests/trainer/lm_shards.h"

namespace headroom {
namespace {

ModelConfig Lm() {
  ModelConfig m;
  m.set_objective(ModelConfig::CAUSAL_LM);
  m.set_vocab_size(16);
  m.set_max_positions(8);
  return m;
}

std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/data_source_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Two packed examples: sentences (3, 7, 1 | 5, 1) and (4, 4, 6, 1).
void WritePacked(const std::string& path) {
  auto w = RecordWriter::Create(path);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::vector<std::vector<int64_t>> t = {{3, 7, 1, 5, 1}, {4, 4, 6, 1}};
  const std::vector<std::vector<int64_t>> seg = {{1, 1, 1, 2, 2}, {1, 1, 1, 1}};
  const std::vector<std::vector<int64_t>> pos = {{0, 1, 2, 0, 1}, {0, 1, 2, 3}};
  for (size_t i = 0; i < t.size(); ++i) {
    tf::Example e;
    SetInt64Feature(&e, "targets", t[i]);
    SetInt64Feature(&e, "targets_segmentation", seg[i]);
    SetInt64Feature(&e, "targets_position", pos[i]);
    ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
  }
  ASSERT_TRUE((*w)->Close().ok());
}

TEST(DataSourceTest, PackedShardsDeliverSegmentsAndPositions) {
  const std::string dir = TempDir("packed");
  WritePacked(dir + "/train-0.tfrecord");
  auto src = OpenBatchSource(Lm(), dir + "/train-*", 6, 0, 2, 1, /*shuffle=*/false);
  ASSERT_TRUE(src.ok()) << src.status();
  auto b = (*src)->Next();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->ints.at("targets"), (std::vector<int32_t>{3, 7, 1, 5, 1, 0, 4, 4, 6, 1, 0, 0}));
  EXPECT_EQ(b->ints.at("targets_segmentation"),
            (std::vector<int32_t>{1, 1, 1, 2, 2, 0, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b->ints.at("targets_position"),
            (std::vector<int32_t>{0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0, 0}));
}

TEST(DataSourceTest, UnpackedShardsDeliverTargetsOnly) {
  const std::string dir = TempDir("unpacked");
  testing::WriteTargetsRecords(dir + "/train-0.tfrecord", {{3, 7, 1}, {5, 1}});
  auto src = OpenBatchSource(Lm(), dir + "/train-*", 4, 0, 2, 1, /*shuffle=*/false);
  ASSERT_TRUE(src.ok()) << src.status();
  auto b = (*src)->Next();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->ints.size(), 1u);
  EXPECT_EQ(b->ints.at("targets"), (std::vector<int32_t>{3, 7, 1, 0, 5, 1, 0, 0}));
}

TEST(DataSourceTest, AnUnpackedShardAmongPackedOnesIsNamed) {
  const std::string dir = TempDir("mixed");
  WritePacked(dir + "/train-0.tfrecord");
  testing::WriteTargetsRecords(dir + "/train-1.tfrecord", {{3, 7, 1}});
  auto src = OpenBatchSource(Lm(), dir + "/train-*", 6, 0, 1, 1, /*shuffle=*/false);
  ASSERT_FALSE(src.ok());
  const std::string msg(src.status().message());
  EXPECT_NE(msg.find("train-1.tfrecord"), std::string::npos) << msg;
  EXPECT_NE(msg.find("targets_segmentation"), std::string::npos) << msg;
}

}  // namespace
}  // namespace headroom
