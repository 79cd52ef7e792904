// The tensor-core layout (model/parameter_layout.h: aligned offsets, a padded vocabulary, one
// [3I, d] QKV weight) seen from outside the model: a checkpoint written before it, built here
// from named tensors of the true shapes without the layout code, loads and gives the float64
// reference's loss; checkpoints keep writing the true shapes; and the padded vocabulary rows
// stay exactly zero through training steps with weight decay (AdamW and LAMB).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/load.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/batch.h"
#include "model/transformer.h"
#include "tests/model/model_test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/safetensors.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;
using testing::NamedTensor;
using testing::NamedTensors;
using testing::ReferenceModel;

// The tensors of Hugging Face's BertForPreTraining (or headroom's "lm." model) for `m`, in the
// order and with the shapes of the checkpoints written before the tensor-core layout: written
// from the Hugging Face model definition, not from ParameterLayout. Post-LN, learned positions.
std::vector<std::pair<std::string, std::vector<int64_t>>> OldCheckpointTensors(
    const ModelConfig& m) {
  const bool bert = m.objective() == ModelConfig::BERT;
  const std::string p = bert ? "bert." : "lm.";
  const int64_t V = m.vocab_size(), d = m.d_model(), F = m.ffn_size();
  const int64_t I = static_cast<int64_t>(m.num_heads()) * HeadSize(m);
  std::vector<std::pair<std::string, std::vector<int64_t>>> t = {
      {p + "embeddings.word_embeddings.weight", {V, d}},
      {p + "embeddings.position_embeddings.weight", {m.max_positions(), d}}};
  if (bert) t.push_back({p + "embeddings.token_type_embeddings.weight", {m.type_vocab_size(), d}});
  t.push_back({p + "embeddings.LayerNorm.weight", {d}});
  t.push_back({p + "embeddings.LayerNorm.bias", {d}});
  for (int l = 0; l < m.num_layers(); ++l) {
    const std::string lp = p + "encoder.layer." + std::to_string(l) + ".";
    for (const char* qkv : {"query", "key", "value"}) {
      t.push_back({lp + "attention.self." + qkv + ".weight", {I, d}});
      t.push_back({lp + "attention.self." + qkv + ".bias", {I}});
    }
    t.push_back({lp + "attention.output.dense.weight", {d, I}});
    t.push_back({lp + "attention.output.dense.bias", {d}});
    t.push_back({lp + "attention.output.LayerNorm.weight", {d}});
    t.push_back({lp + "attention.output.LayerNorm.bias", {d}});
    t.push_back({lp + "intermediate.dense.weight", {F, d}});
    t.push_back({lp + "intermediate.dense.bias", {F}});
    t.push_back({lp + "output.dense.weight", {d, F}});
    t.push_back({lp + "output.dense.bias", {d}});
    t.push_back({lp + "output.LayerNorm.weight", {d}});
    t.push_back({lp + "output.LayerNorm.bias", {d}});
  }
  if (bert) {
    t.push_back({"bert.pooler.dense.weight", {d, d}});
    t.push_back({"bert.pooler.dense.bias", {d}});
    t.push_back({"cls.predictions.transform.dense.weight", {d, d}});
    t.push_back({"cls.predictions.transform.dense.bias", {d}});
    t.push_back({"cls.predictions.transform.LayerNorm.weight", {d}});
    t.push_back({"cls.predictions.transform.LayerNorm.bias", {d}});
    if (!m.tie_output_embedding()) t.push_back({"cls.predictions.decoder.weight", {V, d}});
    t.push_back({"cls.predictions.bias", {V}});
    t.push_back({"cls.seq_relationship.weight", {2, d}});
    t.push_back({"cls.seq_relationship.bias", {2}});
  } else {
    if (!m.tie_output_embedding()) t.push_back({"lm.output.weight", {V, d}});
    t.push_back({"lm.output.bias", {V}});
  }
  return t;
}

// Random float values (LayerNorm gains around 1), as the checkpoint stores them.
NamedTensors RandomNamedTensors(const ModelConfig& m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.4);
  NamedTensors named;
  for (const auto& [name, shape] : OldCheckpointTensors(m)) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    NamedTensor t{shape, std::vector<double>(static_cast<size_t>(n))};
    const bool gain = name.find("LayerNorm.weight") != std::string::npos;
    for (double& x : t.values) x = static_cast<float>((gain ? 1.0 : 0.0) + normal(rng));
    named[name] = std::move(t);
  }
  return named;
}

// Writes a checkpoint directory of the format before manifests (model and optimizer
// safetensors, trainer_state.json, config.textproto) holding `named`, tensor by tensor in the
// old order.
void WriteOldCheckpoint(const std::string& dir, const std::string& config_text,
                        const ModelConfig& m, const NamedTensors& named) {
  fs::create_directories(dir);
  SafeTensorsWriter model, opt;
  model.SetMetadata("format", "pt");
  std::vector<std::vector<float>> keep;  // the writers read the data at Write
  for (const auto& [name, shape] : OldCheckpointTensors(m)) {
    const std::vector<double>& v = named.at(name).values;
    keep.emplace_back(v.begin(), v.end());
    ASSERT_TRUE(model.AddF32(name, shape, keep.back().data()).ok()) << name;
    keep.emplace_back(v.size(), 0.0f);
    ASSERT_TRUE(opt.AddF32(name + ".exp_avg", shape, keep.back().data()).ok());
    ASSERT_TRUE(opt.AddF32(name + ".exp_avg_sq", shape, keep.back().data()).ok());
  }
  ASSERT_TRUE(model.Write(dir + "/model.safetensors").ok());
  ASSERT_TRUE(opt.Write(dir + "/optimizer.safetensors").ok());
  std::ofstream(dir + "/trainer_state.json")
      << R"({"format": 1, "step": 7, "seed": 1, "loader_state": "", "rng_state": "", )"
      << R"("loss": 0})"
      << "\n";
  std::ofstream(dir + "/config.textproto") << config_text;
}

std::string ConfigText(const ModelConfig& m) {
  ExperimentConfig e;
  e.set_name("old_layout");
  *e.mutable_model() = m;
  e.mutable_data()->set_seq_length(6);
  e.mutable_data()->set_max_predictions_per_seq(3);
  e.mutable_train()->set_steps(10);
  e.mutable_train()->set_global_batch_size(2);
  return e.DebugString();
}

class LayoutCompatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "layout_compat_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

// Standard heads (BERT) and fixed heads with I*d not a multiple of 64 (an untied causal LM):
// the loaded parameters give the loss of the float64 reference run on the named tensors.
TEST_F(LayoutCompatTest, CheckpointOfTheOldLayoutLoadsWithTheReferenceLoss) {
  ModelConfig lm = testing::TinyLm(2, 8, 3, 5, 12);
  lm.set_tie_output_embedding(false);
  for (const ModelConfig& m : {testing::TinyBert(2, 8, 2, 0, 12), lm}) {
    SCOPED_TRACE(ModelConfig::Objective_Name(m.objective()));
    const NamedTensors named = RandomNamedTensors(m, 11);
    const std::string ck_dir = dir_ + "/checkpoints/step-00000007";
    WriteOldCheckpoint(ck_dir, ConfigText(m), m, named);
    absl::StatusOr<Checkpoint> ck = LoadCheckpoint(ck_dir, &m);
    ASSERT_TRUE(ck.ok()) << ck.status();

    CpuOps<double> ops(1);
    auto model = Model<double>::Create(m, &ops, {2, 6, 3});
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_EQ(static_cast<int64_t>(ck->params.size()), (*model)->layout().total());
    (*model)->SetParameters(std::vector<double>(ck->params.begin(), ck->params.end()));
    const Batch batch = RandomBatch(m, 2, 6, m.objective() == ModelConfig::BERT ? 3 : 0, 5);
    absl::StatusOr<LossStats> got = (*model)->Forward(batch, /*training=*/false, {}, true);
    ASSERT_TRUE(got.ok()) << got.status();
    const testing::ReferenceResult want = ReferenceModel(m, named).Run(batch);
    EXPECT_NEAR(got->loss, want.loss, 1e-10 * std::fabs(want.loss));
    EXPECT_EQ(m.objective() == ModelConfig::BERT ? got->mlm_correct : got->lm_correct,
              m.objective() == ModelConfig::BERT ? want.mlm_correct : want.lm_correct);
    fs::remove_all(dir_);
  }
}

// SaveCheckpoint writes every tensor with its true shape (the padded vocabulary rows and the
// alignment gaps are not in the file), and loading it gives back the same flat buffer.
TEST_F(LayoutCompatTest, CheckpointsKeepTheTrueShapes) {
  const ModelConfig m = testing::TinyBert(2, 8, 3, 5, 12);
  const ParameterLayout layout = ParameterLayout::ForModel(m);
  std::vector<float> params(static_cast<size_t>(layout.total()), 0.0f);
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  for (const TensorSpec& t : layout.tensors()) {
    for (int64_t i = 0; i < t.numel; ++i) params[static_cast<size_t>(t.offset + i)] = normal(rng);
  }
  TrainerState st;
  st.step = 3;
  st.config_text = ConfigText(m);
  absl::StatusOr<std::string> dir =
      SaveCheckpoint(dir_, layout, params.data(), params.data(), params.data(), st, 0);
  ASSERT_TRUE(dir.ok()) << dir.status();

  std::ifstream in(*dir + "/model.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<SafeTensorsFile> file = SafeTensorsFile::Parse(std::move(bytes), "model");
  ASSERT_TRUE(file.ok()) << file.status();
  const auto old = OldCheckpointTensors(m);
  ASSERT_EQ(file->tensors().size(), old.size());
  for (const auto& [name, shape] : old) {
    const SafeTensorInfo* t = file->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, shape) << name;
  }
  absl::StatusOr<Checkpoint> ck = LoadCheckpoint(*dir, &m);
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ(ck->params, params);
  EXPECT_EQ(ck->m, params);
}

// Training steps with weight decay: the padded rows of the token table, an untied decoder and
// the output bias (and their gradients and moments) stay exactly zero, under AdamW and LAMB,
// while the real rows move.
TEST_F(LayoutCompatTest, PaddedVocabularyRowsStayZeroThroughTraining) {
  ModelConfig lm = testing::TinyLm(1, 8, 2, 0, 12);
  lm.set_tie_output_embedding(false);
  for (const ModelConfig& m : {testing::TinyBert(1, 8, 2, 0, 12), lm}) {
    for (OptimizerConfig::Type type : {OptimizerConfig::ADAMW, OptimizerConfig::LAMB}) {
      SCOPED_TRACE(ModelConfig::Objective_Name(m.objective()) + " " +
                   OptimizerConfig::Type_Name(type));
      CpuOps<float> ops(1);
      auto model = Model<float>::Create(m, &ops, {2, 6, 3});
      ASSERT_TRUE(model.ok()) << model.status();
      Model<float>& mod = **model;
      const ParameterLayout& layout = mod.layout();
      // Every parameter nonzero, the output bias included (InitParameters zeroes biases).
      std::vector<double> w = testing::RandomParameters(layout, 0.5, 3);
      mod.SetParameters(std::vector<float>(w.begin(), w.end()));
      OptimizerConfig oc;
      oc.set_type(type);
      oc.set_beta1(0.9f);
      oc.set_beta2(0.999f);
      oc.set_epsilon(1e-6f);
      oc.set_weight_decay(0.1f);
      oc.set_max_grad_norm(1.0f);
      Optimizer<float> opt(ops, layout, oc);
      const std::vector<float> before = mod.GetParameters();
      for (int step = 0; step < 3; ++step) {
        mod.ZeroGrads();
        const Batch batch =
            RandomBatch(m, 2, 6, m.objective() == ModelConfig::BERT ? 3 : 0, 20 + step);
        absl::StatusOr<LossStats> loss =
            mod.Forward(batch, /*training=*/true, {1, static_cast<uint64_t>(step)});
        ASSERT_TRUE(loss.ok()) << loss.status();
        ASSERT_TRUE(std::isfinite(loss->loss)) << "step " << step;
        mod.Backward();
        ASSERT_TRUE(opt.Step(mod.params(), mod.grads(), 0.05).ok());
      }
      const std::vector<float> p = mod.GetParameters(), g = mod.GetGradients();
      std::vector<float> mv(static_cast<size_t>(layout.total())), vv(mv.size());
      ops.CopyToHost(mv.data(), opt.m(), sizeof(float) * mv.size());
      ops.CopyToHost(vv.data(), opt.v(), sizeof(float) * vv.size());
      // Every tensor's reserved elements after its values (padded rows, alignment gap) are 0.
      int padded_tensors = 0;
      for (const TensorSpec& t : layout.tensors()) {
        if (t.reserved - t.numel < (PaddedVocabSize(m) - m.vocab_size()) * t.numel / t.shape[0]) {
          for (int64_t i = t.offset + t.numel; i < t.offset + t.reserved; ++i) {
            ASSERT_EQ(p[i], 0.0f) << t.name;
            ASSERT_EQ(g[i], 0.0f) << t.name;
          }
          continue;
        }
        ++padded_tensors;  // a vocabulary tensor
        for (int64_t i = t.offset + t.numel; i < t.offset + t.reserved; ++i) {
          ASSERT_EQ(p[i], 0.0f) << t.name << " padded element " << i - t.offset;
          ASSERT_EQ(g[i], 0.0f) << t.name << " gradient, padded element " << i - t.offset;
          ASSERT_EQ(mv[i], 0.0f) << t.name;
          ASSERT_EQ(vv[i], 0.0f) << t.name;
        }
        double moved = 0;
        for (int64_t i = t.offset; i < t.offset + t.numel; ++i) {
          moved += std::fabs(p[i] - before[i]);
        }
        EXPECT_GT(moved, 0) << t.name << ": the real rows must train";
      }
      EXPECT_EQ(padded_tensors, m.tie_output_embedding() ? 2 : 3);
    }
  }
}

}  // namespace
}  // namespace headroom
