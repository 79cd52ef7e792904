// Hugging Face interop: config.json round trip (standard and fixed head size, which adds
// "head_size"), the fields transformers' BertConfig writes, unsupported settings refused, and
// weights found under BertForPreTraining, BertModel and gamma/beta names, converted from F16
// and BF16, with missing encoder tensors and wrong shapes as one-line errors.
#include "trainer/hugging_face.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "config/load.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace headroom {
namespace {

using ::testing::HasSubstr;

ExperimentConfig Bert(int head_size) {
  ExperimentConfig c;
  ModelConfig& m = *c.mutable_model();
  m.set_objective(ModelConfig::BERT);
  m.set_vocab_size(30);
  m.set_max_positions(16);
  m.set_type_vocab_size(2);
  m.set_num_layers(1);
  m.set_d_model(8);
  m.set_num_heads(2);
  m.set_head_size(head_size);
  m.set_ffn_size(12);
  FillDefaults(c);
  return c;
}

TEST(HuggingFaceConfig, RoundTripsStandardAndFixedHeadSize) {
  for (int head_size : {0, 6}) {
    const ExperimentConfig c = Bert(head_size);
    const std::string text = HuggingFaceConfigJson(c);
    const nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_EQ(j["hidden_size"], 8);
    EXPECT_EQ(j["num_attention_heads"], 2);
    EXPECT_EQ(j["intermediate_size"], 12);
    EXPECT_EQ(j["hidden_act"], "gelu");
    EXPECT_EQ(j["architectures"][0], "BertForPreTraining");
    EXPECT_EQ(j.contains("head_size"), head_size != 0);
    absl::StatusOr<ModelConfig> back = ParseHuggingFaceConfig(text, "config.json");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->SerializeAsString(), c.model().SerializeAsString());
  }
  ExperimentConfig squad = Bert(0);
  squad.mutable_finetune()->set_task(FineTuneConfig::SQUAD);
  EXPECT_THAT(HuggingFaceConfigJson(squad), HasSubstr("BertForQuestionAnswering"));
  ExperimentConfig cls = Bert(0);
  cls.mutable_finetune()->set_task(FineTuneConfig::CLASSIFY);
  cls.mutable_finetune()->add_labels("ham");
  cls.mutable_finetune()->add_labels("spam");
  const nlohmann::json j = nlohmann::json::parse(HuggingFaceConfigJson(cls));
  EXPECT_EQ(j["id2label"]["1"], "spam");
  EXPECT_EQ(j["label2id"]["ham"], 0);
}

TEST(HuggingFaceConfig, RefusesWhatHeadroomDoesNotImplement) {
  const std::string base = HuggingFaceConfigJson(Bert(0));
  auto with = [&](const std::string& key, const std::string& value) {
    nlohmann::json j = nlohmann::json::parse(base);
    j[key] = nlohmann::json::parse(value);
    return ParseHuggingFaceConfig(j.dump(), "config.json");
  };
  absl::StatusOr<ModelConfig> r = with("hidden_act", "\"gelu_new\"");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "config.json: \"hidden_act\" is \"gelu_new\"; headroom supports \"gelu\" only");
  EXPECT_FALSE(with("position_embedding_type", "\"relative_key\"").ok());
  EXPECT_FALSE(with("hidden_size", "\"8\"").ok());
  EXPECT_FALSE(with("num_attention_heads", "3").ok());  // 3 does not divide 8, no head_size
  nlohmann::json j = nlohmann::json::parse(base);
  j.erase("vocab_size");
  r = ParseHuggingFaceConfig(j.dump(), "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "config.json: \"vocab_size\" is missing");
}

// Half and bfloat16 encodings of a few exactly representable values.
std::vector<uint16_t> Encode(const std::vector<float>& v, bool bf16) {
  std::vector<uint16_t> out;
  for (float x : v) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if (bf16) {
      out.push_back(static_cast<uint16_t>(bits >> 16));
    } else if ((bits & 0x7FFFFFFF) == 0) {  // signed zero
      out.push_back(static_cast<uint16_t>(bits >> 16));
    } else {  // normal numbers: sign, rebiased exponent, top 10 mantissa bits
      const uint32_t sign = (bits >> 16) & 0x8000, exp = ((bits >> 23) & 0xFF) - 127 + 15;
      out.push_back(static_cast<uint16_t>(sign | (exp << 10) | ((bits >> 13) & 0x3FF)));
    }
  }
  return out;
}

TEST(CopyHuggingFaceWeights, FindsEveryNamingAndConvertsHalfPrecision) {
  const ParameterLayout layout = ParameterLayout::ForModel(Bert(0).model());
  std::vector<std::vector<float>> values;
  SafeTensorsWriter w;
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(layout.tensors().size());
  values.reserve(layout.tensors().size());
  int i = 0;
  for (const TensorSpec& t : layout.tensors()) {
    if (t.name.rfind("cls.", 0) == 0) continue;  // a BertModel file has no pre-training heads
    std::vector<float> v(static_cast<size_t>(t.numel));
    for (size_t k = 0; k < v.size(); ++k) v[k] = 0.25f * static_cast<float>((k + i) % 7) - 0.75f;
    values.push_back(v);
    std::string name = t.name.substr(5);  // no "bert." prefix
    if (name.ends_with("LayerNorm.weight")) name.replace(name.size() - 6, 6, "gamma");
    if (name.ends_with("LayerNorm.bias")) name.replace(name.size() - 4, 4, "beta");
    const DType dtype = i % 3 == 0 ? DType::kF32 : (i % 3 == 1 ? DType::kF16 : DType::kBF16);
    if (dtype == DType::kF32) {
      ASSERT_TRUE(w.AddF32(name, t.shape, values.back().data()).ok());
    } else {
      halves.push_back(Encode(values.back(), dtype == DType::kBF16));
      ASSERT_TRUE(w.Add(name, dtype, t.shape, halves.back().data(), 2 * halves.back().size()).ok());
    }
    ++i;
  }
  absl::StatusOr<SafeTensorsFile> f = SafeTensorsFile::Parse(w.Serialize(), "model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  std::vector<float> params(static_cast<size_t>(layout.total()), 9.0f);
  absl::StatusOr<std::vector<std::string>> absent = CopyHuggingFaceWeights(*f, layout, params);
  ASSERT_TRUE(absent.ok()) << absent.status();
  size_t v = 0;
  for (const TensorSpec& t : layout.tensors()) {
    if (t.name.rfind("cls.", 0) == 0) {
      EXPECT_EQ(params[t.offset], 9.0f) << t.name;  // absent: kept, and reported
      EXPECT_NE(std::find(absent->begin(), absent->end(), t.name), absent->end());
      continue;
    }
    for (int64_t k = 0; k < t.numel; ++k) {
      ASSERT_EQ(params[t.offset + k], values[v][k]) << t.name << " " << k;
    }
    ++v;
  }

  // A model of another width: a shape error naming the tensor; a missing encoder tensor.
  const ParameterLayout wide = ParameterLayout::ForModel(Bert(6).model());
  std::vector<float> p2(static_cast<size_t>(wide.total()));
  absl::StatusOr<std::vector<std::string>> bad = CopyHuggingFaceWeights(*f, wide, p2);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("attention.self.query.weight has shape [8, 8]"));
  SafeTensorsWriter empty;
  float x = 0;
  ASSERT_TRUE(empty.AddF32("unrelated", {1}, &x).ok());
  absl::StatusOr<SafeTensorsFile> e =
      SafeTensorsFile::Parse(empty.Serialize(), "other.safetensors");
  ASSERT_TRUE(e.ok());
  bad = CopyHuggingFaceWeights(*e, layout, params);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("other.safetensors: no tensor bert.embeddings.word_embeddings.weight"));
}

}  // namespace
}  // namespace headroom
