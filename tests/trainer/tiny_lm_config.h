// The tiny causal LM the trainer tests train (a step takes milliseconds): vocabulary 16,
// 8 positions, d_model 8, 2 heads of 4, FFN 16, sequences of 8 tokens. Each test adds its own
// train block (and, where it needs them, more model fields).
#ifndef HEADROOM_TESTS_TRAINER_TINY_LM_CONFIG_H_
#define HEADROOM_TESTS_TRAINER_TINY_LM_CONFIG_H_

#include <string>

namespace headroom::testing {

// The config text `name: "tiny_lm"`, the model with `num_layers` layers and `model_extra`
// (fields not set here, e.g. "hidden_dropout: 0"), `data { seq_length: 8 }`, then `rest` (the
// train block).
inline std::string TinyLmConfig(const std::string& rest, int num_layers = 1,
                                const std::string& model_extra = "") {
  return R"pb(
           name: "tiny_lm"
           model { objective: CAUSAL_LM vocab_size: 16 max_positions: 8 num_layers:)pb" +
         std::to_string(num_layers) + R"pb(
           d_model: 8 num_heads: 2 head_size: 4 ffn_size: 16
         )pb" +
         model_extra +
         R"pb(
           }
           data { seq_length: 8 }
)pb" + rest;
}

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_TRAINER_TINY_LM_CONFIG_H_
