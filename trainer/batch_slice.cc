// SliceBatch: see batch_slice.h.
#include "trainer/batch_slice.h"

#include <string>
#include <vector>

namespace headroom {

Batch SliceBatch(const FeatureBatch& f, bool bert, int64_t row, int rows, int seq, int max_pred) {
  Batch b;
  b.batch_size = rows;
  b.seq_length = seq;
  b.max_predictions = bert ? max_pred : 0;
  auto ints = [&](const char* name, int width) {
    const std::vector<int32_t>& v = f.ints.at(name);
    return std::vector<int32_t>(v.begin() + row * width, v.begin() + (row + rows) * width);
  };
  if (bert) {
    b.input_ids = ints("input_ids", seq);
    b.input_mask = ints("input_mask", seq);
    b.segment_ids = ints("segment_ids", seq);
    b.masked_lm_positions = ints("masked_lm_positions", max_pred);
    b.masked_lm_ids = ints("masked_lm_ids", max_pred);
    const std::vector<float>& w = f.floats.at("masked_lm_weights");
    b.masked_lm_weights.assign(w.begin() + row * max_pred, w.begin() + (row + rows) * max_pred);
    b.next_sentence_labels = ints("next_sentence_labels", 1);
  } else {
    b.targets = ints("targets", seq);
    if (f.ints.count("targets_segmentation") > 0) {  // packed shards (data_source.h)
      b.targets_segmentation = ints("targets_segmentation", seq);
      b.targets_position = ints("targets_position", seq);
    }
  }
  return b;
}

}  // namespace headroom
