// SentencePiece training/encoding and LM `targets` examples. A small model (vocab 1000) is trained
// once on the bundled held-out text (valid.txt) to keep the suite fast; the checks are properties
// the format promises (round trip, t2t ids, EOS per sentence, no token lost when cutting or
// packing, lengths), not numbers recorded from a run.
#include "data/lm_pretraining_data.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "data/bert_pretraining_data.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/text_input.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;

std::string WriteText(const std::string& dir, const std::string& name, const std::string& text) {
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return path;
}

class LmDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    corpus_ = new std::string(testing::CachePath("corpus/valid.txt"));
    if (!testing::FileExists(*corpus_)) return;
    dir_ = new std::string(testing::MakeTempDir("lm_data"));
    SentencePieceTrainOptions o;
    o.input_files = {*corpus_};
    o.model_prefix = *dir_ + "/spm";
    o.vocab_size = 1000;
    absl::Status s = TrainSentencePiece(o);
    ASSERT_TRUE(s.ok()) << s;
    auto spm = SentencePieceTokenizer::Load(*dir_ + "/spm.model");
    ASSERT_TRUE(spm.ok()) << spm.status();
    spm_ = new SentencePieceTokenizer(*std::move(spm));
  }
  void SetUp() override {
    HR_SKIP_WITHOUT_BUNDLED(*corpus_);
    ASSERT_NE(spm_, nullptr);
  }
  static std::string* corpus_;
  static std::string* dir_;
  static SentencePieceTokenizer* spm_;
};
std::string* LmDataTest::corpus_ = nullptr;
std::string* LmDataTest::dir_ = nullptr;
SentencePieceTokenizer* LmDataTest::spm_ = nullptr;

TEST_F(LmDataTest, TrainedModelUsesTensor2TensorIds) {
  EXPECT_EQ(spm_->vocab_size(), 1000);
  EXPECT_EQ(spm_->pad_id(), 0);
  EXPECT_EQ(spm_->eos_id(), 1);
  EXPECT_EQ(spm_->unk_id(), 2);
  EXPECT_EQ(spm_->IdToPiece(1), "</s>");
}

TEST_F(LmDataTest, EncodeDecodeRoundTrips) {
  const std::string text = "The Congress shall have power to lay and collect taxes.";
  auto ids = spm_->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 5u);
  for (int32_t id : *ids) {
    EXPECT_GT(id, 1);  // never <pad> or </s>
    EXPECT_LT(id, 1000);
  }
  auto back = spm_->Decode(*ids);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, text);
  auto pieces = spm_->EncodeAsPieces(text);
  ASSERT_TRUE(pieces.ok());
  EXPECT_EQ(pieces->size(), ids->size());
  EXPECT_FALSE(spm_->Decode({5, 1000}).ok());
}

TEST_F(LmDataTest, OneSentencePerExampleEndsWithEos) {
  std::string path =
      WriteText(*dir_, "three.txt", "Hello world.\nThe union is strong.\n\nA third one.\n");
  std::vector<std::vector<int32_t>> examples;
  auto stats = CreateLmExamples({path}, *spm_, LmDataOptions(), [&](const LmExample& e) {
    examples.push_back(e.targets);
    EXPECT_TRUE(e.segmentation.empty() && e.position.empty());  // not packed
    return absl::OkStatus();
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(examples.size(), 3u);
  EXPECT_EQ(stats->sentences, 3);
  const char* sentences[] = {"Hello world.", "The union is strong.", "A third one."};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(examples[i].back(), 1);
    std::vector<int32_t> body(examples[i].begin(), examples[i].end() - 1);
    EXPECT_EQ(*spm_->Decode(body), sentences[i]);
  }
}

TEST_F(LmDataTest, LongSentencesAreCutAndPackingLosesNoToken) {
  LmDataOptions plain;
  plain.max_length = 16;
  LmDataOptions packed = plain;
  packed.pack = true;
  std::vector<std::vector<int32_t>> a, b, segments;
  auto sa = CreateLmExamples({*corpus_}, *spm_, plain, [&](const LmExample& e) {
    a.push_back(e.targets);
    return absl::OkStatus();
  });
  auto sb = CreateLmExamples({*corpus_}, *spm_, packed, [&](const LmExample& e) {
    b.push_back(e.targets);
    // Segments number 1, 2, ... and positions restart at 0 in each (tensor2tensor's packing).
    EXPECT_EQ(e.segmentation.size(), e.targets.size());
    EXPECT_EQ(e.position.size(), e.targets.size());
    for (size_t i = 0; i < e.targets.size(); ++i) {
      const bool starts = i == 0 || e.segmentation[i] != e.segmentation[i - 1];
      EXPECT_EQ(e.segmentation[i], i == 0 ? 1 : e.segmentation[i - 1] + (starts ? 1 : 0));
      EXPECT_EQ(e.position[i], starts ? 0 : e.position[i - 1] + 1);
      if (starts) segments.emplace_back();
      segments.back().push_back(e.targets[i]);
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(sa.ok() && sb.ok());
  std::vector<int32_t> flat_a, flat_b;
  int64_t eos = 0;
  for (const auto& t : a) {
    ASSERT_LE(t.size(), 16u);
    ASSERT_FALSE(t.empty());
    flat_a.insert(flat_a.end(), t.begin(), t.end());
  }
  for (const auto& t : b) {
    ASSERT_LE(t.size(), 16u);
    flat_b.insert(flat_b.end(), t.begin(), t.end());
    for (int32_t id : t) eos += id == 1;
  }
  EXPECT_EQ(flat_a, flat_b);  // same token stream, just grouped differently
  // Each packed segment is exactly one unpacked example: a sentence or a piece of a cut one.
  EXPECT_EQ(segments, a);
  EXPECT_EQ(eos, sa->sentences);
  EXPECT_LT(b.size(), a.size());
  EXPECT_EQ(sa->tokens, static_cast<int64_t>(flat_a.size()));
}

TEST_F(LmDataTest, ShardsHoldTargetsRoundRobin) {
  std::string out = testing::MakeTempDir("lm_shards");
  auto stats = WriteLmShards({*corpus_}, *spm_, LmDataOptions(), out, "valid", 3);
  ASSERT_TRUE(stats.ok()) << stats.status();
  int64_t records = 0;
  for (const std::string& path : ShardPaths(out, "valid", 3)) {
    auto reader = RecordReader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    std::string record;
    int64_t in_shard = 0;
    while (*(*reader)->ReadNext(&record)) {
      tf::Example e;
      ASSERT_TRUE(ParseExample(record, {path, in_shard, 0}, &e).ok());
      auto targets = GetInt64Feature(e, "targets", {path, in_shard, 0});
      ASSERT_TRUE(targets.ok()) << targets.status();
      ASSERT_FALSE(targets->empty());
      ASSERT_LE(targets->size(), 256u);
      for (int64_t id : *targets) ASSERT_TRUE(id > 0 && id < 1000);
      ++in_shard;
    }
    EXPECT_NEAR(in_shard, stats->examples / 3.0, 1.0);
    records += in_shard;
  }
  EXPECT_EQ(records, stats->examples);
}

TEST_F(LmDataTest, PackedShardsHoldTensor2tensorsPackedFeatures) {
  std::string out = testing::MakeTempDir("lm_packed_shards");
  LmDataOptions o;
  o.max_length = 64;
  o.pack = true;
  auto stats = WriteLmShards({*corpus_}, *spm_, o, out, "train", 2);
  ASSERT_TRUE(stats.ok()) << stats.status();
  int64_t records = 0, tokens = 0;
  for (const std::string& path : ShardPaths(out, "train", 2)) {
    auto reader = RecordReader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    std::string record;
    for (int64_t i = 0; *(*reader)->ReadNext(&record); ++i, ++records) {
      tf::Example e;
      const RecordLocation where{path, i, 0};
      ASSERT_TRUE(ParseExample(record, where, &e).ok());
      auto targets = GetInt64Feature(e, "targets", where);
      auto segmentation = GetInt64Feature(e, "targets_segmentation", where);
      auto position = GetInt64Feature(e, "targets_position", where);
      ASSERT_TRUE(targets.ok() && segmentation.ok() && position.ok());
      ASSERT_EQ(segmentation->size(), targets->size());
      ASSERT_EQ(position->size(), targets->size());
      EXPECT_EQ((*segmentation)[0], 1);
      EXPECT_EQ((*position)[0], 0);
      tokens += static_cast<int64_t>(targets->size());
    }
  }
  EXPECT_EQ(records, stats->examples);
  EXPECT_EQ(tokens, stats->tokens);
  // --nopack_segments: the same rows as one stream, without the segment features.
  o.pack_segments = false;
  int64_t stream_examples = 0;
  auto stream = CreateLmExamples({*corpus_}, *spm_, o, [&](const LmExample& e) {
    ++stream_examples;
    EXPECT_TRUE(e.segmentation.empty() && e.position.empty());
    return absl::OkStatus();
  });
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ(stream_examples, stats->examples);
}

// ---- Bad input ----

TEST_F(LmDataTest, EmptyCorpusIsOneClearError) {
  std::string path = WriteText(*dir_, "blank.txt", "\n \n\n");
  auto stats = CreateLmExamples({path}, *spm_, LmDataOptions(),
                                [](const LmExample&) { return absl::OkStatus(); });
  ASSERT_FALSE(stats.ok());
  EXPECT_THAT(stats.status().message(), HasSubstr("no sentences in " + path));
}

TEST(SentencePieceErrorsTest, MissingModelAndBadTrainingOptions) {
  auto spm = SentencePieceTokenizer::Load("/nonexistent/lm.model");
  ASSERT_FALSE(spm.ok());
  EXPECT_EQ(spm.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(spm.status().message(), HasSubstr("/nonexistent/lm.model"));

  std::string dir = testing::MakeTempDir("spm_errors");
  std::string garbage = WriteText(dir, "garbage.model", "not a model");
  spm = SentencePieceTokenizer::Load(garbage);
  ASSERT_FALSE(spm.ok());
  EXPECT_THAT(spm.status().message(), HasSubstr(garbage));

  SentencePieceTrainOptions o;
  o.input_files = {"/nonexistent/text.txt"};
  o.model_prefix = dir + "/m";
  EXPECT_THAT(TrainSentencePiece(o).message(), HasSubstr("/nonexistent/text.txt"));
  o.input_files = {WriteText(dir, "tiny.txt", "a b c\n")};
  o.vocab_size = 5000;  // far more pieces than a three-letter corpus has
  absl::Status s = TrainSentencePiece(o);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos) << s;
  o.model_type = "wordpiece";
  EXPECT_THAT(TrainSentencePiece(o).message(), HasSubstr("unigram or bpe"));
}

TEST(TextInputTest, ExpandsCommaListsAndGlobs) {
  std::string dir = testing::MakeTempDir("text_input");
  WriteText(dir, "b.txt", "x\n");
  WriteText(dir, "a.txt", "y\n");
  auto files = ExpandInputFiles(dir + "/*.txt," + dir + "/a.txt");
  ASSERT_TRUE(files.ok());
  EXPECT_THAT(*files, ::testing::ElementsAre(dir + "/a.txt", dir + "/b.txt", dir + "/a.txt"));
  auto none = ExpandInputFiles(dir + "/*.md");
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("*.md"));
}

// Lines of more than a million characters (code points, not bytes) are read whole, with one
// warning each naming the file and the line number.
TEST(TextInputTest, LinesOverAMillionCharactersAreWarnedAboutWithFileAndLine) {
  std::string dir = testing::MakeTempDir("text_input_long");
  std::string e_acute_1200k, e_acute_900k;
  for (int i = 0; i < 1'200'000; ++i) e_acute_1200k += "\xc3\xa9";  // 2 bytes, 1 character
  e_acute_900k = e_acute_1200k.substr(0, 2 * 900'000);              // 1.8 MB, 900k characters
  WriteText(dir, "a.txt", "short\nalso short\n" + e_acute_1200k + "\n" + e_acute_900k + "\n");
  WriteText(dir, "b.txt", "x\n" + std::string(1'000'001, 'y') + "\n" + std::string(999'999, 'z'));
  auto reader = TextReader::Open({dir + "/a.txt", dir + "/b.txt"});
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> warnings;
  reader->set_warning_handler([&](const std::string& w) { warnings.push_back(w); });
  std::vector<size_t> lengths;
  std::string line;
  while (reader->NextLine(&line)) lengths.push_back(line.size());
  ASSERT_TRUE(reader->status().ok()) << reader->status();
  // a.txt's 4 lines, the file boundary, b.txt's 3 lines: every line whole.
  EXPECT_EQ(lengths, (std::vector<size_t>{5, 10, 2'400'000, 1'800'000, 0, 1, 1'000'001, 999'999}));
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], HasSubstr(dir + "/a.txt:3: a line of 1200000 characters"));
  EXPECT_THAT(warnings[1], HasSubstr(dir + "/b.txt:2: a line of 1000001 characters"));
}

}  // namespace
}  // namespace headroom
