// ZeRO-1's split of the gradient buckets over the ranks; see zero_shard.h.
#include "trainer/zero_shard.h"

#include <algorithm>

namespace headroom {

BucketSplit SplitBucket(const GradientBucket& bucket, int ranks) {
  BucketSplit s;
  const int64_t n = bucket.end - bucket.begin;
  s.chunk = n / ranks;
  s.tail = n - s.chunk * ranks;
  return s;
}

ZeroShard PlanZeroShard(const std::vector<GradientBucket>& buckets, int rank, int ranks) {
  ZeroShard shard;
  // The rank's part of each bucket; buckets come in launch order (decreasing offsets).
  std::vector<std::pair<ShardRange, size_t>> parts;
  for (size_t k = 0; k < buckets.size(); ++k) {
    const BucketSplit s = SplitBucket(buckets[k], ranks);
    ShardRange r;
    r.begin = buckets[k].begin + rank * s.chunk;
    r.end = r.begin + s.chunk + (rank == ranks - 1 ? s.tail : 0);
    parts.push_back({r, k});
  }
  std::sort(parts.begin(), parts.end(),
            [](const auto& a, const auto& b) { return a.first.begin < b.first.begin; });
  shard.bucket_offset.assign(buckets.size(), 0);
  for (auto& [r, k] : parts) {
    r.offset = shard.numel;
    shard.bucket_offset[k] = shard.numel;
    shard.numel += r.numel();
    if (r.numel() > 0) shard.ranges.push_back(r);
  }
  return shard;
}

}  // namespace headroom
