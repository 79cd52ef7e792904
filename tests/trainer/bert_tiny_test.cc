// A tiny BERT trained for a few hundred steps on the bundled corpus learns more than token
// frequencies: its masked-LM accuracy on held-out documents beats the frequency baseline, the
// accuracy of always predicting the most frequent masked token of those same evaluation examples
// (counted here from the shards, independently of the trainer).
//
// Data: corpus/valid.txt (scripts/fetch-data: 36 held-out documents) split by document into a
// training slice (documents 7..29, Brown) and an evaluation slice (documents 30..35, Brown),
// turned into shards by WriteBertShards, the function `headroom prepare-bert` runs (sequence 64,
// 10 masked positions). The vocabulary is the first 8000 entries of the bundled bert-base-uncased
// vocab.txt (special tokens, single characters and the commonest words and pieces; the rest
// tokenizes to pieces or [UNK]): the masked-LM decoder over 30522 ids would cost most of a CPU
// step, and this test has well under a minute.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "config/load.h"
#include "data/bert_pretraining_data.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "data/wordpiece_tokenizer.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"
#include "trainer/trainer.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

constexpr char kConfig[] = R"pb(
  name: "bert_tiny"
  model {
    objective: BERT
    vocab_size: 8000
    max_positions: 64
    type_vocab_size: 2
    num_layers: 2
    d_model: 64
    num_heads: 4
    head_size: 32  # fixed head size: d/h would be 16
    ffn_size: 256
    hidden_dropout: 0
    attention_dropout: 0
  }
  data { seq_length: 64 max_predictions_per_seq: 10 }
  train {
    steps: 500
    global_batch_size: 16
    optimizer { type: ADAMW weight_decay: 0.01 max_grad_norm: 1.0 bias_correction: true }
    schedule { type: LINEAR_WARMUP_LINEAR_DECAY learning_rate: 2e-3 warmup_steps: 50 }
    log_every: 0
    eval_every: 0
    checkpoint_every: 0
  }
)pb";

// Splits the pre-training text form into documents (blank-line separated).
std::vector<std::string> Documents(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> docs;
  std::string line, doc;
  while (std::getline(in, line)) {
    if (line.empty()) {
      if (!doc.empty()) docs.push_back(doc);
      doc.clear();
    } else {
      doc += line + "\n";
    }
  }
  if (!doc.empty()) docs.push_back(doc);
  return docs;
}

void WriteDocuments(const std::string& path, const std::vector<std::string>& docs, size_t begin,
                    size_t end) {
  std::ofstream out(path);
  for (size_t i = begin; i < end; ++i) out << docs[i] << "\n";
}

// The accuracy of always predicting the most frequent masked token, over the weighted masked
// positions of the first `sequences` examples of `files` in file order (as the evaluation reads
// them).
double FrequencyBaseline(std::vector<std::string> files, int64_t sequences) {
  std::sort(files.begin(), files.end());
  std::map<int64_t, int64_t> counts;
  int64_t total = 0, seen = 0;
  for (const std::string& file : files) {
    auto reader = RecordReader::Open(file);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return 1.0;
    std::string record;
    tf::Example e;
    while (seen < sequences) {
      const RecordLocation where{file, (*reader)->record_index(), (*reader)->offset()};
      auto more = (*reader)->ReadNext(&record);
      EXPECT_TRUE(more.ok()) << more.status();
      if (!more.ok() || !*more) break;
      EXPECT_TRUE(ParseExample(record, where, &e).ok());
      auto ids = GetInt64Feature(e, "masked_lm_ids", where);
      auto weights = GetFloatFeature(e, "masked_lm_weights", where);
      EXPECT_TRUE(ids.ok() && weights.ok());
      if (!ids.ok() || !weights.ok()) return 1.0;
      for (size_t i = 0; i < ids->size(); ++i) {
        if ((*weights)[i] > 0) {
          ++counts[(*ids)[i]];
          ++total;
        }
      }
      ++seen;
    }
  }
  EXPECT_EQ(seen, sequences);
  int64_t best = 0;
  for (const auto& [id, n] : counts) best = std::max(best, n);
  return total > 0 ? static_cast<double>(best) / static_cast<double>(total) : 1.0;
}

TEST(BertTinyTest, MaskedLmAccuracyBeatsTheFrequencyBaseline) {
  const std::string vocab = testing::CachePath("vocab.txt");
  const std::string corpus = testing::CachePath("corpus/valid.txt");
  HR_SKIP_WITHOUT_BUNDLED(vocab);
  HR_SKIP_WITHOUT_BUNDLED(corpus);
  const std::string dir = testing::MakeTempDir("bert_tiny");
  ASSERT_FALSE(dir.empty());

  {
    std::ifstream in(vocab);
    std::ofstream out(dir + "/vocab8000.txt");
    std::string line;
    for (int i = 0; i < 8000 && std::getline(in, line); ++i) out << line << "\n";
  }
  std::vector<std::string> docs = Documents(corpus);
  ASSERT_EQ(docs.size(), 36u);
  WriteDocuments(dir + "/train.txt", docs, 7, 30);
  WriteDocuments(dir + "/eval.txt", docs, 30, 36);

  auto tok = WordPieceTokenizer::FromFile(dir + "/vocab8000.txt");
  ASSERT_TRUE(tok.ok()) << tok.status();
  BertDataOptions o;
  o.max_seq_length = 64;
  o.max_predictions_per_seq = 10;
  o.dupe_factor = 2;
  ASSERT_TRUE(WriteBertShards({dir + "/train.txt"}, *tok, o, dir, "train", 2).ok());
  o.dupe_factor = 1;
  auto eval_stats = WriteBertShards({dir + "/eval.txt"}, *tok, o, dir, "eval", 1);
  ASSERT_TRUE(eval_stats.ok()) << eval_stats.status();

  auto config = ParseConfig(kConfig, "bert_tiny.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  TrainOptions t;
  t.config = *config;
  t.run_dir = dir + "/run";
  t.train_files = dir + "/train-*.tfrecord";
  t.console = nullptr;
  auto trained = Train(t);
  ASSERT_TRUE(trained.ok()) << trained.status();

  auto e = EvaluateCheckpoint(t.run_dir, dir + "/eval-*.tfrecord", /*batches=*/1000,
                              /*batch_size=*/32, DeviceKind::kCpu);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_GT(e->sequences, 200);
  const double baseline = FrequencyBaseline(ShardPaths(dir, "eval", 1), e->sequences);
  std::printf("masked-LM accuracy %.4f, frequency baseline %.4f, over %lld held-out sequences\n",
              e->mlm_accuracy, baseline, static_cast<long long>(e->sequences));
  EXPECT_GT(baseline, 0.02);  // "the", "," and "." are each 4-5% of masked tokens
  EXPECT_GT(e->mlm_accuracy, baseline + 0.01)
      << "masked-LM accuracy " << e->mlm_accuracy << " vs the frequency baseline " << baseline;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace headroom
