// `headroom finetune` and `headroom export` through the binary: a classification run on a tiny
// checkpoint written here ends with one `accuracy=` line; the fine-tuned checkpoint exports as
// safetensors plus a config.json naming BertForSequenceClassification; bad flags are one line
// on stderr with a non-zero exit.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/file.h"
#include "config/load.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/transformer.h"
#include "tests/data/text_test_util.h"
#include "tests/tools/run_headroom.h"
#include "trainer/checkpoint.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

using Output = testing::HeadroomOutput;

Output Headroom(const std::string& dir, const std::string& args) {
  return testing::RunHeadroom(dir, args);
}

// A tiny BERT checkpoint with random weights and its vocabulary; returns the run directory.
std::string TinyCheckpoint(const std::string& dir) {
  const std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                          "good",  "bad",   "film",  "very",  "a"};
  std::string text;
  for (const std::string& t : vocab) text += t + "\n";
  EXPECT_TRUE(WriteFileAtomically(dir + "/vocab.txt", text).ok());
  auto c = ParseConfig(
      "model { objective: BERT vocab_size: 10 max_positions: 16 type_vocab_size: 2 "
      "num_layers: 1 d_model: 8 num_heads: 2 head_size: 6 ffn_size: 16 } "
      "data { seq_length: 16 vocab_file: '" +
          dir + "/vocab.txt' } train { steps: 1 global_batch_size: 1 }",
      "tiny");
  EXPECT_TRUE(c.ok()) << c.status();
  CpuOps<float> ops(1);
  auto model = Model<float>::Create(c->model(), &ops, {1, 4, 1}).value();
  model->InitParameters(5);
  TrainerState st;
  google::protobuf::TextFormat::PrintToString(*c, &st.config_text);
  const std::vector<float> params = model->GetParameters();
  EXPECT_TRUE(
      SaveCheckpoint(dir + "/pretrain", model->layout(), params.data(), nullptr, nullptr, st, 1)
          .ok());
  return dir + "/pretrain";
}

TEST(FineTuneCommand, ClassifiesThenExportsForHuggingFace) {
  const std::string dir = testing::MakeTempDir("finetune_cmd");
  const std::string ck = TinyCheckpoint(dir);
  ASSERT_TRUE(WriteFileAtomically(dir + "/train.tsv",
                                  "sentence\tlabel\na good film\tpos\na bad film\tneg\n"
                                  "very good\tpos\nvery bad\tneg\n")
                  .ok());
  Output r =
      Headroom(dir, "finetune --task=classify --init_checkpoint=" + ck + " --train_file=" + dir +
                        "/train.tsv --dev_file=" + dir + "/train.tsv --output_dir=" + dir +
                        "/out --set finetune.train_batch_size=2 --set finetune.max_seq_length=8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("step 6/6 |"));  // int(4 / 2 * 3) steps, logged with an ETA
  EXPECT_THAT(r.out, HasSubstr("ETA"));
  const std::string last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  EXPECT_THAT(last, MatchesRegex("accuracy=[01]\\.[0-9]{4}\n"));

  r = Headroom(dir,
               "export --checkpoint " + dir + "/out --output " + dir + "/hf/model.safetensors");
  ASSERT_NE(r.exit_code, 0);  // the directory does not exist
  ASSERT_EQ(std::system(("mkdir -p " + dir + "/hf").c_str()), 0);
  r = Headroom(dir,
               "export --checkpoint " + dir + "/out --output " + dir + "/hf/model.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto config = ReadFile(dir + "/hf/config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_THAT(*config, HasSubstr("\"BertForSequenceClassification\""));
  EXPECT_THAT(*config, HasSubstr("\"head_size\": 6"));
  EXPECT_THAT(*config, HasSubstr("\"neg\""));
}

TEST(FineTuneCommand, BadFlagsAreOneLine) {
  const std::string dir = testing::MakeTempDir("finetune_cmd");
  Output r = Headroom(dir, "finetune --task=glue --output_dir=" + dir + "/out");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "headroom finetune: --task: unknown task 'glue'; use squad, mnli or classify\n");
  r = Headroom(dir, "finetune --task=squad --output_dir=" + dir + "/out --train_file=x.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--init_checkpoint is required"));
  r = Headroom(dir, "finetune --task=squad --set finetune.doc_stride=0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "headroom finetune: --set: finetune.doc_stride: must be > 0 (got 0)\n");
}

}  // namespace
}  // namespace headroom
