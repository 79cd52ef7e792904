// Checkpoints: bitwise round trip of weights, moments and state under the documented names;
// retention of the last K; discovery that ignores interrupted writes; refusal to write NaN
// weights; a checkpoint of another model, damaged files and unwritable directories are one-line
// errors that leave the earlier checkpoints intact. The manifest's sizes and CRC32Cs against the
// files' bytes; a changed byte, a missing file and NaN bytes named on load; resume falling back
// past damaged checkpoints; checkpoints from before manifests still loading.
#include "trainer/checkpoint.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "config/load.h"
#include "data/crc32c.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "trainer/safetensors.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

constexpr char kConfig[] = R"pb(
  name: "tiny"
  model {
    objective: BERT
    vocab_size: 11
    max_positions: 8
    type_vocab_size: 2
    num_layers: 2
    d_model: 4
    num_heads: 2
    ffn_size: 6
  }
  data { seq_length: 8 max_predictions_per_seq: 2 }
  train { steps: 10 global_batch_size: 2 }
)pb";

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_dir_ = ::testing::TempDir() + "checkpoint_test_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(run_dir_);
    fs::create_directories(run_dir_);
    auto c = ParseConfig(kConfig, "tiny.textproto");
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = *c;
    layout_ = std::make_unique<ParameterLayout>(ParameterLayout::ForModel(config_.model()));
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    // Random tensors; the layout's alignment gaps and padded vocabulary rows stay zero (they
    // are not in the checkpoint).
    for (auto* buf : {&params_, &m_, &v_}) {
      buf->assign(static_cast<size_t>(layout_->total()), 0.0f);
      for (const TensorSpec& t : layout_->tensors()) {
        for (int64_t i = 0; i < t.numel; ++i)
          (*buf)[static_cast<size_t>(t.offset + i)] = normal(rng);
      }
    }
  }
  void TearDown() override { fs::remove_all(run_dir_); }

  TrainerState State(int64_t step) {
    TrainerState st;
    st.step = step;
    st.seed = 1234;
    st.loader_state = "epoch: 1 step: 7";
    st.rng_state = std::string("\x00\xff\x10 binary", 9);
    st.loss = 2.5;
    st.config_text = kConfig;
    return st;
  }
  absl::StatusOr<std::string> Save(int64_t step, int keep = 0) {
    return SaveCheckpoint(run_dir_, *layout_, params_.data(), m_.data(), v_.data(), State(step),
                          keep);
  }

  // Turns checkpoint `dir` into one written before manifests existed: no manifest.json and no
  // "manifest" key in trainer_state.json.
  static void MakeOldFormat(const std::string& dir) {
    ASSERT_TRUE(fs::remove(fs::path(dir) / "manifest.json"));
    std::ifstream in(fs::path(dir) / "trainer_state.json");
    nlohmann::json state = nlohmann::json::parse(in);
    ASSERT_EQ(state.erase("manifest"), 1u);
    std::ofstream(fs::path(dir) / "trainer_state.json", std::ios::trunc) << state.dump(2);
  }
  // Overwrites `bytes.size()` bytes of `path` at `offset`.
  static void Patch(const fs::path& path, uint64_t offset, const std::string& bytes) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good()) << path;
  }
  // The file offset of element `i` of tensor `name` of a safetensors file.
  static uint64_t OffsetOf(const fs::path& path, const std::string& name, int64_t i) {
    auto f = SafeTensorsFile::Read(path.string());
    EXPECT_TRUE(f.ok()) << f.status();
    const SafeTensorInfo* t = f->Find(name);
    EXPECT_NE(t, nullptr) << name;
    // The data buffer starts after the 8-byte length and the header.
    std::ifstream in(path, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    return 8 + n + t->begin + static_cast<uint64_t>(i) * sizeof(float);
  }
  static std::string Slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string run_dir_;
  ExperimentConfig config_;
  std::unique_ptr<ParameterLayout> layout_;
  std::vector<float> params_, m_, v_;
};

TEST_F(CheckpointTest, RoundTripIsBitwiseUnderHuggingFaceNames) {
  auto dir = Save(7);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, run_dir_ + "/checkpoints/step-00000007");
  for (const char* f :
       {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.textproto"}) {
    EXPECT_TRUE(fs::is_regular_file(fs::path(*dir) / f)) << f;
  }
  auto ck = LoadCheckpoint(*dir, &config_.model());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->params, params_);
  EXPECT_EQ(ck->m, m_);
  EXPECT_EQ(ck->v, v_);
  EXPECT_EQ(ck->state.step, 7);
  EXPECT_EQ(ck->state.seed, 1234u);
  EXPECT_EQ(ck->state.loader_state, "epoch: 1 step: 7");
  EXPECT_EQ(ck->state.rng_state, std::string("\x00\xff\x10 binary", 9));
  EXPECT_EQ(ck->state.loss, 2.5);
  EXPECT_EQ(ck->config.name(), "tiny");
  EXPECT_EQ(ck->config.model().d_model(), 4);

  // The weights file is plain safetensors with BertForPreTraining's names and [out, in] shapes.
  auto f = SafeTensorsFile::Read(*dir + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  const SafeTensorInfo* emb = f->Find("bert.embeddings.word_embeddings.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{11, 4}));
  const SafeTensorInfo* ffn = f->Find("bert.encoder.layer.1.intermediate.dense.weight");
  ASSERT_NE(ffn, nullptr);
  EXPECT_EQ(ffn->shape, (std::vector<int64_t>{6, 4}));
  EXPECT_NE(f->Find("cls.seq_relationship.bias"), nullptr);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  auto o = SafeTensorsFile::Read(*dir + "/optimizer.safetensors");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_NE(o->Find("bert.pooler.dense.weight.exp_avg_sq"), nullptr);

  // Without the optimizer, only the weights.
  auto weights_only = LoadCheckpoint(*dir, nullptr, /*with_optimizer=*/false);
  ASSERT_TRUE(weights_only.ok());
  EXPECT_TRUE(weights_only->m.empty());
  EXPECT_EQ(weights_only->params, params_);
}

TEST_F(CheckpointTest, KeepsTheLastKAndFindsTheNewest) {
  for (int step : {10, 20, 30, 40, 50}) ASSERT_TRUE(Save(step, /*keep=*/2).ok());
  std::vector<std::string> all = ListCheckpoints(run_dir_);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fs::path(all[0]).filename(), "step-00000040");
  EXPECT_EQ(fs::path(all[1]).filename(), "step-00000050");
  auto latest = LatestCheckpoint(run_dir_);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, all[1]);
  // --checkpoint accepts the run directory or a checkpoint directory.
  EXPECT_EQ(*ResolveCheckpoint(run_dir_), all[1]);
  EXPECT_EQ(*ResolveCheckpoint(all[0]), all[0]);
  EXPECT_EQ(ResolveCheckpoint(run_dir_ + "/nope").status().code(), absl::StatusCode::kNotFound);
  // Steps beyond 8 digits still sort numerically.
  ASSERT_TRUE(Save(123456789, /*keep=*/0).ok());
  EXPECT_EQ(fs::path(*LatestCheckpoint(run_dir_)).filename(), "step-123456789");
}

TEST_F(CheckpointTest, InterruptedWritesAreIgnoredAndCleanedUp) {
  ASSERT_TRUE(Save(10).ok());
  // A save killed before its rename leaves a temporary directory: not a checkpoint.
  const fs::path root = fs::path(run_dir_) / "checkpoints";
  fs::create_directories(root / ".tmp-step-00000020-999");
  std::ofstream(root / ".tmp-step-00000020-999" / "model.safetensors") << "partial";
  EXPECT_EQ(fs::path(*LatestCheckpoint(run_dir_)).filename(), "step-00000010");
  // A step directory lacking files (someone copied it partially) is a damaged checkpoint: it
  // is the newest, and loading it names what is missing instead of silently using step 10.
  fs::create_directories(root / "step-00000030");
  std::ofstream(root / "step-00000030" / "model.safetensors") << "partial";
  EXPECT_EQ(fs::path(*LatestCheckpoint(run_dir_)).filename(), "step-00000030");
  auto resolved = ResolveCheckpoint((root / "step-00000030").string());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  auto ck = LoadCheckpoint(*resolved);
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(ck.status().message().find("checkpoint " + (root / "step-00000030").string() +
                                       ": optimizer.safetensors is missing"),
            absl::string_view::npos)
      << ck.status();
  ASSERT_TRUE(Save(40).ok());
  EXPECT_FALSE(fs::exists(root / ".tmp-step-00000020-999"));
  EXPECT_EQ(ListCheckpoints(run_dir_).size(), 3u);
}

TEST_F(CheckpointTest, NoCheckpointIsNotFound) {
  auto latest = LatestCheckpoint(run_dir_);
  ASSERT_FALSE(latest.ok());
  EXPECT_EQ(latest.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(latest.status().message().find(run_dir_), absl::string_view::npos);
}

TEST_F(CheckpointTest, RefusesNonFiniteWeightsAndWritesNothing) {
  ASSERT_TRUE(Save(10).ok());
  const TensorSpec& t = layout_->Get("bert.encoder.layer.1.output.dense.weight");
  params_[t.offset + 3] = std::numeric_limits<float>::quiet_NaN();
  auto s = Save(20);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("bert.encoder.layer.1.output.dense.weight"),
            absl::string_view::npos)
      << s.status();
  params_[t.offset + 3] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(Save(20).ok());
  ASSERT_EQ(ListCheckpoints(run_dir_).size(), 1u);
  EXPECT_TRUE(LoadCheckpoint(ListCheckpoints(run_dir_)[0]).ok());
}

TEST_F(CheckpointTest, SavingTheSameStepAgainReplacesIt) {
  ASSERT_TRUE(Save(10).ok());
  params_[0] = 42.0f;
  ASSERT_TRUE(Save(10).ok());
  auto ck = LoadCheckpoint(CheckpointDir(run_dir_, 10));
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->params[0], 42.0f);
  EXPECT_EQ(ListCheckpoints(run_dir_).size(), 1u);
}

TEST_F(CheckpointTest, ADifferentModelIsRefusedWithTheDifferences) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok());
  ModelConfig other = config_.model();
  other.set_num_heads(1);
  other.set_num_layers(3);
  auto ck = LoadCheckpoint(*dir, &other);
  ASSERT_FALSE(ck.ok());
  const std::string msg(ck.status().message());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(msg.find("checkpoint " + *dir + " is for a different model: "), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model.num_layers is 2 in the checkpoint, 3 in the config"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model.num_heads is 2 in the checkpoint, 1 in the config"), std::string::npos)
      << msg;
  // head_size = 4/1 vs 4/2 as well; dropout differences do not matter.
  ModelConfig dropout = config_.model();
  dropout.set_hidden_dropout(0.0f);
  EXPECT_TRUE(LoadCheckpoint(*dir, &dropout).ok());
}

// Without a manifest (an old checkpoint) the parsers still catch damage, naming the file.
TEST_F(CheckpointTest, DamagedFilesAreClearErrors) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok());
  MakeOldFormat(*dir);
  const fs::path model = fs::path(*dir) / "model.safetensors";
  fs::resize_file(model, fs::file_size(model) - 3);
  auto ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("model.safetensors"), absl::string_view::npos)
      << ck.status();

  // A well-formed file whose tensor has another shape.
  SafeTensorsWriter w;
  std::vector<float> junk(static_cast<size_t>(layout_->total()) + 1, 0.0f);
  for (const TensorSpec& t : layout_->tensors()) {
    std::vector<int64_t> shape = t.shape;
    if (t.name == "bert.pooler.dense.bias") shape = {t.numel + 1};
    ASSERT_TRUE(w.AddF32(t.name, shape, junk.data()).ok());
  }
  ASSERT_TRUE(w.Write(model.string()).ok());
  ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("bert.pooler.dense.bias has shape [5], expected [4]"),
            absl::string_view::npos)
      << ck.status();

  std::ofstream(fs::path(*dir) / "trainer_state.json") << "{\"format\": 1, \"step\": -4}";
  ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("trainer_state.json: \"step\""), absl::string_view::npos)
      << ck.status();
}

TEST_F(CheckpointTest, UnwritableRunDirectoryIsAnError) {
  const std::string file = run_dir_ + "/a_file";
  std::ofstream(file) << "x";
  auto s =
      SaveCheckpoint(file + "/run", *layout_, params_.data(), m_.data(), v_.data(), State(1), 3);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(file), absl::string_view::npos) << s.status();
  EXPECT_EQ(std::string(s.status().message()).find('\n'), std::string::npos);
}

TEST_F(CheckpointTest, MissingMomentsAreSavedAsZeros) {
  auto dir = SaveCheckpoint(run_dir_, *layout_, params_.data(), nullptr, nullptr, State(3), 0);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto ck = LoadCheckpoint(*dir);
  ASSERT_TRUE(ck.ok()) << ck.status();
  ASSERT_EQ(ck->m.size(), static_cast<size_t>(layout_->total()));
  ASSERT_EQ(ck->v.size(), static_cast<size_t>(layout_->total()));
  for (float x : ck->m) ASSERT_EQ(x, 0.0f);
  for (float x : ck->v) ASSERT_EQ(x, 0.0f);
}

constexpr const char* kFiles[] = {"model.safetensors", "optimizer.safetensors",
                                  "trainer_state.json", "config.textproto"};

TEST_F(CheckpointTest, TheManifestRecordsSizeAndCrc32cOfEveryFile) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok()) << dir.status();
  std::ifstream in(fs::path(*dir) / "manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  EXPECT_EQ(manifest["format"], 1);
  ASSERT_EQ(manifest["files"].size(), 4u);
  for (const char* f : kFiles) {
    const std::string bytes = Slurp(fs::path(*dir) / f);
    EXPECT_EQ(manifest["files"][f]["bytes"], bytes.size()) << f;
    EXPECT_EQ(manifest["files"][f]["crc32c"],
              absl::StrFormat("%08x", crc32c::Value(bytes.data(), bytes.size())))
        << f;
  }
}

TEST_F(CheckpointTest, AChangedByteIsNamedWithTheFile) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const fs::path model = fs::path(*dir) / "model.safetensors";
  // One bit of one weight: still a well-formed file with finite values, so only the checksum
  // can tell.
  const uint64_t at = OffsetOf(model, "bert.encoder.layer.0.output.dense.weight", 2);
  std::string byte = Slurp(model).substr(at, 1);
  byte[0] = static_cast<char>(byte[0] ^ 0x01);
  Patch(model, at, byte);
  auto ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  const std::string msg(ck.status().message());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(msg.find("checkpoint " + *dir + ": model.safetensors does not match manifest.json"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("use an earlier checkpoint"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);

  // The optimizer file is verified when it is loaded.
  ASSERT_TRUE(Save(20).ok());
  const fs::path opt = fs::path(CheckpointDir(run_dir_, 20)) / "optimizer.safetensors";
  Patch(opt, OffsetOf(opt, "bert.pooler.dense.bias.exp_avg", 0), "\x7f");
  EXPECT_TRUE(LoadCheckpoint(CheckpointDir(run_dir_, 20), nullptr, false).ok());
  ck = LoadCheckpoint(CheckpointDir(run_dir_, 20));
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("optimizer.safetensors does not match manifest.json"),
            absl::string_view::npos)
      << ck.status();
}

TEST_F(CheckpointTest, AMissingFileIsNamed) {
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer_state.json",
                        "config.textproto", "manifest.json"}) {
    auto dir = Save(10);
    ASSERT_TRUE(dir.ok()) << dir.status();
    ASSERT_TRUE(fs::remove(fs::path(*dir) / f));
    auto ck = LoadCheckpoint(*dir, nullptr, /*with_optimizer=*/false);
    ASSERT_FALSE(ck.ok()) << f;
    EXPECT_EQ(ck.status().code(), absl::StatusCode::kDataLoss) << f;
    EXPECT_NE(ck.status().message().find(absl::StrCat("checkpoint ", *dir, ": ", f, " is missing")),
              absl::string_view::npos)
        << ck.status();
  }
}

TEST_F(CheckpointTest, NonFiniteWeightsAreNamedWithFileAndTensor) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // A NaN written into an old checkpoint (no checksums) is caught by the value check.
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok()) << dir.status();
  MakeOldFormat(*dir);
  const fs::path model = fs::path(*dir) / "model.safetensors";
  Patch(model, OffsetOf(model, "bert.encoder.layer.1.attention.self.key.bias", 1),
        std::string(reinterpret_cast<const char*>(&nan), sizeof(float)));
  auto ck = LoadCheckpoint(*dir, nullptr, /*with_optimizer=*/false);
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(ck.status().message().find("non-finite weights in " + model.string() +
                                       " tensor bert.encoder.layer.1.attention.self.key.bias"),
            absl::string_view::npos)
      << ck.status();

  // In a checkpoint with a manifest, NaN bytes are first a checksum mismatch; with the manifest
  // rewritten to match them (a checkpoint written by a buggy tool), the value check names them.
  dir = Save(20);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const fs::path opt = fs::path(*dir) / "optimizer.safetensors";
  Patch(opt, OffsetOf(opt, "cls.predictions.bias.exp_avg_sq", 0),
        std::string(reinterpret_cast<const char*>(&inf), sizeof(float)));
  ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("optimizer.safetensors does not match manifest.json"),
            absl::string_view::npos)
      << ck.status();
  std::ifstream in(fs::path(*dir) / "manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  const std::string bytes = Slurp(opt);
  manifest["files"]["optimizer.safetensors"]["crc32c"] =
      absl::StrFormat("%08x", crc32c::Value(bytes.data(), bytes.size()));
  std::ofstream(fs::path(*dir) / "manifest.json", std::ios::trunc) << manifest.dump();
  ck = LoadCheckpoint(*dir);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("non-finite weights in " + opt.string() +
                                       " tensor cls.predictions.bias.exp_avg_sq"),
            absl::string_view::npos)
      << ck.status();
}

TEST_F(CheckpointTest, ACheckpointFromBeforeManifestsStillLoads) {
  auto dir = Save(10);
  ASSERT_TRUE(dir.ok()) << dir.status();
  MakeOldFormat(*dir);
  auto ck = LoadCheckpoint(*dir, &config_.model());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->params, params_);
  EXPECT_EQ(ck->m, m_);
  EXPECT_EQ(ck->v, v_);
  EXPECT_EQ(ck->state.step, 10);
}

TEST_F(CheckpointTest, ResumeFallsBackToTheNewestIntactCheckpointWithAWarning) {
  for (int step : {10, 20, 30}) ASSERT_TRUE(Save(step).ok());
  const fs::path newest = fs::path(CheckpointDir(run_dir_, 30));
  const fs::path middle = fs::path(CheckpointDir(run_dir_, 20));
  Patch(newest / "model.safetensors",
        OffsetOf(newest / "model.safetensors", "bert.pooler.dense.weight", 0), "\x01\x02");
  ASSERT_TRUE(fs::remove(middle / "config.textproto"));
  std::vector<std::string> warnings;
  auto ck = LoadLatestIntactCheckpoint(run_dir_, &config_.model(), &warnings);
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->state.step, 10);
  EXPECT_EQ(ck->params, params_);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0].find("checkpoint " + newest.string() +
                             " is damaged, skipped: model.safetensors does not match"),
            0u)
      << warnings[0];
  EXPECT_EQ(warnings[1],
            "checkpoint " + middle.string() + " is damaged, skipped: config.textproto is missing");

  // A checkpoint of another model is not damage: no fallback past it.
  ModelConfig other = config_.model();
  other.set_num_layers(3);
  ck = LoadLatestIntactCheckpoint(run_dir_, &other, nullptr);
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kFailedPrecondition) << ck.status();

  // Nothing intact: one line naming the newest damage.
  ASSERT_TRUE(fs::remove(fs::path(CheckpointDir(run_dir_, 10)) / "trainer_state.json"));
  warnings.clear();
  ck = LoadLatestIntactCheckpoint(run_dir_, &config_.model(), &warnings);
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(ck.status().message().find("no intact checkpoint to resume from (3 damaged; the "
                                       "newest, " +
                                       newest.string() + ": model.safetensors does not match"),
            absl::string_view::npos)
      << ck.status();
  EXPECT_EQ(warnings.size(), 3u);
  EXPECT_EQ(LoadLatestIntactCheckpoint(run_dir_ + "/none", nullptr, nullptr).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CheckpointTest, ResolvingARunDirectorySaysWhichStepItChose) {
  for (int step : {10, 50}) ASSERT_TRUE(Save(step).ok());
  std::string chosen = "stale";
  auto dir = ResolveCheckpoint(run_dir_, &chosen);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, CheckpointDir(run_dir_, 50));
  EXPECT_EQ(chosen, CheckpointDir(run_dir_, 50) +
                        " (step 50), the newest checkpoint of run directory " + run_dir_);
  dir = ResolveCheckpoint(CheckpointDir(run_dir_, 10), &chosen);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, CheckpointDir(run_dir_, 10));
  EXPECT_EQ(chosen, "");
}

}  // namespace
}  // namespace headroom
