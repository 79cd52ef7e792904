// Token windows and padding TaskFeatures into a TaskBatch; see task_feature.h for the layout.
#include "finetune/task_feature.h"

#include <algorithm>
#include <cassert>

namespace headroom {

std::vector<TokenWindow> TokenWindows(int num_tokens, int max_tokens, int stride) {
  assert(max_tokens >= 1 && stride >= 1);
  std::vector<TokenWindow> windows;
  for (int start = 0; start < num_tokens;) {
    const int length = std::min(num_tokens - start, max_tokens);
    windows.push_back({start, length});
    if (start + length == num_tokens) break;
    start += std::min(length, stride);
  }
  return windows;
}

TaskBatch MakeTaskBatch(const std::vector<const TaskFeature*>& rows, int seq_length) {
  TaskBatch t;
  Batch& b = t.inputs;
  const int B = static_cast<int>(rows.size()), S = seq_length;
  b.batch_size = B;
  b.seq_length = S;
  b.input_ids.assign(static_cast<size_t>(B) * S, 0);
  b.input_mask.assign(static_cast<size_t>(B) * S, 0);
  b.segment_ids.assign(static_cast<size_t>(B) * S, 0);
  bool span = false, label = false;
  for (const TaskFeature* f : rows) {
    span = span || f->start_position >= 0;
    label = label || f->label >= 0;
  }
  for (int r = 0; r < B; ++r) {
    const TaskFeature& f = *rows[r];
    const int n = static_cast<int>(f.input_ids.size());
    assert(n <= S && "a feature longer than the batch's sequence length");
    for (int s = 0; s < n; ++s) {
      b.input_ids[r * S + s] = f.input_ids[s];
      b.input_mask[r * S + s] = 1;
      b.segment_ids[r * S + s] = s >= f.segment_b_start ? 1 : 0;
    }
    if (span) {
      t.start_positions.push_back(f.start_position);
      t.end_positions.push_back(f.end_position);
    }
    if (label) t.labels.push_back(f.label);
  }
  return t;
}

}  // namespace headroom
