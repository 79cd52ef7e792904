// BERT pre-training data: statistics and well-formedness of the shards made from the bundled
// corpus (the held-out valid.txt slice, 36 documents, to stay fast), checked against the
// algorithm's published parameters (15% of tokens masked, 80/10/10, 50% random next) rather
// than against numbers recorded from this code; determinism of the shards; bad input.
#include "data/bert_pretraining_data.h"

#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "base/file.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;

std::vector<tf::Example> ReadShard(const std::string& path) {
  std::vector<tf::Example> out;
  auto reader = RecordReader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return out;
  std::string record;
  while (true) {
    auto more = (*reader)->ReadNext(&record);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    tf::Example e;
    EXPECT_TRUE(ParseExample(record, {path, static_cast<int64_t>(out.size()), 0}, &e).ok());
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<int64_t> Ints(const tf::Example& e, const char* name) {
  auto v = GetInt64Feature(e, name, {"test", 0, 0});
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? std::vector<int64_t>(v->begin(), v->end()) : std::vector<int64_t>();
}

class BertDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vocab_ = testing::CachePath("vocab.txt");
    corpus_ = testing::CachePath("corpus/valid.txt");
    HR_SKIP_WITHOUT_BUNDLED(vocab_);
    HR_SKIP_WITHOUT_BUNDLED(corpus_);
    auto t = WordPieceTokenizer::FromFile(vocab_);
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::make_unique<WordPieceTokenizer>(*std::move(t));
    dir_ = testing::MakeTempDir("bert_data");
    ASSERT_FALSE(dir_.empty());
  }
  std::string vocab_, corpus_, dir_;
  std::unique_ptr<WordPieceTokenizer> tok_;
};

// One instance's features as Google's create_pretraining_data.py writes them.
struct Instance {
  std::vector<int64_t> ids, mask, seg, pos, lm_ids, nsp;
  std::vector<float> weights;
};

// Prediction and NSP counts summed over instances, for the Google statistics.
struct MaskCounts {
  int64_t maskable = 0, masked = 0, as_mask = 0, as_original = 0, as_random = 0;
  int64_t random_next = 0;
};

// The shapes, the zero padding and the [CLS] A [SEP] B [SEP] structure with A and B non-empty.
// The structure is checked on the tokens before masking (a random replacement may draw any
// vocabulary id, [SEP] too, as in Google's script). Sets the real length and the [SEP]s.
void CheckStructure(const Instance& in, size_t* len, std::vector<size_t>* seps) {
  ASSERT_EQ(in.ids.size(), 128u);
  ASSERT_EQ(in.mask.size(), 128u);
  ASSERT_EQ(in.seg.size(), 128u);
  ASSERT_EQ(in.pos.size(), 20u);
  ASSERT_EQ(in.lm_ids.size(), 20u);
  ASSERT_EQ(in.weights.size(), 20u);
  ASSERT_EQ(in.nsp.size(), 1u);
  ASSERT_TRUE(in.nsp[0] == 0 || in.nsp[0] == 1);
  size_t n = 0;
  while (n < 128 && in.mask[n] == 1) ++n;
  for (size_t i = n; i < 128; ++i) {
    ASSERT_EQ(in.mask[i], 0);
    ASSERT_EQ(in.ids[i], 0);
    ASSERT_EQ(in.seg[i], 0);
  }
  ASSERT_GE(n, 5u);
  std::vector<int64_t> original(in.ids.begin(), in.ids.begin() + n);
  for (size_t k = 0; k < 20; ++k) {
    if (in.weights[k] != 0.0f && in.pos[k] >= 0 && in.pos[k] < static_cast<int64_t>(n)) {
      original[in.pos[k]] = in.lm_ids[k];
    }
  }
  ASSERT_EQ(original[0], 101);
  ASSERT_EQ(original[n - 1], 102);
  seps->clear();
  for (size_t i = 0; i < n; ++i) {
    ASSERT_GE(in.ids[i], 0);
    ASSERT_LT(in.ids[i], 30522);
    if (original[i] == 102) seps->push_back(i);
    if (i > 0) {
      ASSERT_NE(original[i], 101);
    }
  }
  ASSERT_EQ(seps->size(), 2u);
  ASSERT_GE((*seps)[0], 2u);
  ASSERT_GE((*seps)[1], (*seps)[0] + 2);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(in.seg[i], i <= (*seps)[0] ? 0 : 1);
  *len = n;
}

// Predictions: increasing positions inside the sequence, never [CLS]/[SEP], weights 1s then
// 0s, about 15% of the tokens; counted into *c by how the token is shown.
void CheckPredictions(const Instance& in, size_t len, size_t first_sep, MaskCounts* c) {
  const int64_t expected_predictions =
      std::min<int64_t>(20, std::max<int64_t>(1, std::llround(len * 0.15)));
  int64_t predictions = 0;
  for (size_t k = 0; k < 20; ++k) {
    if (in.weights[k] == 0.0f) {
      ASSERT_EQ(in.pos[k], 0);
      ASSERT_EQ(in.lm_ids[k], 0);
      continue;
    }
    ASSERT_EQ(in.weights[k], 1.0f);
    ASSERT_EQ(k, static_cast<size_t>(predictions)) << "weights must be 1s then 0s";
    ++predictions;
    ASSERT_GT(in.pos[k], 0);
    ASSERT_LT(in.pos[k], static_cast<int64_t>(len) - 1);
    ASSERT_NE(static_cast<size_t>(in.pos[k]), first_sep);
    if (k > 0) {
      ASSERT_GT(in.pos[k], in.pos[k - 1]);
    }
    ASSERT_GE(in.lm_ids[k], 0);
    ASSERT_LT(in.lm_ids[k], 30522);
    ASSERT_NE(in.lm_ids[k], 101);
    ASSERT_NE(in.lm_ids[k], 102);
    const int64_t shown = in.ids[in.pos[k]];
    if (shown == 103) {
      ++c->as_mask;
    } else if (shown == in.lm_ids[k]) {
      ++c->as_original;
    } else {
      ++c->as_random;
    }
  }
  // Python's round differs from llround only at exact halves; allow that one.
  ASSERT_LE(std::abs(predictions - expected_predictions), 1);
  c->masked += predictions;
  c->maskable += static_cast<int64_t>(len) - 3;
}

TEST_F(BertDataTest, ShardsAreWellFormedWithGoogleStatistics) {
  BertDataOptions o;  // Google's defaults: 128, 20, 0.15, 0.1
  o.dupe_factor = 2;
  auto stats = WriteBertShards({corpus_}, *tok_, o, dir_, "train", 3);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->documents, 36);  // fetch-data holds out every 20th of 733 documents
  std::vector<tf::Example> examples;
  for (const std::string& path : ShardPaths(dir_, "train", 3)) {
    std::vector<tf::Example> shard = ReadShard(path);
    EXPECT_GT(shard.size(), 0u) << path;
    examples.insert(examples.end(), shard.begin(), shard.end());
  }
  ASSERT_EQ(static_cast<int64_t>(examples.size()), stats->instances);
  ASSERT_GT(examples.size(), 2000u);

  MaskCounts c;
  for (size_t n = 0; n < examples.size(); ++n) {
    SCOPED_TRACE(n);
    const tf::Example& e = examples[n];
    auto weights = GetFloatFeature(e, "masked_lm_weights", {"test", 0, 0});
    ASSERT_TRUE(weights.ok());
    const Instance in{Ints(e, "input_ids"),
                      Ints(e, "input_mask"),
                      Ints(e, "segment_ids"),
                      Ints(e, "masked_lm_positions"),
                      Ints(e, "masked_lm_ids"),
                      Ints(e, "next_sentence_labels"),
                      std::vector<float>(weights->begin(), weights->end())};
    size_t len = 0;
    std::vector<size_t> seps;
    CheckStructure(in, &len, &seps);
    ASSERT_FALSE(HasFatalFailure());
    c.random_next += in.nsp[0];
    CheckPredictions(in, len, seps[0], &c);
    ASSERT_FALSE(HasFatalFailure());
  }
  const double n = static_cast<double>(examples.size());
  const double m = static_cast<double>(c.masked);
  EXPECT_NEAR(static_cast<double>(c.masked) / c.maskable, 0.15, 0.01);
  EXPECT_NEAR(c.as_mask / m, 0.80, 0.02);
  EXPECT_NEAR(c.as_original / m, 0.10, 0.015);  // plus the rare random draw of the same token
  EXPECT_NEAR(c.as_random / m, 0.10, 0.015);
  // 50% by coin, plus the pairs forced random because only one sentence accumulated.
  EXPECT_GT(c.random_next / n, 0.45);
  EXPECT_LT(c.random_next / n, 0.60);
}

TEST_F(BertDataTest, SameSeedGivesIdenticalShards) {
  BertDataOptions o;
  o.dupe_factor = 1;
  auto a = WriteBertShards({corpus_}, *tok_, o, dir_, "a", 2);
  auto b = WriteBertShards({corpus_}, *tok_, o, dir_, "b", 2);
  o.random_seed = 54321;
  auto c = WriteBertShards({corpus_}, *tok_, o, dir_, "c", 2);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  for (int i = 0; i < 2; ++i) {
    auto fa = ReadFile(ShardPaths(dir_, "a", 2)[i]);
    auto fb = ReadFile(ShardPaths(dir_, "b", 2)[i]);
    auto fc = ReadFile(ShardPaths(dir_, "c", 2)[i]);
    ASSERT_TRUE(fa.ok() && fb.ok() && fc.ok());
    EXPECT_GT(fa->size(), 0u);
    EXPECT_TRUE(*fa == *fb) << "shard " << i << " differs between two runs with the same seed";
    EXPECT_FALSE(*fa == *fc) << "shard " << i << " is the same under another seed";
  }
}

TEST_F(BertDataTest, WholeWordMaskingMasksAllPiecesOfAWord) {
  BertDataOptions o;
  o.dupe_factor = 1;
  o.do_whole_word_mask = true;
  int64_t continuation_masked = 0;
  auto stats = CreateBertInstances({corpus_}, *tok_, o, [&](const BertInstance& inst) {
    std::vector<bool> is_masked(inst.input_ids.size(), false);
    std::vector<int32_t> original = inst.input_ids;
    for (size_t k = 0; k < inst.masked_lm_positions.size(); ++k) {
      is_masked[inst.masked_lm_positions[k]] = true;
      original[inst.masked_lm_positions[k]] = inst.masked_lm_ids[k];
    }
    for (size_t i = 1; i + 1 < original.size(); ++i) {
      bool cont = tok_->IsContinuation(original[i]);
      bool prev_special = original[i - 1] == 101 || original[i - 1] == 102;
      if (cont && is_masked[i] && !prev_special) {
        ++continuation_masked;
        EXPECT_TRUE(is_masked[i - 1]) << "a ## piece is masked without the piece before it";
      }
      if (cont && is_masked[i - 1] && !is_masked[i] && !prev_special) {
        ADD_FAILURE() << "a word is masked without its ## continuation";
      }
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(continuation_masked, 100);
}

TEST_F(BertDataTest, SmallChunksStayWellFormed) {
  BertDataOptions o;
  o.dupe_factor = 1;
  o.chunk_documents = 3;  // random next segments drawn among 3 documents
  int64_t count = 0;
  auto stats = CreateBertInstances({corpus_}, *tok_, o, [&](const BertInstance& inst) {
    ++count;
    EXPECT_LE(inst.input_ids.size(), 128u);
    EXPECT_EQ(inst.input_ids.front(), 101);
    EXPECT_EQ(inst.input_ids.back(), 102);
    EXPECT_EQ(inst.segment_ids.size(), inst.input_ids.size());
    return absl::OkStatus();
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->documents, 36);
  EXPECT_EQ(count, stats->instances);
}

// The chunk is bounded in tokens too: with chunk_tokens = 1 every document closes its chunk,
// so the instances are exactly those of chunk_documents = 1; and the bound changes the output
// of a chunk that holds more (random next segments come from fewer documents).
TEST_F(BertDataTest, ChunksAreBoundedInTokens) {
  auto collect = [&](const BertDataOptions& o) {
    std::vector<std::vector<int32_t>> ids;
    auto stats = CreateBertInstances({corpus_}, *tok_, o, [&](const BertInstance& inst) {
      ids.push_back(inst.input_ids);
      return absl::OkStatus();
    });
    EXPECT_TRUE(stats.ok()) << stats.status();
    return ids;
  };
  BertDataOptions by_documents;
  by_documents.dupe_factor = 1;
  by_documents.chunk_documents = 1;
  BertDataOptions by_tokens = by_documents;
  by_tokens.chunk_documents = 1000000;
  by_tokens.chunk_tokens = 1;
  BertDataOptions unbounded = by_tokens;
  unbounded.chunk_tokens = 0;
  const auto a = collect(by_documents), b = collect(by_tokens), c = collect(unbounded);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  BertDataOptions bad;
  bad.chunk_tokens = -1;
  EXPECT_THAT(ValidateBertDataOptions(bad).message(), HasSubstr("--chunk_tokens=-1"));
}

// ---- Bad input ----

TEST(BertDataErrorsTest, EmptyCorpusIsOneClearError) {
  auto tok = WordPieceTokenizer::FromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"});
  ASSERT_TRUE(tok.ok());
  std::string dir = testing::MakeTempDir("bert_empty");
  std::string path = dir + "/empty.txt";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("\n\n   \n", f);
  std::fclose(f);
  auto stats = WriteBertShards({path}, *tok, BertDataOptions(), dir, "train", 2);
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(stats.status().message(), HasSubstr("no documents in " + path));
  EXPECT_EQ(std::string(stats.status().message()).find('\n'), std::string::npos);
  // No shard appears under its final name.
  EXPECT_FALSE(testing::FileExists(ShardPaths(dir, "train", 2)[0]));
}

TEST(BertDataErrorsTest, MissingInputAndBadOptions) {
  auto tok = WordPieceTokenizer::FromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"});
  ASSERT_TRUE(tok.ok());
  auto missing = CreateBertInstances({"/nonexistent/corpus.txt"}, *tok, BertDataOptions(),
                                     [](const BertInstance&) { return absl::OkStatus(); });
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/corpus.txt"));
  BertDataOptions o;
  o.max_seq_length = 4;
  EXPECT_THAT(ValidateBertDataOptions(o).message(), HasSubstr("--max_seq_length=4"));
}

// ---- truncate_seq_pair ----

// Google's loop, written plainly on deques (whose front erase costs O(1)): the reference that
// TruncateSeqPair must reproduce token for token and random draw for random draw.
void ReferenceTruncate(std::deque<int32_t>* a, std::deque<int32_t>* b, size_t max_tokens,
                       BertRng* rng) {
  while (a->size() + b->size() > max_tokens) {
    std::deque<int32_t>* longer = a->size() > b->size() ? a : b;
    if (rng->Uniform() < 0.5) {
      longer->pop_front();
    } else {
      longer->pop_back();
    }
  }
}

// Runs both on a = [0, na), b = [1e9, 1e9 + nb) and compares the results and the generators.
void ExpectSameTruncation(size_t na, size_t nb, size_t max_tokens, uint64_t seed) {
  SCOPED_TRACE(::testing::Message()
               << "|a|=" << na << " |b|=" << nb << " max=" << max_tokens << " seed=" << seed);
  std::vector<int32_t> a(na), b(nb);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 1'000'000'000);
  std::deque<int32_t> ra(a.begin(), a.end()), rb(b.begin(), b.end());
  BertRng rng(seed), reference_rng(seed);
  TruncateSeqPair(&a, &b, max_tokens, &rng);
  ReferenceTruncate(&ra, &rb, max_tokens, &reference_rng);
  ASSERT_EQ(a, std::vector<int32_t>(ra.begin(), ra.end()));
  ASSERT_EQ(b, std::vector<int32_t>(rb.begin(), rb.end()));
  ASSERT_LE(a.size() + b.size(), max_tokens);
  EXPECT_EQ(rng.Next(), reference_rng.Next()) << "a different number of random draws";
}

TEST(TruncateSeqPairTest, MatchesTheReferenceLoopOnSmallPairs) {
  for (size_t na = 0; na <= 12; ++na) {
    for (size_t nb = 0; nb <= 12; ++nb) {
      for (size_t max_tokens : {0, 1, 5, 9, 30}) ExpectSameTruncation(na, nb, max_tokens, na + nb);
    }
  }
}

// A 2M-token sentence (a multi-megabyte line of prepare-bert's input): the quadratic version
// (front erases of a vector) took minutes on such input; this one is linear. The check is the
// result against the reference, not a time.
TEST(TruncateSeqPairTest, ATwoMillionTokenSegmentIsCutLikeTheReference) {
  ExpectSameTruncation(2'000'000, 40, 125, 7);
  ExpectSameTruncation(3, 2'000'000, 125, 8);
}

TEST(BertRngTest, UniformIntIsInclusiveAndCoversTheRange) {
  BertRng rng(1);
  std::map<int64_t, int> seen;
  for (int i = 0; i < 10000; ++i) ++seen[rng.UniformInt(2, 5)];
  ASSERT_EQ(seen.size(), 4u);
  for (auto [v, count] : seen) EXPECT_NEAR(count, 2500, 250) << v;
  for (int i = 0; i < 1000; ++i) {
    double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace headroom
