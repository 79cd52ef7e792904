// `headroom inspect` through the binary: a shard written here with known features is printed
// feature by feature (kinds, lengths, values, trailing padding as a count, token ids as text
// with --vocab, the record count), and a damaged shard gives one line naming the file and the
// record, with a non-zero exit.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/file.h"
#include "data/example_io.h"
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

Output Inspect(const std::string& dir, const std::string& args) {
  const std::string out = dir + "/stdout.txt", err = dir + "/stderr.txt";
  const std::string cmd =
      std::string(HEADROOM_BINARY) + " inspect " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  auto o = ReadFile(out);
  auto e = ReadFile(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, o.ok() ? *o : "", e.ok() ? *e : ""};
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

}  // namespace
}  // namespace headroom
