// `headroom prepare-bert` / `prepare-lm` from the command line: each bad input gives exactly one
// line on stderr, naming the problem, and a non-zero exit; a good run exits 0.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>

#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code;
  std::string stderr_text;
};

// Runs `headroom ARGS` with stdout discarded and stderr captured.
Result Headroom(const std::string& args) {
  static const std::string dir = testing::MakeTempDir("prepare_cmd");
  const std::string err = dir + "/stderr.txt";
  std::string cmd = std::string(HEADROOM_BINARY) + " " + args + " --noprogress >/dev/null 2>" + err;
  int status = std::system(cmd.c_str());
  auto text = ReadFile(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.ok() ? *text : ""};
}

void ExpectOneLineError(const Result& r, const std::string& what) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.stderr_text, HasSubstr(what));
  ASSERT_FALSE(r.stderr_text.empty());
  EXPECT_EQ(r.stderr_text.find('\n'), r.stderr_text.size() - 1) << r.stderr_text;
}

class PrepareCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("prepare_cmd_case");
    text_ = dir_ + "/text.txt";
    FILE* f = std::fopen(text_.c_str(), "w");
    std::fputs("The first sentence.\nThe second one.\n\nAnother document here.\nIt ends.\n", f);
    std::fclose(f);
    empty_ = dir_ + "/empty.txt";
    std::fclose(std::fopen(empty_.c_str(), "w"));
    bad_vocab_ = dir_ + "/vocab.txt";
    f = std::fopen(bad_vocab_.c_str(), "w");
    std::fputs("<pad>\n<unk>\n<s>\n</s>\nthe\n", f);  // a SentencePiece-style list, not BERT's
    std::fclose(f);
    good_vocab_ = dir_ + "/good_vocab.txt";
    f = std::fopen(good_vocab_.c_str(), "w");
    std::fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n", f);  // a valid (tiny) BERT vocab
    std::fclose(f);
  }
  std::string dir_, text_, empty_, bad_vocab_, good_vocab_;
};

TEST_F(PrepareCommandsTest, MissingVocab) {
  ExpectOneLineError(Headroom("prepare-bert --input_file=" + text_ + " --vocab_file=" + dir_ +
                              "/none.txt --output_dir=" + dir_ + "/out"),
                     dir_ + "/none.txt");
}

TEST_F(PrepareCommandsTest, VocabWithWrongSpecialTokens) {
  Result r = Headroom("prepare-bert --input_file=" + text_ + " --vocab_file=" + bad_vocab_ +
                      " --output_dir=" + dir_ + "/out");
  ExpectOneLineError(r, bad_vocab_);
  EXPECT_THAT(r.stderr_text, HasSubstr("[PAD] [UNK] [CLS] [SEP] [MASK]"));
}

TEST_F(PrepareCommandsTest, VocabWithADuplicateOrABlankLine) {
  const std::string vocab = dir_ + "/dup_vocab.txt";
  FILE* f = std::fopen(vocab.c_str(), "w");
  std::fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n[CLS]\n", f);
  std::fclose(f);
  ExpectOneLineError(Headroom("prepare-bert --input_file=" + text_ + " --vocab_file=" + vocab +
                              " --output_dir=" + dir_ + "/out"),
                     vocab + " line 7: duplicate token \"[CLS]\" (first at line 3)");
  f = std::fopen(vocab.c_str(), "w");
  std::fputs("[PAD]\n[UNK]\n[CLS]\n\n[SEP]\n[MASK]\n", f);
  std::fclose(f);
  ExpectOneLineError(Headroom("prepare-bert --input_file=" + text_ + " --vocab_file=" + vocab +
                              " --output_dir=" + dir_ + "/out"),
                     vocab + " line 4 is blank");
  EXPECT_FALSE(testing::FileExists(dir_ + "/out/train-00000-of-00008.tfrecord"));
}

TEST_F(PrepareCommandsTest, EmptyCorpus) {
  std::string vocab = testing::CachePath("vocab.txt");
  HR_SKIP_WITHOUT_BUNDLED(vocab);
  ExpectOneLineError(Headroom("prepare-bert --input_file=" + empty_ + " --vocab_file=" + vocab +
                              " --output_dir=" + dir_ + "/out"),
                     "no documents in " + empty_);
  ExpectOneLineError(Headroom("prepare-lm --input_file=" + empty_ + " --spm_model=" + dir_ +
                              "/lm.model --output_dir=" + dir_ + "/out"),
                     empty_);
}

TEST_F(PrepareCommandsTest, MissingInputAndRequiredFlags) {
  // With a valid vocabulary, so that the error can only be the input's.
  const std::string missing = dir_ + "/nope*.txt";
  Result r = Headroom("prepare-bert --input_file=" + missing + " --vocab_file=" + good_vocab_ +
                      " --output_dir=" + dir_ + "/out");
  ExpectOneLineError(r, "input " + missing + " not found (no file matches)");
  EXPECT_THAT(r.stderr_text, Not(HasSubstr("vocabulary")));
  ExpectOneLineError(Headroom("prepare-lm --input_file=" + missing + " --spm_model=" + dir_ +
                              "/lm.model --output_dir=" + dir_ + "/out"),
                     "input " + missing + " not found (no file matches)");
  EXPECT_FALSE(testing::FileExists(dir_ + "/lm.model")) << "a model trained on nothing";
  ExpectOneLineError(Headroom("prepare-bert --vocab_file=x"), "--input_file is required");
  ExpectOneLineError(Headroom("prepare-lm --input_file=" + text_), "--spm_model is required");
}

TEST_F(PrepareCommandsTest, SmallRunSucceeds) {
  std::string vocab = testing::CachePath("vocab.txt");
  HR_SKIP_WITHOUT_BUNDLED(vocab);
  Result r = Headroom("prepare-bert --input_file=" + text_ + " --vocab_file=" + vocab +
                      " --output_dir=" + dir_ + "/bert --num_shards=2 --dupe_factor=2");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_TRUE(testing::FileExists(dir_ + "/bert/train-00001-of-00002.tfrecord"));
}

// BERT's two phases from one command: --max_seq_length=128,512-style lists write one set per
// length in --output_dir/seq<N>/, each byte-identical to a run for that length alone; the
// lists must pair up.
TEST_F(PrepareCommandsTest, TwoSequenceLengthsInOneRun) {
  std::string vocab = testing::CachePath("vocab.txt");
  HR_SKIP_WITHOUT_BUNDLED(vocab);
  const std::string common = "prepare-bert --input_file=" + text_ + " --valid_file=" + text_ +
                             " --vocab_file=" + vocab + " --num_shards=2 --dupe_factor=3";
  Result both = Headroom(common + " --output_dir=" + dir_ +
                         "/both --max_seq_length=16,32 --max_predictions_per_seq=3,6");
  ASSERT_EQ(both.exit_code, 0) << both.stderr_text;
  for (int len : {16, 32}) {
    const std::string alone = dir_ + "/alone" + std::to_string(len);
    Result r =
        Headroom(common + " --output_dir=" + alone + " --max_seq_length=" + std::to_string(len) +
                 " --max_predictions_per_seq=" + std::to_string(len == 16 ? 3 : 6));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    for (const char* shard :
         {"train-00000-of-00002", "train-00001-of-00002", "valid-00000-of-00001"}) {
      auto a = ReadFile(dir_ + "/both/seq" + std::to_string(len) + "/" + shard + ".tfrecord");
      auto b = ReadFile(alone + "/" + shard + ".tfrecord");
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_FALSE(a->empty());
      EXPECT_TRUE(*a == *b) << "seq" << len << "/" << shard << " differs from a run of its own";
    }
  }
  ExpectOneLineError(Headroom(common + " --output_dir=" + dir_ +
                              "/bad --max_seq_length=16,32 --max_predictions_per_seq=3"),
                     "one per length");
  ExpectOneLineError(Headroom(common + " --output_dir=" + dir_ + "/bad --max_seq_length=16,x"),
                     "--max_seq_length=16,x");
}

// Data preparation on every core gives the same shards: prepare-lm and prepare-bert with 1 and
// with several workers (tokenizing; prepare-bert also building its chunks' instances) write
// identical bytes; SentencePiece, trained on a sample of
// --input_sentence_size sentences (drawn with its own fixed seed), trains the same model each
// time, and another one on another sample size.
TEST_F(PrepareCommandsTest, OutputIsTheSameForAnyNumberOfWorkers) {
  const std::string corpus = testing::CachePath("corpus/valid.txt");
  const std::string vocab = testing::CachePath("vocab.txt");
  HR_SKIP_WITHOUT_BUNDLED(corpus);
  HR_SKIP_WITHOUT_BUNDLED(vocab);
  auto same = [](const std::string& a, const std::string& b) {
    auto x = ReadFile(a), y = ReadFile(b);
    EXPECT_TRUE(x.ok()) << a;
    EXPECT_TRUE(y.ok()) << b;
    return x.ok() && y.ok() && !x->empty() && *x == *y;
  };
  auto lm = [&](const std::string& out, int workers, int sentences) {
    return Headroom("prepare-lm --input_file=" + corpus + " --spm_model=" + out +
                    "/lm.model --output_dir=" + out +
                    " --vocab_size=500 --max_length=64 --pack --num_shards=2 "
                    "--input_sentence_size=" +
                    std::to_string(sentences) + " --num_workers=" + std::to_string(workers));
  };
  for (const auto& [dir, workers, sentences] :
       {std::tuple{"lm1", 1, 2000}, std::tuple{"lm2", 2, 2000}, std::tuple{"lm3", 2, 3000}}) {
    Result r = lm(dir_ + "/" + dir, workers, sentences);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  }
  // lm.vocab: every piece and its score (lm.model also records the paths it was trained with).
  EXPECT_TRUE(same(dir_ + "/lm1/lm.vocab", dir_ + "/lm2/lm.vocab"));
  EXPECT_FALSE(same(dir_ + "/lm1/lm.vocab", dir_ + "/lm3/lm.vocab"))
      << "--input_sentence_size is not used";
  for (const char* shard : {"/train-00000-of-00002.tfrecord", "/train-00001-of-00002.tfrecord"}) {
    EXPECT_TRUE(same(dir_ + "/lm1" + shard, dir_ + "/lm2" + shard)) << shard;
  }
  // prepare-bert builds its chunks' instances on the workers too: 5-document chunks (the
  // corpus's 36 documents make 8), both of BERT's length sets, 1 and 3 workers; and the chunks
  // draw their own numbers (a 1-chunk run of the same input writes other instances).
  auto bert = [&](const std::string& out, int workers, int chunk_documents) {
    return Headroom("prepare-bert --input_file=" + corpus + " --vocab_file=" + vocab +
                    " --output_dir=" + out + " --num_shards=2 --dupe_factor=2" +
                    " --max_seq_length=64,128 --max_predictions_per_seq=10,20" +
                    " --chunk_documents=" + std::to_string(chunk_documents) +
                    " --num_workers=" + std::to_string(workers));
  };
  for (const auto& [dir, workers, chunk_documents] :
       {std::tuple{"bert1", 1, 5}, std::tuple{"bert3", 3, 5}, std::tuple{"bert_one", 3, 100}}) {
    Result r = bert(dir_ + "/" + dir, workers, chunk_documents);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  }
  for (const char* set : {"/seq64", "/seq128"}) {
    for (const char* shard : {"/train-00000-of-00002.tfrecord", "/train-00001-of-00002.tfrecord"}) {
      const std::string name = std::string(set) + shard;
      EXPECT_TRUE(same(dir_ + "/bert1" + name, dir_ + "/bert3" + name)) << name;
      EXPECT_FALSE(same(dir_ + "/bert1" + name, dir_ + "/bert_one" + name)) << name;
    }
  }
}

}  // namespace
}  // namespace headroom
