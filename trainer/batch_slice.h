// SliceBatch: rows of a loaded global batch (trainer/data_source.h's FeatureBatch) as the
// model's Batch (model/batch.h), for the trainer's micro-batches, evaluation and probes.
//
// A separate file because data_source.h must not include model/batch.h (both declare a
// `headroom::Batch`).
//
// Example:
//   HR_ASSIGN_OR_RETURN(FeatureBatch f, source->Next());
//   Batch micro = SliceBatch(f, /*bert=*/false, j * micro_size, micro_size, seq, 0);
#ifndef HEADROOM_TRAINER_BATCH_SLICE_H_
#define HEADROOM_TRAINER_BATCH_SLICE_H_

#include <cstdint>

#include "model/batch.h"
#include "trainer/data_source.h"

namespace headroom {

// Rows [row, row + rows) of `f` (sequence length `seq`, `max_pred` masked slots for BERT) as a
// Batch: BERT's features when `bert`, else the LM `targets` (with `targets_segmentation` and
// `targets_position` when the shards are packed). The rows must exist in `f`.
Batch SliceBatch(const FeatureBatch& f, bool bert, int64_t row, int rows, int seq, int max_pred);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_BATCH_SLICE_H_
