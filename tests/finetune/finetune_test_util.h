// Fixtures shared by the fine-tuning tests: a tiny BERT checkpoint with random weights and its
// vocabulary, and a separable sentence classification TSV.
#ifndef HEADROOM_TESTS_FINETUNE_FINETUNE_TEST_UTIL_H_
#define HEADROOM_TESTS_FINETUNE_FINETUNE_TEST_UTIL_H_

#include <string>
#include <vector>

#include "base/file.h"
#include "config/load.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "model/transformer.h"
#include "trainer/checkpoint.h"

namespace headroom::testing {

inline const std::vector<std::string> kVocab = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the",  "cat",  "dog", "sat",
    "ran",   "on",    "mat",   "rug",   "a",      "red",  "blue", "who", "where",
    "what",  "?",     ".",     "good",  "bad",    "film", "is",   "was", "very"};

// A tiny pre-trained BERT (random weights) at DIR/pretrain/checkpoints/step-00000007, with its
// vocab.txt at DIR/vocab.txt. head_size 0: standard; else fixed.
inline std::string WriteTinyCheckpoint(const std::string& dir, int head_size = 0) {
  const std::string vocab = dir + "/vocab.txt";
  std::string text;
  for (const std::string& t : kVocab) text += t + "\n";
  EXPECT_TRUE(WriteFileAtomically(vocab, text).ok());
  ExperimentConfig c;
  c.set_name("tiny");
  ModelConfig& m = *c.mutable_model();
  m.set_objective(ModelConfig::BERT);
  m.set_vocab_size(static_cast<int>(kVocab.size()));
  m.set_max_positions(64);
  m.set_type_vocab_size(2);
  m.set_num_layers(2);
  m.set_d_model(16);
  m.set_num_heads(2);
  m.set_head_size(head_size);
  m.set_ffn_size(32);
  m.set_initializer_range(0.2f);  // distinct [CLS] outputs from the start: a quick task
  c.mutable_data()->set_seq_length(32);
  c.mutable_data()->set_vocab_file(vocab);
  c.mutable_train()->set_steps(7);
  c.mutable_train()->set_global_batch_size(2);
  FillDefaults(c);
  EXPECT_TRUE(ValidateConfig(c, "tiny").ok());
  CpuOps<float> ops(1);
  auto model = Model<float>::Create(m, &ops, {1, 8, 1}).value();
  model->InitParameters(99);
  const std::vector<float> params = model->GetParameters();
  TrainerState st;
  st.step = 7;
  google::protobuf::TextFormat::PrintToString(c, &st.config_text);
  auto saved =
      SaveCheckpoint(dir + "/pretrain", model->layout(), params.data(), nullptr, nullptr, st, 1);
  EXPECT_TRUE(saved.ok()) << saved.status();
  return *saved;
}

inline void Write(const std::string& path, const std::string& text) {
  ASSERT_TRUE(WriteFileAtomically(path, text).ok());
}

// "the cat sat" -> good, "a dog ran" -> bad, with a few variations: separable by word.
inline std::string ClassifyTsv(int copies) {
  std::string t = "sentence\tlabel\n";
  for (int i = 0; i < copies; ++i) {
    t += "the cat sat on the mat\tgood\n";
    t += "a red cat sat\tgood\n";
    t += "a dog ran on the rug\tbad\n";
    t += "the blue dog ran\tbad\n";
  }
  return t;
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_FINETUNE_FINETUNE_TEST_UTIL_H_
