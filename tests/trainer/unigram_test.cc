// UnigramPerplexity and BertUnigramBaseline (trainer/unigram.h) on shards small enough to compute
// by hand: add-one smoothed training frequencies, padding (id 0; BERT: weight 0) neither counted
// nor scored, only the first `num_sequences` evaluation examples scored, in file-name order; the
// majority next-sentence class; and their errors.
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

  // BERT examples: (masked_lm_ids, masked_lm_weights, next_sentence_label).
  struct Pair {
    std::vector<int64_t> ids;
    std::vector<float> weights;
    int64_t label;
  };
  void WriteBert(const std::string& name, const std::vector<Pair>& rows) {
    auto w = RecordWriter::Create(dir_ + "/" + name);
    ASSERT_TRUE(w.ok()) << w.status();
    for (const Pair& row : rows) {
      tf::Example e;
      SetInt64Feature(&e, "masked_lm_ids", row.ids);
      SetFloatFeature(&e, "masked_lm_weights", row.weights);
      SetInt64Feature(&e, "next_sentence_labels", std::vector<int64_t>{row.label});
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

TEST_F(UnigramTest, BertBaselinesAreTheUnigramMaskedTokensAndTheMajorityLabel) {
  // Training predictions (weight > 0 only): 5 x3, 6 x2, 7 x1 -> N = 6; the slot (9, weight 0)
  // is padding. V = 10: p(t) = (count + 1) / 16, so p(5) = 4/16, p(6) = 3/16, p(7) = 2/16,
  // p(other) = 1/16; the argmax is 5. Labels: 1, 1, 0 -> majority 1, q(1) = 3/5, q(0) = 2/5.
  WriteBert("train-a.tfrecord", {{{5, 5, 9}, {1, 1, 0}, 1}, {{6, 7}, {1, 1}, 1}});
  WriteBert("train-b.tfrecord", {{{5, 6}, {1, 1}, 0}});
  // Evaluation, first 2 examples: predictions 5, 8 (label 0) and 6, 5, 5 (label 1); the third
  // example is not read.
  WriteBert("eval.tfrecord", {{{5, 8, 0}, {1, 1, 0}, 0}, {{6, 5, 5}, {1, 1, 1}, 1}, {{7}, {1}, 0}});
  auto b = BertUnigramBaseline(10, dir_ + "/train-*.tfrecord", dir_ + "/eval.tfrecord", 2);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->train_predictions, 6);
  EXPECT_EQ(b->train_pairs, 3);
  EXPECT_EQ(b->sequences, 2);
  EXPECT_EQ(b->predictions, 5);
  EXPECT_EQ(b->majority_label, 1);
  EXPECT_NEAR(b->train_random_next_share, 2.0 / 3, 1e-12);
  const double mlm = -(3 * std::log(4.0 / 16) + std::log(1.0 / 16) + std::log(3.0 / 16)) / 5;
  EXPECT_NEAR(b->mlm_loss, mlm, 1e-12);
  EXPECT_NEAR(b->mlm_accuracy, 3.0 / 5, 1e-12);  // the three 5s
  const double nsp = -(std::log(2.0 / 5) + std::log(3.0 / 5)) / 2;
  EXPECT_NEAR(b->nsp_loss, nsp, 1e-12);
  EXPECT_NEAR(b->nsp_accuracy, 0.5, 1e-12);
  EXPECT_NEAR(b->loss, mlm + nsp, 1e-12);
}

TEST_F(UnigramTest, BertBaselinesRejectABadLabelAndAnIdOutsideTheVocabulary) {
  WriteBert("train.tfrecord", {{{1}, {1}, 0}, {{2}, {1}, 2}});
  WriteBert("eval.tfrecord", {{{1}, {1}, 0}});
  WriteBert("big.tfrecord", {{{1, 12}, {1, 1}, 0}});
  auto label = BertUnigramBaseline(10, dir_ + "/train.tfrecord", dir_ + "/eval.tfrecord", -1);
  ASSERT_FALSE(label.ok());
  EXPECT_EQ(label.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(label.status().message().find("train.tfrecord: record 1"), std::string::npos)
      << label.status();
  EXPECT_NE(label.status().message().find("next_sentence_labels"), std::string::npos);
  auto id = BertUnigramBaseline(10, dir_ + "/eval.tfrecord", dir_ + "/big.tfrecord", -1);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("'masked_lm_ids' value 12"), std::string::npos)
      << id.status();
}

}  // namespace
}  // namespace headroom
