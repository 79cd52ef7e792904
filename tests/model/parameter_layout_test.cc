// Parameter counts against the paper's tables and an independent closed-form count; FLOPs per
// token against a hand computation.
#include "model/parameter_layout.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "config/load.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

// Closed-form parameter count of the full pre-training model, written from the paper's
// description rather than from the layout code.
int64_t ClosedFormBert(int64_t L, int64_t d, int64_t h, int64_t dp, int64_t ff, int64_t V = 30522,
                       int64_t P = 512, int64_t T = 2) {
  const int64_t hp = h * dp;
  const int64_t embeddings = V * d + P * d + T * d + 2 * d;
  const int64_t attention = 3 * (d * hp + hp) + (hp * d + d) + 2 * d;
  const int64_t ffn = (d * ff + ff) + (ff * d + d) + 2 * d;
  const int64_t pooler = d * d + d;
  const int64_t mlm = d * d + d + 2 * d + V;  // transform dense, LayerNorm, output bias
  const int64_t nsp = 2 * d + 2;
  return embeddings + L * (attention + ffn) + pooler + mlm + nsp;
}

ModelConfig Bert(int L, int d, int h, int dp, int ff) {
  ModelConfig m;
  m.set_objective(ModelConfig::BERT);
  m.set_vocab_size(30522);
  m.set_max_positions(512);
  m.set_type_vocab_size(2);
  m.set_num_layers(L);
  m.set_d_model(d);
  m.set_num_heads(h);
  m.set_head_size(dp);
  m.set_ffn_size(ff);
  m.set_tie_output_embedding(true);
  return m;
}

TEST(ParameterLayoutTest, BertBaseAndLargeExactCounts) {
  // Hugging Face BertForPreTraining: bert-base-uncased 110,106,428; bert-large 336,226,108.
  EXPECT_EQ(ParameterLayout::ForModel(Bert(12, 768, 12, 0, 3072)).num_parameters(), 110106428);
  EXPECT_EQ(ParameterLayout::ForModel(Bert(24, 1024, 16, 0, 4096)).num_parameters(), 336226108);
}

TEST(ParameterLayoutTest, MatchesClosedFormForFixedHeadSizes) {
  for (int h : {1, 3, 8, 12, 32}) {
    for (int dp : {16, 32, 128, 200}) {
      EXPECT_EQ(ParameterLayout::ForModel(Bert(2, 512, h, dp, 4096)).num_parameters(),
                ClosedFormBert(2, 512, h, dp, 4096))
          << "h=" << h << " dp=" << dp;
    }
  }
}

TEST(ParameterLayoutTest, CausalLmHasNoTokenTypesPoolerOrNsp) {
  ModelConfig m = Bert(6, 256, 16, 32, 1024);
  m.set_objective(ModelConfig::CAUSAL_LM);
  m.set_type_vocab_size(0);
  m.set_vocab_size(32000);
  m.set_max_positions(256);
  const int64_t d = 256, hp = 16 * 32, ff = 1024, V = 32000, P = 256;
  const int64_t expected =
      V * d + P * d + 2 * d +
      6 * (3 * (d * hp + hp) + hp * d + d + 2 * d + d * ff + ff + ff * d + d + 2 * d) +
      V;  // output bias; decoder tied
  ParameterLayout layout = ParameterLayout::ForModel(m);
  EXPECT_EQ(layout.num_parameters(), expected);
  EXPECT_EQ(layout.Find("lm.embeddings.token_type_embeddings.weight"), nullptr);
  m.set_tie_output_embedding(false);
  EXPECT_EQ(ParameterLayout::ForModel(m).num_parameters(), expected + V * d);
}

TEST(ParameterLayoutTest, TensorsAreOrderedUniqueAndHfNamed) {
  ParameterLayout layout = ParameterLayout::ForModel(Bert(2, 64, 3, 20, 128));
  int64_t end = 0, count = 0;
  std::set<std::string> names;
  for (const TensorSpec& t : layout.tensors()) {
    EXPECT_EQ(t.offset, end) << t.name << ": the tensors must tile the buffer";
    EXPECT_GE(t.reserved, t.numel) << t.name;
    end = t.offset + t.reserved;
    count += t.numel;
    EXPECT_TRUE(names.insert(t.name).second) << "duplicate " << t.name;
    bool is_norm_or_bias =
        t.name.find("LayerNorm") != std::string::npos || t.name.ends_with(".bias");
    EXPECT_EQ(t.weight_decay, !is_norm_or_bias) << t.name;
  }
  EXPECT_EQ(end, layout.total());
  EXPECT_EQ(count, layout.num_parameters());
  const TensorSpec& q = layout.Get("bert.encoder.layer.1.attention.self.query.weight");
  EXPECT_EQ(q.shape, (std::vector<int64_t>{60, 64}));
  EXPECT_EQ(q.layer, 1);
  EXPECT_EQ(layout.Get("bert.encoder.layer.0.attention.output.dense.weight").shape,
            (std::vector<int64_t>{64, 60}));
  EXPECT_NE(layout.Find("cls.predictions.bias"), nullptr);
  EXPECT_NE(layout.Find("cls.seq_relationship.weight"), nullptr);
  EXPECT_EQ(layout.Find("cls.predictions.decoder.weight"), nullptr);  // tied
}

// Configs of every shape the layout handles: BERT and LM, tied and untied, with and without the
// output bias, pre-LN, sinusoidal positions, standard and fixed heads (I*d and I multiples of
// 64 or not), vocabularies already a multiple of 128 and not, and a fine-tuning head.
std::vector<std::pair<ModelConfig, TaskHead>> LayoutShapes() {
  std::vector<std::pair<ModelConfig, TaskHead>> shapes;
  shapes.push_back({Bert(2, 64, 3, 20, 128), {}});
  shapes.push_back({Bert(12, 768, 12, 0, 3072), {}});
  shapes.push_back({Bert(2, 512, 32, 128, 2048), {TaskHead::Kind::kSpan, 0}});
  ModelConfig untied = Bert(2, 40, 5, 7, 72);
  untied.set_tie_output_embedding(false);
  untied.set_vocab_size(256);
  shapes.push_back({untied, {TaskHead::Kind::kClassifier, 3}});
  ModelConfig lm = Bert(3, 256, 16, 32, 1024);
  lm.set_objective(ModelConfig::CAUSAL_LM);
  lm.set_vocab_size(32001);
  lm.set_norm(ModelConfig::PRE_LN);
  lm.set_position(ModelConfig::SINUSOIDAL);
  shapes.push_back({lm, {}});
  lm.set_tie_output_embedding(false);
  lm.set_output_bias(false);
  lm.set_vocab_size(12);
  shapes.push_back({lm, {}});
  return shapes;
}

// Every tensor of every shape starts at a multiple of 64 elements, except the key and value
// views of a fused QKV group, which sit right after the query (one [3I, d] weight, one [3I]
// bias) and are aligned exactly when I*d (I) is a multiple of 64.
TEST(ParameterLayoutTest, EveryTensorOffsetIsAlignedTo64Elements) {
  for (const auto& [m, head] : LayoutShapes()) {
    const ParameterLayout layout = ParameterLayout::ForModel(m, head);
    const int64_t d = m.d_model(), I = static_cast<int64_t>(m.num_heads()) * HeadSize(m);
    SCOPED_TRACE("d=" + std::to_string(d) + " I=" + std::to_string(I));
    EXPECT_EQ(layout.total() % 64, 0);
    int checked = 0;
    for (const TensorSpec& t : layout.tensors()) {
      const bool key = t.name.find("attention.self.key.") != std::string::npos;
      const bool value = t.name.find("attention.self.value.") != std::string::npos;
      if (!key && !value) {
        EXPECT_EQ(t.offset % 64, 0) << t.name << " at " << t.offset;
        ++checked;
        continue;
      }
      const std::string query =
          std::string(t.name).replace(t.name.find(key ? "key" : "value"), key ? 3 : 5, "query");
      const TensorSpec& q = layout.Get(query);
      EXPECT_EQ(t.offset, q.offset + (key ? 1 : 2) * q.numel) << t.name;
      EXPECT_EQ(t.shape, q.shape) << t.name;
      const int64_t part = t.shape.size() == 2 ? I * d : I;
      EXPECT_EQ(t.offset % 64 == 0, part % 64 == 0) << t.name;
    }
    EXPECT_GT(checked, 10);
  }
}

// The token table (and an untied decoder, and the output bias) reserve the vocabulary padded to
// a multiple of 128 rows, after the true ones, and keep the true shape; every other tensor
// reserves at most the alignment gap after it.
TEST(ParameterLayoutTest, VocabularyTensorsReserveThePaddedRows) {
  for (const auto& [m, head] : LayoutShapes()) {
    const ParameterLayout layout = ParameterLayout::ForModel(m, head);
    const int64_t V = m.vocab_size(), d = m.d_model();
    const int64_t Vp = (V + 127) / 128 * 128;
    EXPECT_EQ(PaddedVocabSize(m), Vp);
    const std::string& p = layout.prefix();
    int padded = 0;
    for (const TensorSpec& t : layout.tensors()) {
      const bool table = t.name == p + "embeddings.word_embeddings.weight" ||
                         t.name == "cls.predictions.decoder.weight" || t.name == "lm.output.weight";
      const bool bias = t.name == "cls.predictions.bias" || t.name == "lm.output.bias";
      // The rows the tensor holds, then at most the alignment gap.
      int64_t rows = t.numel;
      if (table) {
        EXPECT_EQ(t.shape, (std::vector<int64_t>{V, d})) << t.name;
        rows = Vp * d;
        ++padded;
      } else if (bias) {
        EXPECT_EQ(t.shape, (std::vector<int64_t>{V})) << t.name;
        rows = Vp;
        ++padded;
      }
      EXPECT_GE(t.reserved, rows) << t.name;
      EXPECT_LT(t.reserved, rows + 64) << t.name;
    }
    EXPECT_EQ(padded, 1 + (m.tie_output_embedding() ? 0 : 1) + (HasOutputBias(m) ? 1 : 0));
  }
}

// Fine-tuning heads come after the pre-training layout, which they leave unchanged (so a
// pre-training checkpoint fills a fine-tuning model's prefix), under Hugging Face's names.
TEST(ParameterLayoutTest, TaskHeadsAppendHfNamedTensors) {
  const ModelConfig m = Bert(2, 64, 3, 20, 128);
  const ParameterLayout base = ParameterLayout::ForModel(m);
  const ParameterLayout span = ParameterLayout::ForModel(m, {TaskHead::Kind::kSpan, 0});
  const ParameterLayout cls = ParameterLayout::ForModel(m, {TaskHead::Kind::kClassifier, 3});
  for (const ParameterLayout* l : {&span, &cls}) {
    ASSERT_EQ(l->tensors().size(), base.tensors().size() + 2);
    for (size_t i = 0; i < base.tensors().size(); ++i) {
      EXPECT_EQ(l->tensors()[i].name, base.tensors()[i].name);
      EXPECT_EQ(l->tensors()[i].offset, base.tensors()[i].offset);
    }
  }
  EXPECT_EQ(span.Get("qa_outputs.weight").shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(span.Get("qa_outputs.weight").offset, base.total());
  EXPECT_EQ(span.Get("qa_outputs.bias").offset, base.total() + 128);
  EXPECT_TRUE(span.Get("qa_outputs.weight").weight_decay);
  EXPECT_EQ(span.num_parameters(), base.num_parameters() + 2 * 64 + 2);
  EXPECT_EQ(cls.Get("classifier.weight").shape, (std::vector<int64_t>{3, 64}));
  EXPECT_FALSE(cls.Get("classifier.bias").weight_decay);
  EXPECT_EQ(cls.num_parameters(), base.num_parameters() + 3 * 64 + 3);

  ExperimentConfig e;
  *e.mutable_model() = m;
  EXPECT_EQ(ParameterLayout::ForExperiment(e).total(), base.total());
  e.mutable_finetune()->set_task(FineTuneConfig::MNLI);
  for (const char* label : {"contradiction", "entailment", "neutral"}) {
    e.mutable_finetune()->add_labels(label);
  }
  EXPECT_EQ(ParameterLayout::ForExperiment(e).total(), cls.total());
  e.mutable_finetune()->set_task(FineTuneConfig::SQUAD);
  EXPECT_EQ(ParameterLayout::ForExperiment(e).total(), span.total());
}

// The paper's tables give counts in millions; each config file must round to them.
TEST(ParameterLayoutTest, PaperConfigsReproduceTableCounts) {
  const char* src = std::getenv("HEADROOM_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "HEADROOM_SOURCE_DIR not set (ctest sets it)";
  struct Row {
    const char* file;
    int millions;
    int L, d, h, dp, ff;
  };
  const Row rows[] = {
      {"bert_std_d1024_h8", 336, 24, 1024, 8, 128, 4096},
      {"bert_std_d1024_h16", 336, 24, 1024, 16, 64, 4096},
      {"bert_std_d1024_h32", 336, 24, 1024, 32, 32, 4096},
      {"bert_fixed_d512_h8_p128", 168, 24, 512, 8, 128, 4096},
      {"bert_fixed_d512_h12_p128", 193, 24, 512, 12, 128, 4096},
      {"bert_fixed_d512_h16_p128", 218, 24, 512, 16, 128, 4096},
      {"bert_fixed_d512_h32_p128", 319, 24, 512, 32, 128, 4096},
      {"bert_fixed_d512_h8_p32", 130, 24, 512, 8, 32, 4096},
      {"bert_fixed_d512_h8_p64", 142, 24, 512, 8, 64, 4096},
      {"bert_fixed_d512_h8_p256", 218, 24, 512, 8, 256, 4096},
      {"bert_fixed_d768_h8_p128", 214, 24, 768, 8, 128, 3072},
      {"bert_fixed_d768_h12_p128", 252, 24, 768, 12, 128, 3072},
      {"bert_fixed_d768_h16_p128", 290, 24, 768, 16, 128, 3072},
      {"bert_fixed_d768_h20_p128", 327, 24, 768, 20, 128, 3072},
  };
  for (const Row& r : rows) {
    std::string path = std::string(src) + "/configs/paper/" + r.file + ".textproto";
    absl::StatusOr<ExperimentConfig> c = LoadConfig(path);
    ASSERT_TRUE(c.ok()) << c.status();
    int64_t n = ParameterLayout::ForModel(c->model()).num_parameters();
    EXPECT_EQ(n, ClosedFormBert(r.L, r.d, r.h, r.dp, r.ff)) << r.file;
    EXPECT_EQ(std::lround(n / 1e6), r.millions) << r.file << ": " << n;
  }
  absl::StatusOr<ExperimentConfig> base =
      LoadConfig(std::string(src) + "/configs/paper/bert_base.textproto");
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(ParameterLayout::ForModel(base->model()).num_parameters(), 110106428);
  absl::StatusOr<ExperimentConfig> large =
      LoadConfig(std::string(src) + "/configs/paper/bert_large.textproto");
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_EQ(ParameterLayout::ForModel(large->model()).num_parameters(), 336226108);
}

TEST(FlopsTest, HandComputedTinyBertAndLm) {
  // BERT L=1 d=4 h=2 dp=3 ff=8 V=10, S=5, 2 masked per sequence. MACs per token:
  // layer: 3*4*6 + 6*4 + 2*4*8 + 2*5*6 = 72 + 24 + 64 + 60 = 220;
  // MLM head: (2/5) * (16 + 40) = 22.4; pooler+NSP: (16 + 8) / 5 = 4.8. Total 247.2 -> x6.
  ModelConfig m = Bert(1, 4, 2, 3, 8);
  m.set_vocab_size(10);
  EXPECT_NEAR(TrainingFlopsPerToken(m, 5, 2), 6 * 247.2, 1e-9);
  // Causal LM: layer 220 + decoder 40 = 260 MACs.
  m.set_objective(ModelConfig::CAUSAL_LM);
  EXPECT_NEAR(TrainingFlopsPerToken(m, 5, 0), 6 * 260.0, 1e-9);
}

}  // namespace
}  // namespace headroom
