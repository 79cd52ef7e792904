// A host-side training batch, in the feature names of Google BERT and tensor2tensor.
//
// The data loader (data/) fills a Batch from tf.Example records; Model<T>::Forward
// (model/transformer.h) validates it and copies it to the device. Field names and meanings are
// those of Google BERT's `create_pretraining_data.py` features and of tensor2tensor's language
// model problems, so shards made by those tools map one to one:
//
//   BERT (ModelConfig::BERT), B sequences of S tokens, M = max_predictions slots per sequence:
//     input_ids            [B*S]  token ids (0 = [PAD])
//     input_mask           [B*S]  1 for real tokens, 0 for padding (padded keys get no attention)
//     segment_ids          [B*S]  token type, 0 or 1
//     masked_lm_positions  [B*M]  position within the sequence of each prediction slot
//     masked_lm_ids        [B*M]  the original token at that position (the label)
//     masked_lm_weights    [B*M]  1.0 for real slots, 0.0 for padding slots
//     next_sentence_labels [B]    0 = B follows A ("IsNext"), 1 = random B
//
//   Causal LM (ModelConfig::CAUSAL_LM), tensor2tensor's convention:
//     targets              [B*S]  token ids, 0 = padding (excluded from the loss)
//   The model reads `shift_right(targets)` (position 0 gets id 0, position s gets
//   targets[s-1]) and predicts targets[s] at position s, for every s with targets[s] != 0.
//   Packed rows (tensor2tensor's packed problems, `prepare-lm --pack`) add, both or neither:
//     targets_segmentation [B*S]  sentence of each token, 1, 2, ... per row; 0 exactly at padding
//     targets_position     [B*S]  position of each token within its sentence: 0, 1, ...
//   Each sentence is then its own sequence: its first input is id 0 (not the previous
//   sentence's last token, unlike tensor2tensor's shift over the whole row), its positions
//   restart at 0, and attention stays inside it (kernels/ops.h segments), so a packed row
//   computes exactly the losses of its sentences laid out one per row.
//
// Example:
//   Batch b = RandomBatch(config.model(), /*batch_size=*/32, /*seq_length=*/128,
//                         /*max_predictions=*/20, /*seed=*/1);
//   absl::Status s = ValidateBatch(config.model(), b);
#ifndef HEADROOM_MODEL_BATCH_H_
#define HEADROOM_MODEL_BATCH_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "config/config.pb.h"

namespace headroom {

struct Batch {
  int batch_size = 0;       // B
  int seq_length = 0;       // S
  int max_predictions = 0;  // M (BERT only; 0 for the causal LM)

  // BERT.
  std::vector<int32_t> input_ids;
  std::vector<int32_t> input_mask;
  std::vector<int32_t> segment_ids;
  std::vector<int32_t> masked_lm_positions;
  std::vector<int32_t> masked_lm_ids;
  std::vector<float> masked_lm_weights;
  std::vector<int32_t> next_sentence_labels;

  // Causal LM.
  std::vector<int32_t> targets;
  // Packed causal LM (empty when not packed).
  std::vector<int32_t> targets_segmentation;
  std::vector<int32_t> targets_position;
};

// Checks that the fields of `model`'s objective have the sizes above and that every id, position
// and label is in range (token ids < vocab_size, segment ids < type_vocab_size, positions < S,
// S <= max_positions, mask values 0/1, NSP labels 0/1, weights >= 0), and that packed features
// are consistent (a sentence is one run of one id, 0 exactly at padding, positions counting from
// 0 in each sentence). InvalidArgument names the field and the first offending index.
[[nodiscard]] absl::Status ValidateBatch(const ModelConfig& model, const Batch& batch);

// The encoder's inputs alone (BERT: batch_size, seq_length, input_ids, input_mask,
// segment_ids), for fine-tuning, whose batches carry no pre-training fields. Same messages.
[[nodiscard]] absl::Status ValidateEncoderInputs(const ModelConfig& model, const Batch& batch);

// A batch of uniformly random tokens for benchmarks and tests, deterministic in `seed`.
// BERT: sequences of random length in [S/2, S] (the rest padding), two segments, M prediction
// slots of which a random number in [1, M] are used (distinct positions, not [CLS]), random NSP
// labels. Causal LM: random non-zero targets with a random amount of trailing padding (at most
// S/4). Token ids are drawn from [1, vocab_size).
Batch RandomBatch(const ModelConfig& model, int batch_size, int seq_length, int max_predictions,
                  uint64_t seed);

}  // namespace headroom

#endif  // HEADROOM_MODEL_BATCH_H_
