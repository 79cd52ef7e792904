// `headroom inspect` through the binary: a shard written here with known features is printed
// feature by feature (kinds, lengths, values, trailing padding as a count, token ids as text
// with --vocab, the record count), and a damaged shard gives one line naming the file and the
// record, with a non-zero exit. LM shards written by `headroom prepare-lm` decode, with its
// SentencePiece model, to the sentences of the input text. `--write_index` writes the index of
// a shard that has none (as shards from other tools) and refuses a damaged shard.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/file.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "data/record_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Output {
  int exit_code;
  std::string out, err;
};

// Runs `headroom ARGS` (a command and its arguments).
Output Headroom(const std::string& dir, const std::string& args) {
  const std::string out = dir + "/stdout.txt", err = dir + "/stderr.txt";
  const std::string cmd = std::string(HEADROOM_BINARY) + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  auto o = ReadFile(out);
  auto e = ReadFile(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, o.ok() ? *o : "", e.ok() ? *e : ""};
}

Output Inspect(const std::string& dir, const std::string& args) {
  return Headroom(dir, "inspect " + args);
}

void WriteText(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Two records: BERT-like token ids with padding, weights, a label and a bytes feature.
std::string WriteShard(const std::string& dir) {
  const std::string path = dir + "/train-00000-of-00001.tfrecord";
  auto writer = RecordWriter::Create(path);
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (int r = 0; r < 2; ++r) {
    tf::Example e;
    SetInt64Feature(&e, "input_ids", std::vector<int64_t>{2, 5 + r, 6, 3, 0, 0, 0, 0, 0, 0});
    SetFloatFeature(&e, "masked_lm_weights", std::vector<float>{1.0f, 0.5f});
    SetInt64Feature(&e, "next_sentence_labels", std::vector<int64_t>{r});
    SetBytesFeature(&e, "note", std::vector<std::string>{"a \"quoted\" word"});
    std::string payload;
    EXPECT_TRUE(e.SerializeToString(&payload));
    EXPECT_TRUE((*writer)->Write(payload).ok());
  }
  EXPECT_TRUE((*writer)->Close().ok());
  return path;
}

TEST(InspectCommandTest, PrintsEveryFeatureWithTokensAsText) {
  const std::string dir = testing::MakeTempDir("inspect_cmd");
  const std::string shard = WriteShard(dir);
  const std::string vocab = dir + "/vocab.txt";
  FILE* f = std::fopen(vocab.c_str(), "w");
  std::fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n", f);
  std::fclose(f);

  Output r = Inspect(dir, shard + " --vocab=" + vocab + " --limit=0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("4 features"));
  EXPECT_THAT(r.out, HasSubstr("input_ids"));
  EXPECT_THAT(r.out, HasSubstr("int64[10]"));
  // Trailing zeros (padding) as a count, and the ids as vocab tokens.
  EXPECT_THAT(r.out, HasSubstr("2 5 6 3 (then 6 zeros)"));
  EXPECT_THAT(r.out, HasSubstr("[CLS] hello world [SEP] (then 6 x [PAD])"));
  EXPECT_THAT(r.out, HasSubstr("[CLS] world world [SEP]"));  // record 1: id 6 twice
  EXPECT_THAT(r.out, HasSubstr("float[2]"));
  EXPECT_THAT(r.out, HasSubstr("1 0.5"));
  EXPECT_THAT(r.out, HasSubstr("bytes[1]"));
  EXPECT_THAT(r.out, HasSubstr("\"a \\\"quoted\\\" word\""));
  EXPECT_THAT(r.out, HasSubstr("2 records shown (end of file)"));
  EXPECT_TRUE(r.err.empty()) << r.err;

  // --limit stops early and says so.
  r = Inspect(dir, shard + " --limit=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 record shown (--limit=1)"));
  EXPECT_THAT(r.out, Not(HasSubstr("as text")));  // no --vocab: ids only
}

TEST(InspectCommandTest, ADamagedShardIsOneLineNamingFileAndRecord) {
  const std::string dir = testing::MakeTempDir("inspect_cmd_bad");
  const std::string shard = WriteShard(dir);
  auto bytes = ReadFile(shard);
  ASSERT_TRUE(bytes.ok());
  std::string damaged = *bytes;
  damaged[damaged.size() - 3] ^= 0x40;  // inside the second record's payload or its CRC
  const std::string bad = dir + "/damaged.tfrecord";
  FILE* f = std::fopen(bad.c_str(), "wb");
  std::fwrite(damaged.data(), 1, damaged.size(), f);
  std::fclose(f);

  Output r = Inspect(dir, bad + " --limit=0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("damaged.tfrecord"));
  EXPECT_THAT(r.err, HasSubstr("record 1"));
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  // The intact first record was still printed before the error.
  EXPECT_THAT(r.out, HasSubstr("input_ids"));

  r = Inspect(dir, dir + "/missing.tfrecord");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("missing.tfrecord"));
}

// Sentences of a small vocabulary (so that a 60-piece model covers every character), one per
// line, in the order prepare-lm writes them to a single shard.
std::vector<std::string> Sentences() {
  const std::vector<std::string> words = {"the",   "quiet", "river", "runs",  "past", "old",
                                          "stone", "house", "where", "birds", "sing", "by",
                                          "green", "field", "near",  "sea",   "town", "and"};
  std::vector<std::string> out;
  uint32_t x = 12345;
  for (int s = 0; s < 300; ++s) {
    std::string line;
    const int n = 4 + s % 7;
    for (int w = 0; w < n; ++w) {
      x = x * 1103515245u + 12345u;
      line += (w ? " " : "") + words[(x >> 16) % words.size()];
    }
    line[0] = static_cast<char>(line[0] - 'a' + 'A');
    out.push_back(line + ".");
  }
  return out;
}

TEST(InspectCommandTest, SentencePieceShardsDecodeToTheirSentences) {
  const std::string dir = testing::MakeTempDir("inspect_cmd_spm");
  std::string text;
  for (const std::string& s : Sentences()) text += s + "\n";
  WriteText(dir + "/in.txt", text);
  Output r = Headroom(dir, "prepare-lm --input_file=" + dir + "/in.txt --spm_model=" + dir +
                               "/lm.model --vocab_size=60 --output_dir=" + dir +
                               "/lm --num_shards=1 --progress=false");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string shard = dir + "/lm/train-00000-of-00001.tfrecord";

  // One sentence per example, ended by </s>: each decodes to its input line.
  r = Inspect(dir, "--spm_model=" + dir + "/lm.model --limit=3 " + shard);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(r.out, HasSubstr("as text    " + Sentences()[i] + " </s>\n")) << r.out;
  }
  EXPECT_THAT(r.out, Not(HasSubstr("as text    " + Sentences()[3])));  // --limit=3
  // The model as a config's data.vocab_file names it, through --vocab: the same output.
  Output same = Inspect(dir, "--vocab=" + dir + "/lm.model --limit=3 " + shard);
  EXPECT_EQ(same.out, r.out);

  // Packed examples show each sentence end; zero padding is counted as <pad>.
  tf::Example e;
  const std::string packed = dir + "/packed.tfrecord";
  {
    absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(shard);
    ASSERT_TRUE(reader.ok());
    std::vector<int64_t> ids;
    std::string record;
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE((*reader)->ReadNext(&record).ok());
      ASSERT_TRUE(ParseExample(record, RecordLocation{shard, i, 0}, &e).ok());
      auto v = GetInt64Feature(e, "targets", RecordLocation{shard, i, 0});
      ASSERT_TRUE(v.ok());
      ids.insert(ids.end(), v->begin(), v->end());
    }
    ids.resize(ids.size() + 7, 0);
    SetInt64Feature(&e, "targets", ids);
    auto w = RecordWriter::Create(packed);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  r = Inspect(dir, "--spm_model=" + dir + "/lm.model " + packed);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("as text    " + Sentences()[0] + " </s> " + Sentences()[1] +
                               " </s> (then 7 x <pad>)"));

  // Bad flags: one line each, non-zero exit.
  r = Inspect(dir, "--spm_model=" + dir + "/in.txt " + shard);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("in.txt: expected a SentencePiece model"));
  r = Inspect(dir, "--spm_model=" + dir + "/lm.model --vocab=" + dir + "/lm.model " + shard);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("not both"));
  r = Inspect(dir, "--spm_model=" + dir + "/missing.model " + shard);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("missing.model"));
}

TEST(InspectCommandTest, WriteIndexIndexesAShardWithoutOneAndSkipsIndexesGivenWithShards) {
  const std::string dir = testing::MakeTempDir("inspect_cmd_index");
  const std::string shard = WriteShard(dir);
  const std::string index = shard + ".index";
  auto written = ReadFile(index);  // as RecordWriter wrote it
  ASSERT_TRUE(written.ok());
  ASSERT_EQ(std::remove(index.c_str()), 0);  // now like a shard from another tool

  Output r = Inspect(dir, "--write_index " + shard);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, index + ": 2 records indexed\n");
  auto rebuilt = ReadFile(index);
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_EQ(*rebuilt, *written);

  // A wildcard matches the shard and its index: the index is not read as a shard.
  r = Inspect(dir, dir + "/train-*");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 records shown (end of file)"));
  EXPECT_THAT(r.out, Not(HasSubstr(".index:")));

  // A damaged shard: one line naming it and the record, no index.
  auto bytes = ReadFile(shard);
  ASSERT_TRUE(bytes.ok());
  std::string damaged = *bytes;
  damaged[5] ^= 0x01;  // record 0's length
  WriteText(dir + "/damaged.tfrecord", damaged);
  r = Inspect(dir, "--write_index " + dir + "/damaged.tfrecord");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("damaged.tfrecord: record 0"));
  EXPECT_FALSE(ReadFile(dir + "/damaged.tfrecord.index").ok());
}

}  // namespace
}  // namespace headroom
