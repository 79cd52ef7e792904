// FineTune end to end on a tiny BERT checkpoint written here: a separable classification TSV is
// learnt; MNLI's dev files report matched and mismatched accuracy; SQuAD writes official
// predictions that are substrings of their contexts and scores them with the official metric;
// a resumed run reproduces an uninterrupted run's losses bit for bit, and falls back past a
// damaged newest checkpoint with a warning; long texts read in windows
// (finetune.long_text_windows) are classified by what lies beyond the first window, which
// truncation cannot see; initialising from
// Hugging Face-named safetensors (BertForPreTraining names, or a bare BertModel with
// LayerNorm gamma/beta) gives the same first-step loss as the headroom checkpoint; bad setups
// are one-line errors.
#include "finetune/finetune.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/file.h"
#include "config/load.h"
#include "finetune/squad_dataset.h"
#include "finetune/squad_metric.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/console_capture.h"
#include "tests/data/text_test_util.h"
#include "tests/finetune/finetune_test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/hugging_face.h"
#include "trainer/safetensors.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;
using testing::ClassifyTsv;
using ::testing::HasSubstr;
using testing::Write;
using testing::WriteTinyCheckpoint;

FineTuneOptions Options(const std::string& task, const std::string& init, const std::string& out,
                        const std::vector<std::string>& sets) {
  FineTuneOptions o;
  auto c = LoadFineTuneConfig("", task, sets);
  EXPECT_TRUE(c.ok()) << c.status();
  o.config = *c;
  o.init_checkpoint = init;
  o.output_dir = out;
  o.console = nullptr;
  return o;
}

TEST(FineTune, ClassifierLearnsASeparableTask) {
  const std::string dir = testing::MakeTempDir("finetune_classify");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(4));
  Write(dir + "/dev.tsv", ClassifyTsv(1));
  FineTuneOptions o = Options(
      "classify", ck, dir + "/out",
      {"finetune.max_seq_length=16", "finetune.train_batch_size=4", "finetune.learning_rate=1e-3",
       "finetune.num_train_epochs=20", "finetune.dropout=0", "finetune.log_every=100"});
  o.train_file = dir + "/train.tsv";
  o.dev_files = {dir + "/dev.tsv"};
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->total_steps, 80);  // int(16 / 4 * 20)
  EXPECT_EQ(r->last_step, 80);
  ASSERT_EQ(r->metrics.size(), 1u);
  EXPECT_EQ(r->metrics[0].first, "accuracy");
  EXPECT_EQ(r->metrics[0].second, 1.0);
  EXPECT_EQ(r->ResultLine(), "accuracy=1.0000");
  // The last epoch's mean loss is well below the first's (ln 2 = 0.69 at the start).
  double first = 0, last = 0;
  for (int i = 0; i < 4; ++i) first += r->losses[i] / 4, last += r->losses[76 + i] / 4;
  EXPECT_LT(last, 0.2 * first);
  EXPECT_TRUE(fs::exists(dir + "/out/checkpoints/step-00000080/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/out/eval_results.json"));
  // The checkpoint carries the head and the labels: it exports as a Hugging Face classifier.
  auto saved = LoadCheckpoint(dir + "/out/checkpoints/step-00000080");
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->config.finetune().labels_size(), 2);
  EXPECT_THAT(HuggingFaceConfigJson(saved->config), HasSubstr("BertForSequenceClassification"));
}

TEST(FineTune, MnliReportsMatchedAndMismatchedAccuracy) {
  const std::string dir = testing::MakeTempDir("finetune_mnli");
  const std::string ck = WriteTinyCheckpoint(dir, /*head_size=*/6);
  const std::string header =
      "index\tpromptID\tpairID\tgenre\tb1\tb2\tp1\tp2\tsentence1\tsentence2\tlabel1\tgold_label\n";
  std::string rows;
  const char* labels[] = {"entailment", "neutral", "contradiction"};
  for (int i = 0; i < 6; ++i) {
    rows += std::to_string(i) + "\t1\t1e\tfiction\t.\t.\t.\t.\tthe cat sat\tthe cat ran\t" +
            labels[i % 3] + "\t" + labels[i % 3] + "\n";
  }
  Write(dir + "/train.tsv", header + rows);
  Write(dir + "/dev_matched.tsv", header + rows);
  Write(dir + "/dev_mismatched.tsv", header + rows.substr(0, rows.find('\n') + 1));
  FineTuneOptions o = Options(
      "mnli", ck, dir + "/out",
      {"finetune.max_seq_length=16", "finetune.train_batch_size=3", "finetune.num_train_epochs=1"});
  o.train_file = dir + "/train.tsv";
  o.dev_files = {dir + "/dev_matched.tsv", dir + "/dev_mismatched.tsv"};
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->total_steps, 2);
  ASSERT_EQ(r->metrics.size(), 2u);
  EXPECT_EQ(r->metrics[0].first, "accuracy_matched");
  EXPECT_EQ(r->metrics[1].first, "accuracy_mismatched");
  // Six identical inputs with three labels: whatever the model predicts, 2 of 6 are right.
  EXPECT_DOUBLE_EQ(r->metrics[0].second, 2.0 / 6.0);
  EXPECT_THAT(r->ResultLine(), HasSubstr("accuracy_matched=0.3333 accuracy_mismatched="));
}

constexpr char kSquad[] = R"({"version": "1.1", "data": [{"title": "t", "paragraphs": [
  {"context": "The cat sat on the mat. A dog ran on the rug.",
   "qas": [{"id": "q1", "question": "Who sat?", "answers": [{"text": "The cat", "answer_start": 0}]},
           {"id": "q2", "question": "Where ran a dog?",
            "answers": [{"text": "the rug", "answer_start": 38}]}]},
  {"context": "A red cat ran. The blue dog sat.",
   "qas": [{"id": "q3", "question": "What ran?", "answers": [{"text": "red cat", "answer_start": 2}]},
           {"id": "q4", "question": "Who sat?",
            "answers": [{"text": "The blue dog", "answer_start": 15}]}]}]}]})";

TEST(FineTune, SquadWritesOfficialPredictionsAndScoresThem) {
  const std::string dir = testing::MakeTempDir("finetune_squad");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.json", kSquad);
  // Windows of 16 - |query| - 3 tokens every 4: both contexts span several windows.
  FineTuneOptions o = Options(
      "squad", ck, dir + "/out",
      {"finetune.max_seq_length=16", "finetune.max_query_length=5", "finetune.doc_stride=4",
       "finetune.train_batch_size=2", "finetune.num_train_epochs=2", "finetune.eval_batch_size=3"});
  o.train_file = dir + "/train.json";
  o.dev_files = {dir + "/train.json"};
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->total_steps, 4);  // int(4 examples / 2 * 2 epochs), windows not counted
  ASSERT_EQ(r->metrics.size(), 2u);
  EXPECT_EQ(r->metrics[0].first, "exact_match");
  EXPECT_EQ(r->predictions_file, dir + "/out/predictions.json");
  auto predictions = ReadSquadPredictions(r->predictions_file);
  ASSERT_TRUE(predictions.ok()) << predictions.status();
  auto dataset = ParseSquadDataset(kSquad, "train.json");
  ASSERT_TRUE(dataset.ok());
  for (const SquadParagraph& p : dataset->paragraphs) {
    for (const SquadQuestion& q : p.questions) {
      ASSERT_TRUE(predictions->contains(q.id)) << q.id;
      const std::string& text = predictions->at(q.id);
      EXPECT_FALSE(text.empty());
      EXPECT_NE(p.context.find(text), std::string::npos) << q.id << ": '" << text << "'";
    }
  }
  // The reported figures are the official metric of the written file.
  auto m = EvaluateSquad(*dataset, *predictions);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(r->metrics[0].second, m->exact_match);
  EXPECT_EQ(r->metrics[1].second, m->f1);
}

TEST(FineTune, ResumedRunReproducesTheUninterruptedLosses) {
  const std::string dir = testing::MakeTempDir("finetune_resume");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(2));
  const std::vector<std::string> sets = {
      "finetune.max_seq_length=16", "finetune.train_batch_size=4", "finetune.micro_batch_size=2",
      "finetune.num_train_epochs=3"};
  FineTuneOptions whole = Options("classify", ck, dir + "/whole", sets);
  whole.train_file = dir + "/train.tsv";
  absl::StatusOr<FineTuneResult> a = FineTune(whole);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->losses.size(), 6u);  // int(8 / 4 * 3)

  FineTuneOptions part = Options("classify", ck, dir + "/part", sets);
  part.train_file = dir + "/train.tsv";
  part.max_steps = 4;  // stops (and checkpoints) after step 4 of 6
  absl::StatusOr<FineTuneResult> b = FineTune(part);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->losses.size(), 4u);
  absl::StatusOr<FineTuneResult> again = FineTune(part);  // no --resume: refused
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), HasSubstr("pass --resume"));
  part.resume = true;
  part.max_steps = 0;
  part.init_checkpoint = "";  // not needed when resuming
  ::testing::internal::CaptureStderr();
  absl::StatusOr<FineTuneResult> c = FineTune(part);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "the same settings: no warning";
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->first_step, 4);
  ASSERT_EQ(c->losses.size(), 2u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(b->losses[i], a->losses[i]) << i;
  for (int i = 0; i < 2; ++i) EXPECT_EQ(c->losses[i], a->losses[4 + i]) << 4 + i;
}

// A resumed run keeps its checkpoint's settings (its schedule was planned from them); settings
// given now that differ are named in one warning, not dropped silently.
TEST(FineTune, ResumeNamesTheSettingsItIgnores) {
  const std::string dir = testing::MakeTempDir("finetune_resume_settings");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(2));
  std::vector<std::string> sets = {"finetune.max_seq_length=16", "finetune.train_batch_size=4",
                                   "finetune.num_train_epochs=3"};
  FineTuneOptions part = Options("classify", ck, dir + "/out", sets);
  part.train_file = dir + "/train.tsv";
  part.max_steps = 2;
  ASSERT_TRUE(FineTune(part).ok());
  sets[2] = "finetune.num_train_epochs=5";
  sets.push_back("finetune.log_every=7");
  FineTuneOptions more = Options("classify", "", dir + "/out", sets);
  more.train_file = dir + "/train.tsv";
  more.resume = true;
  ::testing::internal::CaptureStderr();
  absl::StatusOr<FineTuneResult> r = FineTune(more);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(err, HasSubstr("resumes with its checkpoint's settings; ignored: "));
  EXPECT_THAT(err, HasSubstr("finetune.num_train_epochs=5 (checkpoint: 3)"));
  EXPECT_THAT(err, HasSubstr("finetune.log_every=7 (checkpoint: 10)"));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(r->last_step, 6) << "int(8 / 4 * 3): the checkpoint's 3 epochs";
}

// The newest checkpoint of the run is damaged (a byte of its weights flipped: its CRC32C no
// longer matches the manifest): --resume warns, naming it, and continues from the one before,
// reproducing the uninterrupted run's losses from there.
TEST(FineTune, ResumeFallsBackPastADamagedNewestCheckpoint) {
  const std::string dir = testing::MakeTempDir("finetune_resume_damaged");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(2));
  const std::vector<std::string> sets = {
      "finetune.max_seq_length=16", "finetune.train_batch_size=4", "finetune.num_train_epochs=3",
      "finetune.checkpoint_every=2", "finetune.keep_checkpoints=5"};
  FineTuneOptions whole = Options("classify", ck, dir + "/whole", sets);
  whole.train_file = dir + "/train.tsv";
  absl::StatusOr<FineTuneResult> a = FineTune(whole);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->losses.size(), 6u);

  FineTuneOptions part = Options("classify", ck, dir + "/part", sets);
  part.train_file = dir + "/train.tsv";
  part.max_steps = 4;  // checkpoints after steps 2 and 4
  ASSERT_TRUE(FineTune(part).ok());
  const std::string newest = dir + "/part/checkpoints/step-00000004";
  ASSERT_TRUE(fs::exists(newest + "/model.safetensors"));
  {
    std::fstream f(newest + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-5, std::ios::end);
    char c = 0;
    f.get(c);
    f.seekp(-5, std::ios::end);
    f.put(static_cast<char>(c ^ 0x40));
  }
  part.resume = true;
  part.max_steps = 0;
  part.init_checkpoint = "";
  ::testing::internal::CaptureStderr();
  absl::StatusOr<FineTuneResult> c = FineTune(part);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(err, HasSubstr("warning: checkpoint " + newest + " is damaged, skipped: "));
  EXPECT_THAT(err, HasSubstr("model.safetensors"));
  EXPECT_EQ(c->first_step, 2);
  EXPECT_EQ(c->last_step, 6);
  ASSERT_EQ(c->losses.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c->losses[i], a->losses[2 + i]) << 2 + i;
  // Step 4 was trained again and saved intact over the damaged one.
  EXPECT_TRUE(LoadCheckpoint(newest).ok());
}

// "a a a a a a cat" is good, "a a a a a a dog" bad: the first window of 4 tokens is "a a a a"
// for both. Truncated to it (run_classifier.py) the texts are indistinguishable (accuracy
// 0.5); read in windows of 4 every 2 (the last, "a a cat" / "a a dog", tells them apart) and
// predicted from the mean of the windows' logits, all are right.
// --resume on an output directory without checkpoints (a requeued job's first attempt) starts
// from --init_checkpoint and says so.
TEST(FineTune, ResumeWithNothingToResumeStartsAndSaysSo) {
  const std::string dir = testing::MakeTempDir("finetune_resume_fresh");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(2));
  FineTuneOptions o = Options("classify", ck, dir + "/out",
                              {"finetune.max_seq_length=16", "finetune.train_batch_size=4"});
  o.train_file = dir + "/train.tsv";
  o.resume = true;
  testing::ConsoleCapture console;
  ASSERT_NE(console.file(), nullptr);
  o.console = console.file();
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_step, 0);
  EXPECT_EQ(console.FirstLine(),
            "--resume: no checkpoint in " + dir + "/out yet; starting from --init_checkpoint\n");
}

// A dev file with a header and no rows is refused before the first step, naming the file, not
// after a whole fine-tuning.
TEST(FineTune, ADevFileWithoutExamplesIsRefusedBeforeTraining) {
  const std::string dir = testing::MakeTempDir("finetune_empty_dev");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(2));
  Write(dir + "/dev.tsv", "sentence\tlabel\n");
  FineTuneOptions o = Options("classify", ck, dir + "/out",
                              {"finetune.max_seq_length=16", "finetune.train_batch_size=4"});
  o.train_file = dir + "/train.tsv";
  o.dev_files = {dir + "/dev.tsv"};
  int steps = 0;
  o.on_step = [&steps](int64_t, double) { ++steps; };
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            dir + "/dev.tsv: no examples to evaluate; give --dev_file a file with examples");
  EXPECT_EQ(steps, 0);
}

TEST(FineTune, LongTextWindowsSeeBeyondTheFirstWindow) {
  const std::string dir = testing::MakeTempDir("finetune_windows");
  const std::string ck = WriteTinyCheckpoint(dir);
  std::string tsv = "sentence\tlabel\n";
  for (int i = 0; i < 4; ++i) tsv += "a a a a a a cat\tgood\na a a a a a dog\tbad\n";
  Write(dir + "/train.tsv", tsv);
  Write(dir + "/dev.tsv", "sentence\tlabel\na a a a a a cat\tgood\na a a a a a dog\tbad\n");
  const std::vector<std::string> common = {
      "finetune.max_seq_length=6",   "finetune.doc_stride=2",        "finetune.train_batch_size=4",
      "finetune.learning_rate=1e-3", "finetune.num_train_epochs=20", "finetune.dropout=0",
      "finetune.log_every=1000"};
  std::vector<std::string> sets = common;
  sets.push_back("finetune.long_text_windows=true");
  FineTuneOptions o = Options("classify", ck, dir + "/windows", sets);
  o.train_file = dir + "/train.tsv";
  o.dev_files = {dir + "/dev.tsv"};
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->total_steps, 120);  // 8 texts x 3 windows = 24 training examples: int(24 / 4 * 20)
  ASSERT_EQ(r->metrics.size(), 1u);
  EXPECT_EQ(r->metrics[0].second, 1.0);
  // The per-text predictions, one row per dev line.
  auto table = ReadFile(dir + "/windows/accuracy_predictions.tsv");
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(*table, "source\tlabel\tprediction\n" + dir + "/dev.tsv:2\tgood\tgood\n" + dir +
                        "/dev.tsv:3\tbad\tbad\n");

  FineTuneOptions t = Options("classify", ck, dir + "/truncated", common);
  t.train_file = dir + "/train.tsv";
  t.dev_files = {dir + "/dev.tsv"};
  r = FineTune(t);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->total_steps, 40);
  EXPECT_EQ(r->metrics[0].second, 0.5);  // both texts read as "a a a a": one label for both

  // Not for SQuAD or MNLI.
  auto squad = LoadFineTuneConfig("", "squad", {"finetune.long_text_windows=true"});
  ASSERT_FALSE(squad.ok());
  EXPECT_THAT(squad.status().message(), HasSubstr("finetune.long_text_windows"));
}

// The checkpoint's tensors as a bare BertModel file: no "bert." prefix, LayerNorm gamma/beta,
// no pre-training heads, stored as F32.
void WriteBertModelFile(const Checkpoint& ck, const std::string& path) {
  const ParameterLayout layout = ParameterLayout::ForExperiment(ck.config);
  SafeTensorsWriter w;
  std::vector<std::string> names;
  for (const TensorSpec& t : layout.tensors()) {
    if (t.name.rfind("bert.", 0) != 0) continue;
    std::string name = t.name.substr(5);
    const size_t ln = name.find("LayerNorm.");
    if (ln != std::string::npos) {
      name = name.substr(0, ln) + (name.ends_with("weight") ? "LayerNorm.gamma" : "LayerNorm.beta");
    }
    names.push_back(name);
    ASSERT_TRUE(w.AddF32(names.back(), t.shape, ck.params.data() + t.offset).ok());
  }
  ASSERT_TRUE(w.Write(path).ok());
}

TEST(FineTune, HuggingFaceInitGivesTheSameFirstStepLossAsTheCheckpoint) {
  for (int head_size : {0, 6}) {
    const std::string dir = testing::MakeTempDir("finetune_hf");
    const std::string ck = WriteTinyCheckpoint(dir, head_size);
    Write(dir + "/train.tsv", ClassifyTsv(2));
    auto loaded = LoadCheckpoint(ck, nullptr, false);
    ASSERT_TRUE(loaded.ok());
    // BertForPreTraining names (headroom export) and a bare BertModel, each with config.json
    // and vocab.txt beside it.
    fs::create_directories(dir + "/hf_pretraining");
    fs::create_directories(dir + "/hf_bertmodel");
    ASSERT_TRUE(ExportHuggingFace(*loaded, dir + "/hf_pretraining/model.safetensors").ok());
    WriteBertModelFile(*loaded, dir + "/hf_bertmodel/model.safetensors");
    for (const char* sub : {"/hf_pretraining/", "/hf_bertmodel/"}) {
      fs::copy_file(dir + "/vocab.txt", dir + sub + "vocab.txt");
    }
    fs::copy_file(dir + "/hf_pretraining/config.json", dir + "/hf_bertmodel/config.json");

    std::vector<double> first;
    for (const std::string& init :
         {ck, dir + "/hf_pretraining/model.safetensors", dir + "/hf_bertmodel/model.safetensors"}) {
      FineTuneOptions o = Options("classify", init, dir + "/out" + std::to_string(first.size()),
                                  {"finetune.max_seq_length=16", "finetune.train_batch_size=4"});
      o.train_file = dir + "/train.tsv";
      o.max_steps = 1;
      absl::StatusOr<FineTuneResult> r = FineTune(o);
      ASSERT_TRUE(r.ok()) << init << ": " << r.status();
      first.push_back(r->losses.at(0));
    }
    EXPECT_EQ(first[1], first[0]) << "head_size " << head_size;
    EXPECT_EQ(first[2], first[0]) << "head_size " << head_size;
  }
}

TEST(FineTune, BadSetupsAreOneLineErrors) {
  const std::string dir = testing::MakeTempDir("finetune_errors");
  const std::string ck = WriteTinyCheckpoint(dir);
  Write(dir + "/train.tsv", ClassifyTsv(1));
  Write(dir + "/dev.tsv", "sentence\tlabel\nthe cat\tmaybe\n");
  FineTuneOptions o = Options("classify", ck, dir + "/out", {"finetune.max_seq_length=16"});
  o.train_file = dir + "/train.tsv";
  o.dev_files = {dir + "/dev.tsv"};
  absl::StatusOr<FineTuneResult> r = FineTune(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            dir + "/dev.tsv:2: label 'maybe' is not one of the task's labels (bad, good)");
  o.dev_files = {};
  o.init_checkpoint = dir + "/nowhere";
  r = FineTune(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nowhere"));
  // 4 examples cannot make a step of 32.
  o = Options("classify", ck, dir + "/out2", {"finetune.max_seq_length=16"});
  o.train_file = dir + "/train.tsv";
  r = FineTune(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("4 training examples make 0 steps of 32"));
  EXPECT_FALSE(LoadFineTuneConfig("", "", {}).ok());      // no task
  EXPECT_FALSE(LoadFineTuneConfig("", "glue", {}).ok());  // unknown task
  EXPECT_FALSE(LoadFineTuneConfig("", "squad", {"finetune.doc_stride=0"}).ok());
  // max_seq_length beyond the model's 64 positions is caught with the model.
  o = Options("classify", ck, dir + "/out3",
              {"finetune.max_seq_length=128", "finetune.train_batch_size=4"});
  o.train_file = dir + "/train.tsv";
  r = FineTune(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("finetune.max_seq_length"));
}

}  // namespace
}  // namespace headroom
