// ZeRO-1's partition of the flat parameter buffer over the data-parallel ranks (pure
// arithmetic: the trainer, the optimizer and the memory model of `headroom params` /
// `headroom scaling` all use it).
//
// The flat buffer is already cut into gradient buckets (comm/gradient_buckets.h), each a
// contiguous range of whole tensors reduced by one collective. ZeRO-1 splits EVERY BUCKET over
// the R ranks, so that a bucket's reduction stays one collective that starts as soon as
// backward has produced the bucket:
//
//   bucket [begin, end), n = end - begin, chunk = n / R, tail = n - R * chunk (< R):
//   rank r < R-1 owns [begin + r * chunk, begin + (r+1) * chunk)
//   rank R-1     owns [begin + (R-1) * chunk, end)          (its chunk plus the tail)
//
// The R equal chunks are exactly what an equal-count reduce-scatter (MPI_Reduce_scatter_block,
// ncclReduceScatter) delivers and an in-place all-gather (MPI_Allgather, ncclAllGather)
// collects; the tail of fewer than R elements goes with a small all-reduce of its own
// (trainer/data_parallel.h). A rank's shard is the union of its ranges over all buckets, about
// 1/R of every bucket and so of the whole buffer (R - 1 elements more per bucket at most).
//
// The rank keeps its shard's optimizer state compactly: range k of the shard, flat elements
// [begin, end), lives at [offset, offset + end - begin) of the rank's shard buffers (the
// reduced gradient, m and v), ranges in increasing flat order.
//
// Example:
//   ZeroShard shard = PlanZeroShard(dp.buckets(), comm.rank(), comm.size());
//   // shard.numel elements of m and v instead of layout.total()
#ifndef HEADROOM_TRAINER_ZERO_SHARD_H_
#define HEADROOM_TRAINER_ZERO_SHARD_H_

#include <cstdint>
#include <vector>

#include "comm/gradient_buckets.h"

namespace headroom {

// Flat elements [begin, end) held at [offset, offset + numel()) of a rank's shard buffers.
struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t offset = 0;
  int64_t numel() const { return end - begin; }
};

// How one bucket of n elements splits over `ranks` (see the file comment).
struct BucketSplit {
  int64_t chunk = 0;  // n / ranks: each rank's part of the reduce-scatter / all-gather
  int64_t tail = 0;   // n - ranks * chunk, owned by the last rank
};
BucketSplit SplitBucket(const GradientBucket& bucket, int ranks);

// One rank's shard of the buckets.
struct ZeroShard {
  // Non-empty ranges in increasing flat order, offsets their prefix sums.
  std::vector<ShardRange> ranges;
  // bucket k -> offset in the shard buffers of this rank's part of bucket k (where its
  // reduce-scatter lands; the part may be empty).
  std::vector<int64_t> bucket_offset;
  // Elements of the shard (the sum of the ranges' sizes).
  int64_t numel = 0;
};

// The shard of `rank` (0 <= rank < ranks) for `buckets` as GradientBuckets plans them. With one
// rank the shard is every bucket whole.
ZeroShard PlanZeroShard(const std::vector<GradientBucket>& buckets, int rank, int ranks);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_ZERO_SHARD_H_
