// UnigramPerplexity (trainer/unigram.h) on shards small enough to compute by hand: add-one
// smoothed training frequencies, padding (id 0) neither counted nor scored, only the first
// `num_sequences` evaluation examples scored, in file-name order; and its errors.
#include "trainer/unigram.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "data/example_io.h"
#include "data/record_writer.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

class UnigramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/unigram_test_" +
           std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::vector<std::vector<int64_t>>& rows) {
    auto w = RecordWriter::Create(dir_ + "/" + name);
    ASSERT_TRUE(w.ok()) << w.status();
    for (const auto& row : rows) {
      tf::Example e;
      SetInt64Feature(&e, "targets", row);
      ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
    }
    ASSERT_TRUE((*w)->Close().ok());
  }

  std::string dir_;
};

TEST_F(UnigramTest, AddOneSmoothedFrequenciesScoredOnTheFirstSequences) {
  // Training targets (0 = padding): 1 x3, 2 x1, 3 x1 -> N = 5; vocabulary V = 4, so
  // p(t) = (count + 1) / 9: p(1) = 4/9, p(2) = 2/9, p(3) = 2/9 (and p(0) = 1/9, never scored).
  Write("train-b.tfrecord", {{3, 1}});
  Write("train-a.tfrecord", {{1, 1, 2, 0, 0}});
  // Evaluation: files sorted by name, so eval-a comes first; the first 2 sequences hold the
  // targets 1, 2 (padding skipped) and 3, 3; the third sequence is not scored.
  Write("eval-b.tfrecord", {{3, 3}, {1, 1, 1}});
  Write("eval-a.tfrecord", {{1, 2, 0}});
  auto u = UnigramPerplexity(4, dir_ + "/train-*.tfrecord", dir_ + "/eval-*.tfrecord", 2);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->train_tokens, 5);
  EXPECT_EQ(u->sequences, 2);
  EXPECT_EQ(u->tokens, 4);
  const double expected = -(std::log(4.0 / 9) + 3 * std::log(2.0 / 9)) / 4;
  EXPECT_NEAR(u->loss, expected, 1e-12);
  EXPECT_NEAR(u->perplexity, std::exp(expected), 1e-9);

  // All sequences (num_sequences < 0): three more 1s.
  auto all = UnigramPerplexity(4, dir_ + "/train-*.tfrecord", dir_ + "/eval-*.tfrecord", -1);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->tokens, 7);
  EXPECT_NEAR(all->loss, -(4 * std::log(4.0 / 9) + 3 * std::log(2.0 / 9)) / 7, 1e-12);
}

TEST_F(UnigramTest, UniformDataGivesTheSmoothedUniformPerplexity) {
  // Every id 1..7 once in training, V = 8: p(t) = 2/15 for each of them, perplexity 7.5.
  Write("train.tfrecord", {{1, 2, 3, 4, 5, 6, 7}});
  Write("eval.tfrecord", {{7, 6, 5}, {4}});
  auto u = UnigramPerplexity(8, dir_ + "/train.tfrecord", dir_ + "/eval.tfrecord", 100);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->sequences, 2);
  EXPECT_NEAR(u->perplexity, 7.5, 1e-9);
}

TEST_F(UnigramTest, AnIdOutsideTheVocabularyNamesFileRecordAndFeature) {
  Write("train.tfrecord", {{1, 2}, {2, 9}});
  Write("eval.tfrecord", {{1}});
  auto u = UnigramPerplexity(8, dir_ + "/train.tfrecord", dir_ + "/eval.tfrecord", -1);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(u.status().message());
  EXPECT_NE(msg.find("train.tfrecord: record 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'targets' value 9"), std::string::npos) << msg;
}

TEST_F(UnigramTest, AGlobMatchingNothingIsNotFound) {
  Write("train.tfrecord", {{1, 2}});
  auto u = UnigramPerplexity(8, dir_ + "/train.tfrecord", dir_ + "/none-*", -1);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), absl::StatusCode::kNotFound) << u.status();
}

}  // namespace
}  // namespace headroom
