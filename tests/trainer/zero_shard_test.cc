// PlanZeroShard (trainer/zero_shard.h) against the rule written out by hand: every bucket's
// elements are owned by exactly one rank, rank r owning chunk r of each bucket and the last rank
// the tail; shard offsets are compact; one rank owns everything.
#include "trainer/zero_shard.h"

#include <vector>

#include "gtest/gtest.h"

namespace headroom {
namespace {

// Buckets as GradientBuckets::Plan makes them: launch order, decreasing offsets.
std::vector<GradientBucket> Buckets() {
  // [30, 40) n = 10, [20, 30) n = 10, [18, 20) n = 2 (smaller than 3 ranks), [0, 18) n = 18.
  return {{30, 40, {3}}, {20, 30, {2}}, {18, 20, {1}}, {0, 18, {0}}};
}

TEST(ZeroShardTest, SplitIsEqualChunksAndATailForTheLastRank) {
  EXPECT_EQ(SplitBucket({0, 10, {}}, 3).chunk, 3);
  EXPECT_EQ(SplitBucket({0, 10, {}}, 3).tail, 1);
  EXPECT_EQ(SplitBucket({4, 6, {}}, 3).chunk, 0);
  EXPECT_EQ(SplitBucket({4, 6, {}}, 3).tail, 2);
  EXPECT_EQ(SplitBucket({0, 18, {}}, 3).tail, 0);
}

TEST(ZeroShardTest, ThreeRanksOwnEveryElementOnce) {
  const std::vector<GradientBucket> buckets = Buckets();
  std::vector<int> owner(40, -1);
  int64_t total = 0;
  for (int r = 0; r < 3; ++r) {
    const ZeroShard s = PlanZeroShard(buckets, r, 3);
    int64_t offset = 0, last_end = -1;
    for (const ShardRange& range : s.ranges) {
      EXPECT_GT(range.numel(), 0);
      EXPECT_GE(range.begin, last_end) << "increasing, non-overlapping";
      EXPECT_EQ(range.offset, offset) << "compact";
      offset += range.numel();
      last_end = range.end;
      for (int64_t i = range.begin; i < range.end; ++i) {
        EXPECT_EQ(owner[i], -1) << "element " << i << " owned twice";
        owner[i] = r;
      }
    }
    EXPECT_EQ(s.numel, offset);
    total += s.numel;
  }
  EXPECT_EQ(total, 40);
  // By hand: [0, 18): 6 each; [18, 20): both to rank 2; [20, 30): 3, 3, 3 + 1; [30, 40) alike.
  const std::vector<int> expected = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                     0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
  EXPECT_EQ(owner, expected);
}

TEST(ZeroShardTest, BucketOffsetIsWhereTheRanksPartLands) {
  const ZeroShard s = PlanZeroShard(Buckets(), 1, 3);
  // Rank 1's ranges in flat order: [6, 12) at 0, [23, 26) at 6, [33, 36) at 9; bucket [18, 20)
  // gives it nothing (offset where it would land: 6).
  ASSERT_EQ(s.ranges.size(), 3u);
  EXPECT_EQ(s.bucket_offset, (std::vector<int64_t>{9, 6, 6, 0}));
  EXPECT_EQ(s.numel, 12);
}

TEST(ZeroShardTest, OneRankOwnsEveryBucketWhole) {
  const ZeroShard s = PlanZeroShard(Buckets(), 0, 1);
  ASSERT_EQ(s.ranges.size(), 4u);
  EXPECT_EQ(s.numel, 40);
  EXPECT_EQ(s.ranges.front().begin, 0);
  EXPECT_EQ(s.ranges.back().end, 40);
}

}  // namespace
}  // namespace headroom
