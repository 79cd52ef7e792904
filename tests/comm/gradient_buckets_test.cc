// GradientBuckets: the bucket plan (reverse layout order, contiguous, size threshold), the
// launch rule (ready AND every earlier bucket started) against a recording fake communicator,
// and the reduced values against the closed-form average over MPI ranks (ctest runs this
// binary under mpirun -np 2 and -np 3), including ranks that mark tensors in different orders.
#include "comm/gradient_buckets.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "comm/single_process_communicator.h"
#include "gtest/gtest.h"
#include "tests/comm/test_comm.h"

namespace headroom {
namespace {

// A miniature parameter layout: embeddings (layer -1), `layers` layers of 4 tensors, heads
// (layer -1), contiguous in that order, sizes in elements.
std::vector<GradientTensor> MiniLayout(int layers, int64_t width) {
  std::vector<GradientTensor> t;
  int64_t offset = 0;
  auto add = [&](int64_t n, int layer) {
    t.push_back({offset, n, layer});
    offset += n;
  };
  add(10 * width, -1);  // token embedding
  add(width, -1);       // LayerNorm
  for (int l = 0; l < layers; ++l) {
    add(width * width, l);
    add(width, l);
    add(2 * width * width, l);
    add(width + 1, l);  // odd size
  }
  add(width * width, -1);  // pooler
  add(3, -1);              // NSP bias
  return t;
}

int64_t TotalElements(const std::vector<GradientTensor>& t) {
  int64_t end = 0;
  for (const GradientTensor& x : t) end = std::max(end, x.offset + x.numel);
  return end;
}

// Records every all-reduce (its offset in the buffer) and completes it at once, summing
// nothing: for testing when and in which order buckets launch.
class RecordingCommunicator : public SingleProcessCommunicator {
 public:
  explicit RecordingCommunicator(const float* base) : base_(base) {}
  absl::StatusOr<CommHandle> AllReduceAsync(const void* send, void* recv, size_t count,
                                            DataType type, ReduceOp op) override {
    launches.push_back({static_cast<const float*>(send) - base_, static_cast<int64_t>(count)});
    return SingleProcessCommunicator::AllReduceAsync(send, recv, count, type, op);
  }
  struct Launch {
    int64_t begin, count;
  };
  std::vector<Launch> launches;

 private:
  const float* base_;
};

TEST(GradientBucketsPlanTest, BucketsAreContiguousAndCutFromTheEndOfTheBuffer) {
  std::vector<GradientTensor> t = MiniLayout(6, 16);
  absl::StatusOr<std::vector<GradientBucket>> plan = GradientBuckets::Plan(t, 4000);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_GT(plan->size(), 2u);
  // Bucket 0 ends where the buffer ends; each bucket starts where the previous one began.
  EXPECT_EQ(plan->front().end, TotalElements(t));
  EXPECT_EQ(plan->back().begin, 0);
  for (size_t k = 1; k < plan->size(); ++k) EXPECT_EQ((*plan)[k].end, (*plan)[k - 1].begin);
  // Every tensor is in exactly one bucket; every bucket but the last reaches the threshold.
  std::vector<int> seen(t.size(), 0);
  for (size_t k = 0; k < plan->size(); ++k) {
    for (int i : (*plan)[k].tensors) {
      ++seen[i];
      EXPECT_GE(t[i].offset, (*plan)[k].begin);
      EXPECT_LE(t[i].offset + t[i].numel, (*plan)[k].end);
    }
    if (k + 1 < plan->size()) {
      EXPECT_GE((*plan)[k].bytes(), 4000);
    }
  }
  EXPECT_EQ(seen, std::vector<int>(t.size(), 1));
  // The heads and the last layer come first: bucket 0 holds the highest-offset tensor.
  EXPECT_EQ(plan->front().tensors.front(), static_cast<int>(t.size()) - 1);
}

TEST(GradientBucketsPlanTest, ATensorLargerThanABucketGetsItsOwnBucket) {
  std::vector<GradientTensor> t = {{0, 10, -1}, {10, 1000000, 0}, {1000010, 10, 1}};
  absl::StatusOr<std::vector<GradientBucket>> plan = GradientBuckets::Plan(t, 1024);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->size(), 2u);  // {tensor 2, tensor 1} closes at 1M elements; {tensor 0}
  EXPECT_EQ((*plan)[0].tensors, (std::vector<int>{2, 1}));
  EXPECT_EQ((*plan)[1].tensors, (std::vector<int>{0}));
}

TEST(GradientBucketsPlanTest, DefaultBucketIs25MB) {
  EXPECT_EQ(GradientBucketsOptions().bucket_bytes, 25 * 1024 * 1024);
}

TEST(GradientBucketsPlanTest, OverlappingOrNegativeTensorsAreRejected) {
  EXPECT_EQ(GradientBuckets::Plan({{0, 10, 0}, {5, 10, 1}}, 64).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GradientBuckets::Plan({{0, -1, 0}}, 64).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GradientBuckets::Plan({{0, 1, 0}}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<GradientBucket>> empty = GradientBuckets::Plan({}, 64);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(GradientBucketsLaunchTest, BucketsLaunchInReverseLayerOrderAsBackwardMarksLayers) {
  std::vector<GradientTensor> t = MiniLayout(4, 16);
  std::vector<float> grads(TotalElements(t));
  RecordingCommunicator comm(grads.data());
  absl::StatusOr<std::unique_ptr<GradientBuckets>> b =
      GradientBuckets::Create(&comm, grads.data(), t, {.bucket_bytes = 2048});
  ASSERT_TRUE(b.ok()) << b.status();
  const std::vector<GradientBucket>& buckets = (*b)->buckets();
  // Backward: heads (the last two tensors), layers 3..0, then the embeddings.
  ASSERT_TRUE((*b)->MarkReady(static_cast<int>(t.size()) - 1).ok());
  ASSERT_TRUE((*b)->MarkReady(static_cast<int>(t.size()) - 2).ok());
  int launched_before = (*b)->launched();
  for (int layer = 3; layer >= 0; --layer) {
    ASSERT_TRUE((*b)->MarkLayerReady(layer).ok());
    EXPECT_GE((*b)->launched(), launched_before) << "launches never go back";
    launched_before = (*b)->launched();
  }
  // Everything but the embeddings' bucket(s) has started before backward finishes.
  EXPECT_GE((*b)->launched(), 1);
  EXPECT_LT((*b)->launched(), static_cast<int>(buckets.size()));
  ASSERT_TRUE((*b)->MarkReady(1).ok());
  ASSERT_TRUE((*b)->MarkReady(0).ok());
  EXPECT_EQ((*b)->launched(), static_cast<int>(buckets.size()));
  ASSERT_TRUE((*b)->WaitAll().ok());
  ASSERT_EQ(comm.launches.size(), buckets.size());
  for (size_t k = 0; k < buckets.size(); ++k) {
    EXPECT_EQ(comm.launches[k].begin, buckets[k].begin) << "bucket " << k << " out of order";
    EXPECT_EQ(comm.launches[k].count, buckets[k].end - buckets[k].begin);
  }
  EXPECT_EQ((*b)->stats().steps, 1);
  EXPECT_EQ((*b)->stats().bytes_reduced, static_cast<int64_t>(grads.size() * sizeof(float)));
  EXPECT_EQ((*b)->launched(), 0) << "WaitAll resets for the next step";
}

TEST(GradientBucketsLaunchTest, AReadyBucketWaitsForEarlierBucketsToLaunch) {
  // Three tensors, one bucket each: bucket 0 = tensor 2, bucket 1 = tensor 1, bucket 2 = tensor 0.
  std::vector<GradientTensor> t = {{0, 4, 0}, {4, 4, 1}, {8, 4, 2}};
  std::vector<float> grads(12);
  RecordingCommunicator comm(grads.data());
  auto b = GradientBuckets::Create(&comm, grads.data(), t, {.bucket_bytes = 16});
  ASSERT_TRUE(b.ok());
  ASSERT_EQ((*b)->buckets().size(), 3u);
  ASSERT_TRUE((*b)->MarkReady(0).ok());  // bucket 2 ready, but 0 and 1 have not started
  EXPECT_EQ((*b)->launched(), 0);
  ASSERT_TRUE((*b)->MarkReady(1).ok());  // bucket 1 ready, bucket 0 still not
  EXPECT_EQ((*b)->launched(), 0);
  EXPECT_TRUE(comm.launches.empty());
  ASSERT_TRUE((*b)->MarkReady(2).ok());  // bucket 0 ready: 0, 1, 2 all launch, in order
  EXPECT_EQ((*b)->launched(), 3);
  ASSERT_EQ(comm.launches.size(), 3u);
  EXPECT_EQ(comm.launches[0].begin, 8);
  EXPECT_EQ(comm.launches[1].begin, 4);
  EXPECT_EQ(comm.launches[2].begin, 0);
  ASSERT_TRUE((*b)->WaitAll().ok());
}

TEST(GradientBucketsLaunchTest, MarkingTwiceInAStepIsAnErrorButNotAcrossSteps) {
  std::vector<GradientTensor> t = {{0, 4, 0}, {4, 4, 1}};
  std::vector<float> grads(8);
  RecordingCommunicator comm(grads.data());
  auto b = GradientBuckets::Create(&comm, grads.data(), t, {.bucket_bytes = 1 << 20});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->MarkReady(1).ok());
  EXPECT_EQ((*b)->MarkReady(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*b)->MarkReady(7).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*b)->MarkLayerReady(5).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE((*b)->WaitAll().ok());
  EXPECT_TRUE((*b)->MarkReady(1).ok());
  EXPECT_TRUE((*b)->MarkLayerReady(0).ok());
  EXPECT_EQ((*b)->launched(), 1);
  ASSERT_TRUE((*b)->WaitAll().ok());
  EXPECT_EQ(comm.launches.size(), 2u);
}

TEST(GradientBucketsLaunchTest, WaitAllAloneReducesEverythingWithoutOverlap) {
  std::vector<GradientTensor> t = MiniLayout(3, 8);
  std::vector<float> grads(TotalElements(t));
  RecordingCommunicator comm(grads.data());
  auto b = GradientBuckets::Create(&comm, grads.data(), t, {.bucket_bytes = 512});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->WaitAll().ok());
  EXPECT_EQ(comm.launches.size(), (*b)->buckets().size());
  EXPECT_EQ((*b)->stats().buckets_reduced, static_cast<int64_t>((*b)->buckets().size()));
}

// Rank r's gradient element i; the average over R ranks is Pattern(i) * (R + 1) / 2.
float Grad(int r, int64_t i) { return static_cast<float>((r + 1) * (i % 31 + 1)); }

TEST(GradientBucketsMpiTest, ReducedGradientsAreTheAverageOverRanks) {
  Communicator& comm = TestComm();
  const int R = comm.size();
  std::vector<GradientTensor> t = MiniLayout(6, 64);  // ~200k elements
  std::vector<float> grads(TotalElements(t));
  auto b = GradientBuckets::Create(&comm, grads.data(), t, {.bucket_bytes = 64 * 1024});
  ASSERT_TRUE(b.ok()) << b.status();
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < grads.size(); ++i) grads[i] = Grad(comm.rank(), i + step);
    // Backward order: heads by index, layers high to low, embeddings by index.
    ASSERT_TRUE((*b)->MarkReady(static_cast<int>(t.size()) - 1).ok());
    ASSERT_TRUE((*b)->MarkReady(static_cast<int>(t.size()) - 2).ok());
    for (int layer = 5; layer >= 0; --layer) ASSERT_TRUE((*b)->MarkLayerReady(layer).ok());
    ASSERT_TRUE((*b)->MarkReady(1).ok());
    ASSERT_TRUE((*b)->MarkReady(0).ok());
    ASSERT_TRUE((*b)->WaitAll().ok());
    size_t bad = 0;
    for (size_t i = 0; i < grads.size(); ++i) {
      bad += grads[i] != static_cast<float>((i + step) % 31 + 1) * (R + 1) / 2.0f;
    }
    EXPECT_EQ(bad, 0u) << "step " << step;
  }
  EXPECT_EQ((*b)->stats().bytes_reduced, static_cast<int64_t>(3 * grads.size() * sizeof(float)));
  EXPECT_GE((*b)->stats().wait_seconds, 0.0);
}

TEST(GradientBucketsMpiTest, RanksMarkingInDifferentOrdersStillMatchBuckets) {
  // Each rank marks tensors in its own random order: without the in-order launch rule, ranks
  // would issue different buckets' all-reduces against each other (wrong sums or an MPI
  // truncation error).
  Communicator& comm = TestComm();
  const int R = comm.size();
  std::vector<GradientTensor> t = MiniLayout(5, 32);
  std::vector<float> grads(TotalElements(t));
  auto b = GradientBuckets::Create(&comm, grads.data(), t, {.bucket_bytes = 8 * 1024});
  ASSERT_TRUE(b.ok());
  ASSERT_GT((*b)->buckets().size(), 3u);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = Grad(comm.rank(), i);
  std::vector<int> order(t.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(1234 + comm.rank()));
  for (int i : order) ASSERT_TRUE((*b)->MarkReady(i).ok());
  ASSERT_TRUE((*b)->WaitAll().ok());
  size_t bad = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    bad += grads[i] != static_cast<float>(i % 31 + 1) * (R + 1) / 2.0f;
  }
  EXPECT_EQ(bad, 0u);
}

}  // namespace
}  // namespace headroom
