// The fine-tuning loop; see finetune.h for the recipe. One FineTuneRun holds everything a run
// needs: the start (init or resume), the task's data, the model and optimizer, then trains and
// evaluates.
#include "finetune/finetune.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/clock.h"
#include "base/file.h"
#include "base/splitmix.h"
#include "base/status_macros.h"
#include "comm/communicator.h"
#include "config/load.h"
#include "data/wordpiece_tokenizer.h"
#include "finetune/sentence_data.h"
#include "finetune/squad_dataset.h"
#include "finetune/squad_decode.h"
#include "finetune/squad_features.h"
#include "finetune/squad_metric.h"
#include "finetune/task_feature.h"
#include "google/protobuf/text_format.h"
#include "model/task_model.h"
#include "nlohmann/json.hpp"
#include "trainer/backend_status.h"
#include "trainer/checkpoint.h"
#include "trainer/data_parallel.h"
#include "trainer/hugging_face.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/rank_agreement.h"
#include "trainer/safetensors.h"
#include "trainer/schedule.h"
#include "trainer/training_backend.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

// The finetune.* settings of `given` (this command's) that differ from `saved` (the checkpoint's,
// which a resumed run keeps), each as "finetune.FIELD=GIVEN (checkpoint: SAVED)"; the two the run
// fills in itself (labels, vocab_file) aside.
std::vector<std::string> ChangedSettings(const FineTuneConfig& given, const FineTuneConfig& saved) {
  const google::protobuf::Descriptor* d = FineTuneConfig::descriptor();
  std::vector<std::string> changed;
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated() || f->name() == "vocab_file") continue;  // labels: from the data
    std::string a, b;
    google::protobuf::TextFormat::PrintFieldValueToString(given, f, -1, &a);
    google::protobuf::TextFormat::PrintFieldValueToString(saved, f, -1, &b);
    if (a != b) {
      changed.push_back(absl::StrCat("finetune.", f->name(), "=", a, " (checkpoint: ", b, ")"));
    }
  }
  return changed;
}

// A dev file without examples, found before training rather than after it.
absl::Status NoDevExamples(const std::string& path) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": no examples to evaluate; give --dev_file a file with examples"));
}

// The order of epoch `epoch` over n features: Fisher-Yates driven by SplitMix(seed, epoch)
// (base/splitmix.h: the same order on every platform).
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  SplitMix rng{seed * 0x2545F4914F6CDD1Dull + static_cast<uint64_t>(epoch) + 1};
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

// The initialisation: a model config, a default vocabulary, and the weights to copy by name.
struct Init {
  ModelConfig model;
  std::string vocab_file;
  std::string description;
  std::unique_ptr<SafeTensorsFile> hugging_face;  // or:
  std::unique_ptr<Checkpoint> checkpoint;
};

absl::StatusOr<Init> LoadInit(const std::string& path) {
  Init init;
  std::error_code ec;
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "--init_checkpoint is required: a headroom checkpoint or run directory, or a Hugging "
        "Face .safetensors file with config.json beside it");
  }
  if (fs::is_regular_file(path, ec)) {
    const fs::path dir = fs::path(path).parent_path();
    HR_ASSIGN_OR_RETURN(init.model, ReadHuggingFaceConfig((dir / "config.json").string()));
    HR_ASSIGN_OR_RETURN(SafeTensorsFile f, SafeTensorsFile::Read(path));
    init.hugging_face = std::make_unique<SafeTensorsFile>(std::move(f));
    init.vocab_file = (dir / "vocab.txt").string();
    init.description = absl::StrCat(path, " (Hugging Face)");
    return init;
  }
  HR_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpoint(path));
  HR_ASSIGN_OR_RETURN(Checkpoint ck, LoadCheckpoint(dir, nullptr, /*with_optimizer=*/false));
  if (ck.config.model().objective() != ModelConfig::BERT) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, " is a causal LM checkpoint; fine-tuning needs a BERT model"));
  }
  init.model = ck.config.model();
  init.vocab_file = ck.config.data().vocab_file();
  if (init.vocab_file.empty()) init.vocab_file = ck.config.finetune().vocab_file();
  init.description = absl::StrCat(dir, " (step ", ck.state.step, ")");
  init.checkpoint = std::make_unique<Checkpoint>(std::move(ck));
  return init;
}

// Copies the init's tensors into `params` (layout order, already initialised); returns the
// names of the tensors it did not have (kept as initialised).
absl::StatusOr<std::vector<std::string>> CopyInitWeights(const Init& init,
                                                         const ParameterLayout& layout,
                                                         std::vector<float>& params) {
  if (init.hugging_face) return CopyHuggingFaceWeights(*init.hugging_face, layout, params);
  const ParameterLayout source = ParameterLayout::ForExperiment(init.checkpoint->config);
  std::vector<std::string> absent;
  for (const TensorSpec& t : layout.tensors()) {
    const TensorSpec* s = source.Find(t.name);
    if (s == nullptr || s->shape != t.shape) {
      absent.push_back(t.name);  // a task head the checkpoint does not have (or another one)
      continue;
    }
    std::copy_n(init.checkpoint->params.begin() + s->offset, t.numel, params.begin() + t.offset);
  }
  return absent;
}

const char* TaskName(FineTuneConfig::Task task) {
  switch (task) {
    case FineTuneConfig::SQUAD:
      return "squad";
    case FineTuneConfig::MNLI:
      return "mnli";
    default:
      return "classify";
  }
}

// The dev metric's name for a classification dev file.
std::string AccuracyName(const std::string& path, bool mnli, size_t num_files) {
  const std::string stem = fs::path(path).stem().string();
  if (mnli && absl::StrContains(stem, "mismatched")) return "accuracy_mismatched";
  if (mnli && absl::StrContains(stem, "matched")) return "accuracy_matched";
  return num_files == 1 ? "accuracy" : absl::StrCat("accuracy_", stem);
}

struct SquadDev {
  std::string path;
  SquadDataset dataset;
  std::vector<SquadExample> examples;
  std::vector<SquadFeature> features;
};

struct SentenceDev {
  std::string path;
  std::string metric;
  std::vector<TaskFeature> features;
  // Per feature, its example (one feature per example unless finetune.long_text_windows).
  std::vector<int32_t> example_of_feature;
  std::vector<int32_t> labels;       // per example
  std::vector<std::string> sources;  // per example: "FILE:LINE"
};

// The features of `examples` (finetune.long_text_windows: every window of each) and, per
// feature, its example.
absl::StatusOr<SentenceWindows> ClassificationFeatures(const std::vector<SentenceExample>& examples,
                                                       const std::vector<std::string>& labels,
                                                       const WordPieceTokenizer& tokenizer,
                                                       const FineTuneConfig& f) {
  if (f.long_text_windows()) {
    return SentenceWindowFeatures(examples, labels, tokenizer, f.max_seq_length(), f.doc_stride());
  }
  SentenceWindows out;
  HR_ASSIGN_OR_RETURN(out.features,
                      SentenceFeatures(examples, labels, tokenizer, f.max_seq_length()));
  for (size_t i = 0; i < out.features.size(); ++i) {
    out.example_of_feature.push_back(static_cast<int32_t>(i));
  }
  return out;
}

class FineTuneRun {
 public:
  FineTuneRun(const FineTuneOptions& o, Communicator& comm)
      : o_(o),
        comm_(comm),
        rank_(comm.rank()),
        ranks_(comm.size()),
        lead_(comm.rank() == 0),
        console_(comm.rank() == 0 ? o.console : nullptr) {}

  absl::StatusOr<FineTuneResult> Run() {
    HR_RETURN_IF_ERROR(Prepare());
    HR_RETURN_IF_ERROR(Train());
    if (lead_) HR_RETURN_IF_ERROR(Evaluate());
    return result_;
  }

 private:
  absl::Status Prepare();
  absl::Status ResumeOrInit(const Init* init);
  absl::Status CreateModel();
  absl::Status StartOnAllRanks(std::vector<float>& params, std::vector<float>& m,
                               std::vector<float>& v, int64_t step);
  absl::Status LoadData();
  // LoadData's parts: the task's labels and training features; the dev sets; the step count.
  absl::Status LoadTrainingData();
  absl::Status LoadDevData();
  absl::Status PlanSteps();
  absl::Status BuildRunConfig(const ModelConfig& model, const std::string& vocab);
  absl::Status Train();
  absl::StatusOr<double> TrainStep(int64_t step);
  absl::Status Log(int64_t step, double loss_sum, int64_t steps, Clock::time_point since);
  std::vector<const TaskFeature*> Rows(int64_t first, int64_t count);
  absl::Status SaveAt(int64_t step, double loss);
  absl::Status Evaluate();
  absl::Status EvaluateSquad(const SquadDev& dev);
  absl::Status EvaluateSentences(const SentenceDev& dev);
  // Sequences per forward on this rank: finetune.micro_batch_size, or the rank's whole share.
  int MicroBatch() const {
    const TrainConfig& t = config_.train();
    return t.micro_batch_size() > 0 ? t.micro_batch_size() : t.global_batch_size() / ranks_;
  }
  Communicator& HostComm() const { return data_parallel_->host_comm(); }
  void Say(const std::string& line) {
    if (console_ != nullptr) std::fprintf(console_, "%s\n", line.c_str());
  }

  const FineTuneOptions& o_;
  Communicator& comm_;
  const int rank_, ranks_;
  const bool lead_;
  FILE* console_;
  FineTuneResult result_;
  ExperimentConfig config_;  // the run's: model, data.seq_length, train, finetune
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::vector<TaskFeature> train_;
  int64_t train_examples_ = 0;  // what the step count counts (long_text_windows: windows)
  int64_t train_texts_ = 0;     // examples read from the training file
  std::vector<SquadDev> squad_dev_;
  std::vector<SentenceDev> sentence_dev_;
  std::unique_ptr<TrainingBackend> backend_;  // with FineTuneOptions::wrap_ops's wrapper (tests)
  Ops<float>* ops_ = nullptr;  // the fp32 backend: optimizer, reduction, checks (backend_->ops())
  std::unique_ptr<TaskModel<float>> model_;
  std::unique_ptr<DataParallel> data_parallel_;
  std::unique_ptr<Optimizer<float>> optimizer_;
  std::unique_ptr<LearningRateSchedule> schedule_;
  std::unique_ptr<MetricsLogger> metrics_;  // rank 0 only
  double last_grad_norm_ = 0;
  // The epoch order cached for Rows().
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

absl::Status FineTuneRun::Prepare() {
  const FineTuneConfig& f = o_.config.finetune();
  if (o_.output_dir.empty()) return absl::InvalidArgumentError("--output_dir is required");
  if (o_.train_file.empty() && o_.dev_files.empty()) {
    return absl::InvalidArgumentError("nothing to do: give --train_file and/or --dev_file");
  }
  if (f.task() == FineTuneConfig::SQUAD && o_.dev_files.size() > 1) {
    return absl::InvalidArgumentError("--dev_file: SQuAD takes one dev file (dev-v1.1.json)");
  }
  std::unique_ptr<Init> init;
  const bool has_checkpoints = !ListCheckpoints(o_.output_dir).empty();
  if (has_checkpoints && !o_.resume) {
    return absl::FailedPreconditionError(
        absl::StrCat(o_.output_dir,
                     " already holds checkpoints; pass --resume to continue that "
                     "run or choose another --output_dir"));
  }
  if (!has_checkpoints) {
    if (o_.resume) {  // a requeued job's first attempt
      Say(absl::StrCat("--resume: no checkpoint in ", o_.output_dir,
                       " yet; starting from --init_checkpoint"));
    }
    HR_ASSIGN_OR_RETURN(Init loaded, LoadInit(o_.init_checkpoint));
    init = std::make_unique<Init>(std::move(loaded));
  }
  return ResumeOrInit(init.get());
}

absl::Status FineTuneRun::BuildRunConfig(const ModelConfig& model, const std::string& vocab) {
  config_ = o_.config;
  config_.set_name(absl::StrCat("finetune_", TaskName(o_.config.finetune().task())));
  FineTuneConfig& f = *config_.mutable_finetune();
  *config_.mutable_model() = model;
  config_.mutable_model()->set_hidden_dropout(f.dropout());
  config_.mutable_model()->set_attention_dropout(f.dropout());
  config_.clear_data();
  config_.mutable_data()->set_seq_length(f.max_seq_length());
  config_.mutable_data()->set_vocab_file(vocab);
  f.set_vocab_file(vocab);
  TrainConfig& t = *config_.mutable_train();
  t.clear_phases();
  t.set_global_batch_size(f.train_batch_size());
  t.set_micro_batch_size(f.micro_batch_size());  // 0: the per-rank share
  t.set_seed(f.seed());
  t.mutable_schedule()->set_type(ScheduleConfig::LINEAR_WARMUP_LINEAR_DECAY);
  t.mutable_schedule()->set_learning_rate(f.learning_rate());
  FillDefaults(config_);
  return absl::OkStatus();
}

absl::Status FineTuneRun::ResumeOrInit(const Init* init) {
  std::unique_ptr<Checkpoint> resume;
  if (init == nullptr) {  // resuming: the checkpoint's config is the run's
    // The newest intact checkpoint: damaged newer ones are skipped, each with a warning.
    std::vector<std::string> warnings;
    absl::StatusOr<Checkpoint> loaded =
        LoadLatestIntactCheckpoint(o_.output_dir, /*expected=*/nullptr, &warnings);
    if (lead_) {
      for (const std::string& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
    HR_RETURN_IF_ERROR(loaded.status());
    Checkpoint& ck = *loaded;
    const std::string& dir = ck.dir;
    if (!ck.config.has_finetune() || ck.config.finetune().task() != o_.config.finetune().task()) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " is not a ", TaskName(o_.config.finetune().task()),
                       " fine-tuning checkpoint; choose another --output_dir"));
    }
    const std::vector<std::string> changed =
        ChangedSettings(o_.config.finetune(), ck.config.finetune());
    if (lead_ && !changed.empty()) {
      std::fprintf(stderr, "warning: %s resumes with its checkpoint's settings; ignored: %s\n",
                   o_.output_dir.c_str(), absl::StrJoin(changed, ", ").c_str());
    }
    config_ = ck.config;
    resume = std::make_unique<Checkpoint>(std::move(ck));
    Say(absl::StrCat("resuming from ", resume->dir, " (step ", resume->state.step, ")"));
  } else {
    HR_RETURN_IF_ERROR(BuildRunConfig(init->model, o_.config.finetune().vocab_file().empty()
                                                       ? init->vocab_file
                                                       : o_.config.finetune().vocab_file()));
  }
  // The finetune block first: its errors name finetune.* fields, not the data block it fills.
  HR_RETURN_IF_ERROR(ValidateFineTuneConfig(config_, o_.config_source));
  HR_RETURN_IF_ERROR(ValidateConfig(config_, o_.config_source));
  WordPieceOptions wo;
  wo.do_lower_case = config_.finetune().do_lower_case();
  HR_ASSIGN_OR_RETURN(WordPieceTokenizer tok,
                      WordPieceTokenizer::FromFile(config_.finetune().vocab_file(), wo));
  if (tok.vocab_size() > config_.model().vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_.finetune().vocab_file(), " has ", tok.vocab_size(), " tokens, the model ",
        config_.model().vocab_size(), "; set finetune.vocab_file to the model's vocabulary"));
  }
  tokenizer_ = std::make_unique<WordPieceTokenizer>(std::move(tok));
  HR_RETURN_IF_ERROR(LoadData());  // fills finetune.labels and the schedule's steps

  HR_RETURN_IF_ERROR(CreateModel());
  Model<float>& m = model_->model();
  std::vector<float> params, mo, vo;
  int64_t step = 0;
  if (resume) {
    params = std::move(resume->params);
    mo = std::move(resume->m);
    vo = std::move(resume->v);
    step = resume->state.step;
  } else {
    m.InitParameters(config_.finetune().seed());
    params = m.GetParameters();
    HR_RETURN_IF_ERROR(CheckBackend(*ops_, "initialising the parameters", 0));
    HR_ASSIGN_OR_RETURN(std::vector<std::string> absent,
                        CopyInitWeights(*init, m.layout(), params));
    std::vector<std::string> fresh;
    for (const std::string& name : absent) {
      if (!absl::StartsWith(name, "cls.")) fresh.push_back(name);  // pre-training heads: unused
    }
    Say(absl::StrCat("initialised from ", init->description,
                     "; newly initialised: ", fresh.empty() ? "none" : absl::StrJoin(fresh, ", ")));
  }
  return StartOnAllRanks(params, mo, vo, step);
}

// The backend, the model with its head, the gradient reduction over the ranks and the
// optimizer. Each rank's share of a global batch splits into whole micro-batches.
absl::Status FineTuneRun::CreateModel() {
  const FineTuneConfig& f = config_.finetune();
  const TrainConfig& t = config_.train();
  if (t.global_batch_size() % ranks_ != 0 || (t.global_batch_size() / ranks_) % MicroBatch() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("finetune.train_batch_size ", t.global_batch_size(), " must split into ",
                     ranks_, " ranks of whole micro-batches of ", MicroBatch(),
                     " (finetune.micro_batch_size); change either or the number of ranks"));
  }
  HR_ASSIGN_OR_RETURN(backend_, TrainingBackend::Create(o_.device, t, o_.wrap_ops));
  ops_ = backend_->ops();
  HR_ASSIGN_OR_RETURN(
      model_, TaskModel<float>::Create(config_.model(), TaskHeadOf(config_), backend_->model_ops(),
                                       std::max(MicroBatch(), f.eval_batch_size()),
                                       f.max_seq_length(), ModelOptionsFromConfig(t)));
  DataParallelOptions dpo;
  dpo.bucket_bytes = BucketBytesFromMb(t.comm_bucket_mb());
  dpo.zero_stage = t.zero_stage();
  HR_ASSIGN_OR_RETURN(data_parallel_, DataParallel::Create(&comm_, ops_, &model_->model(), dpo));
  if (data_parallel_->active()) Say(data_parallel_->Describe(t.comm_bucket_mb()));
  // ZeRO-1 (train.zero_stage): the optimizer of the rank's shard only (trainer/data_parallel.h).
  optimizer_ = std::make_unique<Optimizer<float>>(*ops_, model_->model().layout(), t.optimizer(),
                                                  data_parallel_->optimizer_shard());
  return CheckBackend(*ops_, "setting up the model and optimizer", 0);
}

// Every rank computed the same start from the same files; rank 0's weights (and, resuming, its
// moments and step) are nevertheless broadcast, and every rank checks that it holds them.
absl::Status FineTuneRun::StartOnAllRanks(std::vector<float>& params, std::vector<float>& m,
                                          std::vector<float>& v, int64_t step) {
  Model<float>& model = model_->model();
  if (ranks_ > 1) {
    std::string config_text;
    google::protobuf::TextFormat::PrintToString(config_, &config_text);
    HR_RETURN_IF_ERROR(CheckSameOnAllRanks(HostComm(), config_text, model.layout().total()));
    int32_t header[3] = {m.empty() ? 0 : 1, static_cast<int32_t>(step >> 32),
                         static_cast<int32_t>(step & 0xffffffff)};
    HR_RETURN_IF_ERROR(HostComm().Broadcast(header, 3, DataType::kInt32, 0));
    step = (static_cast<int64_t>(header[1]) << 32) | static_cast<uint32_t>(header[2]);
    HR_RETURN_IF_ERROR(HostComm().Broadcast(params.data(), params.size(), DataType::kFloat32, 0));
    if (header[0] != 0) {
      m.resize(params.size());
      v.resize(params.size());
      HR_RETURN_IF_ERROR(HostComm().Broadcast(m.data(), m.size(), DataType::kFloat32, 0));
      HR_RETURN_IF_ERROR(HostComm().Broadcast(v.data(), v.size(), DataType::kFloat32, 0));
    } else {
      m.clear();
      v.clear();
    }
  }
  model.CopyParametersToDevice(params.data());
  if (!m.empty()) {
    m = data_parallel_->ShardOf(std::move(m));
    v = data_parallel_->ShardOf(std::move(v));
    optimizer_->ImportState(m.data(), v.data(), step);
  }
  HR_RETURN_IF_ERROR(CheckBackend(*ops_, "copying the start weights to the device", step));
  if (ranks_ > 1) HR_RETURN_IF_ERROR(CheckSameWeights(HostComm(), model.GetParameters()));
  result_.first_step = result_.last_step = step;
  return absl::OkStatus();
}

absl::Status FineTuneRun::LoadData() {
  HR_RETURN_IF_ERROR(LoadTrainingData());
  HR_RETURN_IF_ERROR(LoadDevData());
  return PlanSteps();
}

absl::Status FineTuneRun::LoadTrainingData() {
  FineTuneConfig& f = *config_.mutable_finetune();
  const bool squad = f.task() == FineTuneConfig::SQUAD;
  const bool mnli = f.task() == FineTuneConfig::MNLI;
  const SentenceFormat format = mnli ? SentenceFormat::kMnli : SentenceFormat::kClassify;
  std::vector<SentenceExample> train_sentences;
  if (!o_.train_file.empty() && !squad) {
    HR_ASSIGN_OR_RETURN(train_sentences, ReadSentenceTsv(o_.train_file, format));
  }
  if (!squad && f.labels_size() == 0) {  // a fresh run: the task's labels
    const std::vector<std::string> labels = mnli ? MnliLabels() : DistinctLabels(train_sentences);
    if (labels.size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          o_.train_file.empty() ? "--train_file is needed to find the labels"
                                : absl::StrCat(o_.train_file, " has fewer than 2 distinct labels"),
          "; a classifier needs at least 2"));
    }
    for (const std::string& l : labels) f.add_labels(l);
  }
  const std::vector<std::string> labels(f.labels().begin(), f.labels().end());
  if (!o_.train_file.empty()) {
    if (squad) {
      HR_ASSIGN_OR_RETURN(SquadDataset d, ReadSquadDataset(o_.train_file));
      std::vector<std::string> warnings;
      HR_ASSIGN_OR_RETURN(std::vector<SquadExample> ex,
                          ReadSquadExamples(d, o_.train_file, /*is_training=*/true, &warnings));
      for (const std::string& w : warnings) Say(absl::StrCat("warning: ", w));
      train_examples_ = train_texts_ = static_cast<int64_t>(ex.size());
      for (SquadFeature& sf : ConvertSquadExamples(
               ex, *tokenizer_, {f.max_seq_length(), f.doc_stride(), f.max_query_length()}, true)) {
        train_.push_back(std::move(sf.feature));
      }
    } else {
      HR_ASSIGN_OR_RETURN(SentenceWindows w,
                          ClassificationFeatures(train_sentences, labels, *tokenizer_, f));
      train_ = std::move(w.features);
      // With long_text_windows every window is a training example.
      train_examples_ = static_cast<int64_t>(train_.size());
      train_texts_ = static_cast<int64_t>(train_sentences.size());
    }
  }
  return absl::OkStatus();
}

absl::Status FineTuneRun::LoadDevData() {
  const FineTuneConfig& f = config_.finetune();
  const bool squad = f.task() == FineTuneConfig::SQUAD;
  const bool mnli = f.task() == FineTuneConfig::MNLI;
  const SentenceFormat format = mnli ? SentenceFormat::kMnli : SentenceFormat::kClassify;
  const std::vector<std::string> labels(f.labels().begin(), f.labels().end());
  for (const std::string& path : o_.dev_files) {
    if (squad) {
      SquadDev dev{path, {}, {}, {}};
      HR_ASSIGN_OR_RETURN(dev.dataset, ReadSquadDataset(path));
      HR_ASSIGN_OR_RETURN(dev.examples, ReadSquadExamples(dev.dataset, path, false, nullptr));
      if (dev.examples.empty()) return NoDevExamples(path);
      dev.features =
          ConvertSquadExamples(dev.examples, *tokenizer_,
                               {f.max_seq_length(), f.doc_stride(), f.max_query_length()}, false);
      squad_dev_.push_back(std::move(dev));
    } else {
      HR_ASSIGN_OR_RETURN(std::vector<SentenceExample> ex, ReadSentenceTsv(path, format));
      if (ex.empty()) return NoDevExamples(path);
      SentenceDev dev{path, AccuracyName(path, mnli, o_.dev_files.size()), {}, {}, {}, {}};
      HR_ASSIGN_OR_RETURN(SentenceWindows w, ClassificationFeatures(ex, labels, *tokenizer_, f));
      dev.features = std::move(w.features);
      dev.example_of_feature = std::move(w.example_of_feature);
      for (size_t i = 0; i < dev.features.size(); ++i) {  // every example has a feature
        if (i == 0 || dev.example_of_feature[i] != dev.example_of_feature[i - 1]) {
          dev.labels.push_back(dev.features[i].label);
        }
      }
      for (const SentenceExample& e : ex) dev.sources.push_back(e.source);
      sentence_dev_.push_back(std::move(dev));
    }
  }
  return absl::OkStatus();
}

// Google's step count: int(examples / batch * epochs), with warm-up int(steps * proportion).
absl::Status FineTuneRun::PlanSteps() {
  const FineTuneConfig& f = config_.finetune();
  TrainConfig& t = *config_.mutable_train();
  if (t.steps() == 0) {  // fresh runs; a resumed run keeps its checkpoint's schedule
    const int64_t steps = static_cast<int64_t>(static_cast<double>(train_examples_) /
                                               f.train_batch_size() * f.num_train_epochs());
    if (!o_.train_file.empty() && steps == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          o_.train_file, ": ", train_examples_, " training examples make 0 steps of ",
          f.train_batch_size(), " x ", f.num_train_epochs(),
          " epochs; lower finetune.train_batch_size or raise finetune.num_train_epochs"));
    }
    t.set_steps(steps);
    t.mutable_schedule()->set_warmup_steps(
        static_cast<int64_t>(static_cast<double>(steps) * f.warmup_proportion()));
  }
  result_.total_steps = t.steps();
  return absl::OkStatus();
}

std::vector<const TaskFeature*> FineTuneRun::Rows(int64_t first, int64_t count) {
  const int64_t n = static_cast<int64_t>(train_.size());
  std::vector<const TaskFeature*> rows;
  for (int64_t i = first; i < first + count; ++i) {
    const int64_t epoch = i / n;
    if (epoch != order_epoch_) {
      order_ = EpochOrder(n, config_.train().seed(), epoch);
      order_epoch_ = epoch;
    }
    rows.push_back(&train_[static_cast<size_t>(order_[static_cast<size_t>(i % n)])]);
  }
  return rows;
}

// The sequence length a batch of `rows` is padded to.
int PaddedLength(const std::vector<const TaskFeature*>& rows, const FineTuneConfig& f) {
  if (f.task() == FineTuneConfig::SQUAD) return f.max_seq_length();
  size_t longest = 1;
  for (const TaskFeature* r : rows) longest = std::max(longest, r->input_ids.size());
  return static_cast<int>(longest);
}

// One optimizer step: this rank's share of global batch `step` in k micro-batches, the
// gradient averaged over the ranks (trainer/data_parallel.h), then the update. The loss is the
// mean over every rank's micro-batches.
absl::StatusOr<double> FineTuneRun::TrainStep(int64_t step) {
  const TrainConfig& t = config_.train();
  const int micro = MicroBatch();
  const int share = t.global_batch_size() / ranks_;
  const int k = share / micro;
  Model<float>& m = model_->model();
  m.ZeroGrads();
  const Clock::time_point compute_start = Clock::now();
  double loss = 0;
  for (int j = 0; j < k; ++j) {
    const std::vector<const TaskFeature*> rows =
        Rows(step * t.global_batch_size() + static_cast<int64_t>(rank_) * share + j * micro, micro);
    const TaskBatch batch = MakeTaskBatch(rows, PaddedLength(rows, config_.finetune()));
    // The global micro-batch index: R ranks draw the dropout masks one rank would.
    const DropoutKey key{t.seed(), static_cast<uint64_t>((step * ranks_ + rank_) * k + j), 0, 0};
    HR_ASSIGN_OR_RETURN(TaskLoss l, model_->Forward(batch, /*training=*/true, key));
    // The loss was read back from the device: a failed backend's would be 0, not the loss.
    HR_RETURN_IF_ERROR(CheckBackend(*ops_, "reading the loss back", step + 1));
    model_->Backward(1.0f, j == k - 1 ? data_parallel_->hook() : Model<float>::BackwardHook());
    HR_RETURN_IF_ERROR(data_parallel_->hook_status());
    loss += l.loss / k;
  }
  HR_ASSIGN_OR_RETURN(DataParallelStepStats dp, data_parallel_->Finish(compute_start));
  HR_RETURN_IF_ERROR(CheckBackend(*ops_, "reducing the gradients", step + 1));
  if (dp.reduced) {
    HR_RETURN_IF_ERROR(
        HostComm().AllReduce(&loss, &loss, 1, DataType::kFloat64, ReduceOp::kAverage));
  }
  if (!std::isfinite(loss)) {
    return absl::InternalError(
        absl::StrCat("step ", step + 1, ": the loss is ", loss, "; lower finetune.learning_rate"));
  }
  HR_ASSIGN_OR_RETURN(const OptimizerStats st,
                      optimizer_->Step(m.params(), data_parallel_->optimizer_grads(),
                                       schedule_->LearningRate(step), 1.0 / k));
  HR_RETURN_IF_ERROR(CheckBackend(*ops_, "the optimizer step", step + 1));
  if (!st.applied) {
    return absl::InternalError(absl::StrCat("step ", step + 1, ": the gradient norm is ",
                                            st.grad_norm, "; lower finetune.learning_rate"));
  }
  HR_RETURN_IF_ERROR(data_parallel_->GatherParameters());  // ZeRO-1; a no-op otherwise
  last_grad_norm_ = st.grad_norm;
  return loss;
}

// Rank 0 writes the checkpoint; with ZeRO-1 every rank first contributes its shard of the
// moments, so the checkpoint holds the full state (collective: every rank calls it).
absl::Status FineTuneRun::SaveAt(int64_t step, double loss) {
  std::vector<float> mo, vo;
  optimizer_->ExportState(&mo, &vo);
  // Moments or weights read back from a failed device are not the model: write nothing. Every
  // rank checks its moments before the shards are gathered, rank 0 its weights.
  HR_RETURN_IF_ERROR(CheckBackend(*ops_, "reading the moments back for the checkpoint", step));
  HR_ASSIGN_OR_RETURN(mo, data_parallel_->GatherShards(std::move(mo)));
  HR_ASSIGN_OR_RETURN(vo, data_parallel_->GatherShards(std::move(vo)));
  if (!lead_) return absl::OkStatus();
  Model<float>& m = model_->model();
  const std::vector<float> params = m.GetParameters();
  HR_RETURN_IF_ERROR(CheckBackend(*ops_, "reading the weights back for the checkpoint", step));
  TrainerState st;
  st.step = step;
  st.seed = config_.train().seed();
  st.loss = loss;
  google::protobuf::TextFormat::PrintToString(config_, &st.config_text);
  HR_ASSIGN_OR_RETURN(result_.last_checkpoint,
                      SaveCheckpoint(o_.output_dir, m.layout(), params.data(), mo.data(), vo.data(),
                                     st, config_.finetune().keep_checkpoints()));
  return absl::OkStatus();
}

absl::Status FineTuneRun::Train() {
  const FineTuneConfig& f = config_.finetune();
  const TrainConfig& t = config_.train();
  HR_ASSIGN_OR_RETURN(LearningRateSchedule schedule, LearningRateSchedule::Create(config_));
  schedule_ = std::make_unique<LearningRateSchedule>(std::move(schedule));
  if (lead_) {
    MetricsOptions mo;
    mo.run_dir = o_.output_dir;
    mo.total_steps = t.steps();
    mo.console = console_;
    HR_ASSIGN_OR_RETURN(metrics_, MetricsLogger::Open(mo));
  }
  if (o_.train_file.empty()) return absl::OkStatus();
  const int64_t end = o_.max_steps > 0 ? std::min(o_.max_steps, t.steps()) : t.steps();
  const ModelConfig& mc = config_.model();
  Say(absl::StrFormat(
      "fine-tuning %s: %d examples -> %d features; %d steps of %d (%g epochs, warm-up %d, lr %g); "
      "model L=%d d=%d h=%d head_size=%d, max_seq_length %d",
      TaskName(f.task()), train_texts_, train_.size(), t.steps(), t.global_batch_size(),
      f.num_train_epochs(), t.schedule().warmup_steps(), f.learning_rate(), mc.num_layers(),
      mc.d_model(), mc.num_heads(), HeadSize(mc), f.max_seq_length()));
  Clock::time_point log_start = Clock::now();
  int64_t log_steps = 0;
  double log_loss = 0, loss = 0;
  for (int64_t step = result_.first_step; step < end; ++step) {
    HR_ASSIGN_OR_RETURN(loss, TrainStep(step));
    result_.losses.push_back(loss);
    result_.last_step = step + 1;
    log_loss += loss;
    ++log_steps;
    if (o_.on_step) o_.on_step(step + 1, loss);
    if ((step + 1) % f.log_every() == 0 || step + 1 == end) {
      HR_RETURN_IF_ERROR(Log(step, log_loss, log_steps, log_start));
      log_start = Clock::now();
      log_steps = 0;
      log_loss = 0;
    }
    const bool save =
        (f.checkpoint_every() > 0 && (step + 1) % f.checkpoint_every() == 0) || step + 1 == end;
    if (save) HR_RETURN_IF_ERROR(SaveAt(step + 1, loss));
  }
  return absl::OkStatus();
}

// The console and metrics line of the `steps` steps up to `step` (rank 0).
absl::Status FineTuneRun::Log(int64_t step, double loss_sum, int64_t steps,
                              Clock::time_point since) {
  if (!lead_) return absl::OkStatus();
  TrainRecord r;
  r.step = step + 1;
  r.loss = loss_sum / static_cast<double>(steps);
  r.lr = schedule_->LearningRate(step);
  r.grad_norm = last_grad_norm_;
  r.tokens = steps * config_.train().global_batch_size() *
             static_cast<int64_t>(config_.finetune().max_seq_length());
  r.seconds = Seconds(since, Clock::now());
  r.steps = steps;
  r.memory_bytes =
      ops_->DeviceMemoryInUse() >= 0 ? ops_->DeviceMemoryInUse() : ProcessResidentBytes();
  return metrics_->LogTrain(r);
}

absl::Status FineTuneRun::Evaluate() {
  for (const SquadDev& dev : squad_dev_) HR_RETURN_IF_ERROR(EvaluateSquad(dev));
  for (const SentenceDev& dev : sentence_dev_) HR_RETURN_IF_ERROR(EvaluateSentences(dev));
  if (result_.metrics.empty()) return absl::OkStatus();
  HR_RETURN_IF_ERROR(metrics_->LogEval(result_.last_step, result_.metrics));
  HR_RETURN_IF_ERROR(metrics_->Flush());
  nlohmann::ordered_json j;
  j["step"] = result_.last_step;
  for (const auto& [name, value] : result_.metrics) j[name] = value;
  return WriteFileAtomically((fs::path(o_.output_dir) / "eval_results.json").string(),
                             j.dump(2) + "\n");
}

absl::Status FineTuneRun::EvaluateSquad(const SquadDev& dev) {
  const FineTuneConfig& f = config_.finetune();
  const int S = f.max_seq_length();
  std::vector<std::vector<float>> start_logits, end_logits;
  std::vector<float> start, end;
  for (size_t first = 0; first < dev.features.size(); first += f.eval_batch_size()) {
    std::vector<const TaskFeature*> rows;
    for (size_t i = first; i < std::min(dev.features.size(), first + f.eval_batch_size()); ++i) {
      rows.push_back(&dev.features[i].feature);
    }
    HR_RETURN_IF_ERROR(model_->Forward(MakeTaskBatch(rows, S), false, {}).status());
    model_->SpanLogits(&start, &end);
    HR_RETURN_IF_ERROR(CheckBackend(*ops_, "evaluating", result_.last_step));
    for (size_t r = 0; r < rows.size(); ++r) {
      start_logits.emplace_back(start.begin() + r * S, start.begin() + (r + 1) * S);
      end_logits.emplace_back(end.begin() + r * S, end.begin() + (r + 1) * S);
    }
  }
  const auto predictions =
      DecodeSquadPredictions(dev.examples, dev.features, start_logits, end_logits, *tokenizer_,
                             {f.n_best_size(), f.max_answer_length()});
  result_.predictions_file = (fs::path(o_.output_dir) / "predictions.json").string();
  HR_RETURN_IF_ERROR(WriteSquadPredictions(result_.predictions_file, predictions));
  HR_ASSIGN_OR_RETURN(SquadPredictions by_id, ReadSquadPredictions(result_.predictions_file));
  HR_ASSIGN_OR_RETURN(SquadMetrics m, headroom::EvaluateSquad(dev.dataset, by_id));
  result_.metrics.emplace_back("exact_match", m.exact_match);
  result_.metrics.emplace_back("f1", m.f1);
  return absl::OkStatus();
}

// Accuracy over the dev file's examples: each example's prediction is the argmax of its
// feature's logits (with long_text_windows, of the mean over its windows). The predictions go to
// OUTPUT_DIR/<metric>_predictions.tsv (source line, label, prediction), for error analysis.
absl::Status FineTuneRun::EvaluateSentences(const SentenceDev& dev) {
  const FineTuneConfig& f = config_.finetune();
  std::vector<float> logits;
  for (size_t first = 0; first < dev.features.size(); first += f.eval_batch_size()) {
    std::vector<const TaskFeature*> rows;
    for (size_t i = first; i < std::min(dev.features.size(), first + f.eval_batch_size()); ++i) {
      rows.push_back(&dev.features[i]);
    }
    HR_RETURN_IF_ERROR(
        model_->Forward(MakeTaskBatch(rows, PaddedLength(rows, f)), false, {}).status());
    HR_RETURN_IF_ERROR(CheckBackend(*ops_, "evaluating", result_.last_step));
    const std::vector<float> batch = model_->ClassLogits();
    logits.insert(logits.end(), batch.begin(), batch.end());
  }
  const std::vector<int32_t> predicted = MeanLogitPredictions(
      logits, f.labels_size(), dev.example_of_feature, static_cast<int>(dev.labels.size()));
  int64_t correct = 0;
  std::string table = "source\tlabel\tprediction\n";
  for (size_t e = 0; e < dev.labels.size(); ++e) {
    correct += predicted[e] == dev.labels[e] ? 1 : 0;
    absl::StrAppend(&table, dev.sources[e], "\t", f.labels(dev.labels[e]), "\t",
                    predicted[e] >= 0 ? f.labels(predicted[e]) : std::string("-"), "\n");
  }
  HR_RETURN_IF_ERROR(WriteFileAtomically(
      (fs::path(o_.output_dir) / absl::StrCat(dev.metric, "_predictions.tsv")).string(), table));
  result_.metrics.emplace_back(
      dev.metric, static_cast<double>(correct) / static_cast<double>(dev.labels.size()));
  return absl::OkStatus();
}

}  // namespace

std::string FineTuneResult::ResultLine() const {
  std::vector<std::string> parts;
  for (const auto& [name, value] : metrics) {
    // SQuAD's metrics are percentages (2 decimals), accuracies fractions (4).
    const bool percent = name == "exact_match" || name == "f1";
    parts.push_back(absl::StrFormat(percent ? "%s=%.2f" : "%s=%.4f", name, value));
  }
  return absl::StrJoin(parts, " ");
}

absl::StatusOr<FineTuneConfig::Task> ParseFineTuneTask(const std::string& name) {
  if (name == "squad") return FineTuneConfig::SQUAD;
  if (name == "mnli") return FineTuneConfig::MNLI;
  if (name == "classify") return FineTuneConfig::CLASSIFY;
  return absl::InvalidArgumentError(
      absl::StrCat("--task: unknown task '", name, "'; use squad, mnli or classify"));
}

absl::StatusOr<ExperimentConfig> LoadFineTuneConfig(const std::string& path,
                                                    const std::string& task,
                                                    const std::vector<std::string>& overrides) {
  std::string text;
  if (!path.empty()) {
    HR_ASSIGN_OR_RETURN(text, ReadFile(path));
  }
  const std::string source = path.empty() ? "--set" : path;
  HR_ASSIGN_OR_RETURN(ExperimentConfig config, ParseConfigUnvalidated(text, source, overrides));
  FineTuneConfig& f = *config.mutable_finetune();
  if (!task.empty()) {
    HR_ASSIGN_OR_RETURN(FineTuneConfig::Task t, ParseFineTuneTask(task));
    if (f.task() != FineTuneConfig::TASK_UNSPECIFIED && f.task() != t) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--task=", task, " but ", source,
          " sets finetune.task: ", FineTuneConfig::Task_Name(f.task()), "; give one of them"));
    }
    f.set_task(t);
  }
  if (f.task() == FineTuneConfig::TASK_UNSPECIFIED) {
    return absl::InvalidArgumentError("--task is required: squad, mnli or classify");
  }
  FillDefaults(config);
  HR_RETURN_IF_ERROR(ValidateFineTuneConfig(config, source));
  return config;
}

absl::StatusOr<FineTuneResult> FineTune(const FineTuneOptions& options) {
  return RunOnDataParallelRanks(
      options.comm, options.config.train(), options.device,
      [&](Communicator& comm) { return FineTuneRun(options, comm).Run(); });
}

}  // namespace headroom
