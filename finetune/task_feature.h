// One fine-tuning input as BERT's fine-tuning scripts build it, and batches of them.
//
// Every task (SQuAD, MNLI, sentence classification) feeds the encoder the same layout, Google
// BERT's run_squad.py / run_classifier.py:
//
//   position   0      1 .. |A|    |A|+1   |A|+2 .. |A|+|B|+1   |A|+|B|+2     (padding)
//   token      [CLS]  A tokens    [SEP]   B tokens             [SEP]         0
//   segment    0      0           0       1                    1             0
//   input_mask 1      1           1       1                    1             0
//
// (a single sentence is [CLS] A [SEP]). A TaskFeature keeps the unpadded ids and where segment
// B starts; MakeTaskBatch pads rows to the batch's sequence length. Targets: a class index for
// classification, start and end token positions for SQuAD (0, the [CLS] position, when the
// answer lies outside the feature's window).
//
// Example:
//   std::vector<const TaskFeature*> rows = {&features[3], &features[7]};
//   TaskBatch b = MakeTaskBatch(rows, /*seq_length=*/128);   // b.inputs.batch_size == 2
#ifndef HEADROOM_FINETUNE_TASK_FEATURE_H_
#define HEADROOM_FINETUNE_TASK_FEATURE_H_

#include <cstdint>
#include <vector>

#include "model/task_model.h"

namespace headroom {

struct TaskFeature {
  std::vector<int32_t> input_ids;  // [CLS] A [SEP] (B [SEP]), unpadded
  // First position of segment B; input_ids.size() when there is no B.
  int32_t segment_b_start = 0;
  int32_t label = -1;           // classification target (index into the task's labels), or -1
  int32_t start_position = -1;  // SQuAD training targets (token positions), or -1
  int32_t end_position = -1;
};

// A window of a token sequence: tokens [start, start + length).
struct TokenWindow {
  int start = 0;
  int length = 0;
};

// run_squad.py's doc spans over `num_tokens` tokens: windows of at most `max_tokens` tokens
// (>= 1) starting at 0 and then every min(length, stride) tokens (stride >= 1) until one reaches
// the end. No window for 0 tokens. Example: 10 tokens, max 4, stride 3 -> [0,4) [3,7) [6,10).
std::vector<TokenWindow> TokenWindows(int num_tokens, int max_tokens, int stride);

// The rows, each padded with id 0 (mask 0, segment 0) to `seq_length` (>= every row's length),
// with their targets: TaskBatch::labels from `label`, start/end positions from the SQuAD
// targets (targets of -1 stay -1: no loss for that row's head).
TaskBatch MakeTaskBatch(const std::vector<const TaskFeature*>& rows, int seq_length);

}  // namespace headroom

#endif  // HEADROOM_FINETUNE_TASK_FEATURE_H_
