// Data-parallel training (trainer.h) under `mpirun -np 2`: the reference for every check is an
// independent single-rank run (SingleProcessCommunicator, the same trainer without comm) on the
// same data, never a value recorded from the data-parallel code itself.
//   - R = 2 ranks with per-rank batch B/2 give the weights one rank gets with batch B (relative
//     difference < 1e-6), for the causal LM and BERT, dropout off. The data gives every sequence
//     the same loss normaliser (no LM padding; every BERT masked slot has weight 1), so the mean
//     of the two half-batch means is the full-batch mean.
//   - Dropout on: R = 2 ranks with micro-batch B/2 equal one rank accumulating two micro-batches
//     of B/2, because the dropout key is the global micro-batch index (trainer.h).
//   - A checkpoint written by 2 ranks resumes on 1, and one written by 1 resumes on 2, reaching
//     the uninterrupted single-rank run's weights.
//   - Evaluation over 2 ranks reports what one rank reports.
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/single_process_communicator.h"
#include "config/load.h"
#include "data/example_io.h"
#include "data/record_writer.h"
#include "gtest/gtest.h"
#include "tests/trainer/lm_shards.h"
#include "tests/trainer/run_checks.h"
#include "tests/trainer/tiny_lm_config.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

// The same training for both models: 6 steps of 8 sequences, tiny buckets (several per step).
constexpr char kTrain[] = R"pb(
  train {
    steps: 6
    global_batch_size: 8
    micro_batch_size: 0
    optimizer { type: ADAMW bias_correction: true }
    schedule { type: LINEAR_WARMUP_LINEAR_DECAY learning_rate: 0.01 warmup_steps: 2 }
    log_every: 2
    eval_every: 3
    eval_batches: 2
    checkpoint_every: 2
    keep_checkpoints: 5
    comm_bucket_mb: 0.001
  }
)pb";

const std::string kLmConfig =
    testing::TinyLmConfig(kTrain, 2, "hidden_dropout: 0 attention_dropout: 0");

const std::string kBertConfig = std::string(R"pb(
                                  name: "tiny_bert"
                                  model {
                                    objective: BERT
                                    vocab_size: 20
                                    max_positions: 8
                                    type_vocab_size: 2
                                    num_layers: 2
                                    d_model: 8
                                    num_heads: 2
                                    head_size: 4
                                    ffn_size: 16
                                    hidden_dropout: 0
                                    attention_dropout: 0
                                  }
                                  data { seq_length: 8 max_predictions_per_seq: 2 }
                                )pb") +
                                kTrain;

// BERT instances: random ids, two masked slots per sequence, both of weight 1.
void WriteBertShards(const std::string& dir, const std::string& name, int shards, int n,
                     uint32_t seed) {
  fs::create_directories(dir);
  std::mt19937 rng(seed);
  for (int s = 0; s < shards; ++s) {
    auto w = RecordWriter::Create(dir + "/" + name + "-" + std::to_string(s) + ".tfrecord");
    ASSERT_TRUE(w.ok()) << w.status();
    for (int i = s; i < n; i += shards) {
      std::vector<int64_t> ids(8), mask(8, 1), segments(8, 0);
      for (int j = 0; j < 8; ++j) ids[j] = 5 + rng() % 15;
      for (int j = 4; j < 8; ++j) segments[j] = 1;
      const int p0 = 1 + rng() % 3, p1 = 5 + rng() % 3;
      std::vector<int64_t> positions = {p0, p1}, labels = {ids[p0], ids[p1]};
      ids[p0] = ids[p1] = 4;  // [MASK]
      tf::Example e;
      SetInt64Feature(&e, "input_ids", ids);
      SetInt64Feature(&e, "input_mask", mask);
      SetInt64Feature(&e, "segment_ids", segments);
      SetInt64Feature(&e, "masked_lm_positions", positions);
      SetInt64Feature(&e, "masked_lm_ids", labels);
      SetFloatFeature(&e, "masked_lm_weights", std::vector<float>{1.0f, 1.0f});
      SetInt64Feature(&e, "next_sentence_labels", std::vector<int64_t>{int64_t(rng() % 2)});
      ASSERT_TRUE((*w)->Write(e.SerializeAsString()).ok());
    }
    ASSERT_TRUE((*w)->Close().ok());
  }
}

class DataParallelTest : public testing::MpiRunTest<bool /*bert*/> {
 protected:
  void SetUp() override {
    ASSERT_EQ(world()->size(), 2) << "run under mpirun -np 2";
    bert_ = GetParam();
    MpiRunTest::SetUp();
  }
  void WriteData() override {
    if (bert_) {
      WriteBertShards(root() + "/data", "train", 2, 48, 1);
      WriteBertShards(root() + "/data", "eval", 1, 16, 2);
    } else {
      testing::WriteCountingLmShards(root() + "/data", "train", 2, 48, 1);
      testing::WriteCountingLmShards(root() + "/data", "eval", 1, 16, 2);
    }
  }

  TrainOptions Options(const std::string& run, Communicator* comm,
                       const std::vector<std::string>& overrides = {}) {
    return testing::RunOptions(bert_ ? kBertConfig : kLmConfig, overrides, root(), run, comm);
  }

  // The weights of a run's checkpoint at `step`.
  std::vector<float> Weights(const std::string& run, int64_t step) {
    return testing::CheckpointWeights(Dir(run), step);
  }

  // The last eval line's loss in a run's metrics.jsonl.
  double LastEvalLoss(const std::string& run) {
    return testing::LastMetric(Dir(run), "eval", "loss");
  }

  bool bert_ = false;
};

TEST_P(DataParallelTest, TwoRanksWithHalfTheBatchMatchOneRankWithAllOfIt) {
  // The reference: one rank, batch 8 in one micro-batch (rank 0 alone).
  std::vector<double> reference_losses;
  if (rank() == 0) {
    SingleProcessCommunicator single;
    auto r = Train(Options("reference", &single));
    ASSERT_TRUE(r.ok()) << r.status();
    reference_losses = r->losses;
  }
  Barrier();
  // Two ranks, 4 rows each, the gradient in several buckets (comm_bucket_mb 0.001).
  auto r = Train(Options("dp", world()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_ranks, 2);
  EXPECT_EQ(r->last_step, 6);
  EXPECT_GT(r->bytes_reduced, 0);
  Barrier();
  if (rank() != 0) return;
  ASSERT_EQ(r->losses.size(), reference_losses.size());
  for (size_t i = 0; i < reference_losses.size(); ++i) {
    EXPECT_NEAR(r->losses[i], reference_losses[i], 1e-6 * std::fabs(reference_losses[i]))
        << "step " << i + 1;
  }
  for (int64_t step : {2, 4, 6}) {
    std::vector<float> a = Weights("dp", step), b = Weights("reference", step);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_LT(testing::RelativeDifference(a, b), 1e-6) << "step " << step;
  }
  // Evaluation split over the ranks sees the same sequences as one rank.
  EXPECT_NEAR(LastEvalLoss("dp"), LastEvalLoss("reference"), 1e-5);
  // Rank 0 alone wrote the run: one metrics file with the timing breakdown.
  const std::string metrics = testing::ReadText(Dir("dp") + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"comm_wait_seconds\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"bytes_reduced\""), std::string::npos) << metrics;
}

TEST_P(DataParallelTest, WithDropoutTwoRanksMatchOneRankAccumulatingTheSameMicroBatches) {
  const std::vector<std::string> dropout = {
      "model.hidden_dropout=0.1", "model.attention_dropout=0.1", "train.micro_batch_size=4"};
  if (rank() == 0) {
    SingleProcessCommunicator single;
    ASSERT_TRUE(Train(Options("reference", &single, dropout)).ok());  // 2 micro-batches of 4
  }
  Barrier();
  auto r = Train(Options("dp", world(), dropout));  // 1 micro-batch of 4 per rank
  ASSERT_TRUE(r.ok()) << r.status();
  Barrier();
  if (rank() != 0) return;
  std::vector<float> a = Weights("dp", 6), b = Weights("reference", 6);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_LT(testing::RelativeDifference(a, b), 1e-6);
  // And dropout did something: without it the weights differ.
  SingleProcessCommunicator single;
  ASSERT_TRUE(Train(Options("no_dropout", &single, {"train.micro_batch_size=4"})).ok());
  EXPECT_GT(testing::RelativeDifference(Weights("no_dropout", 6), b), 1e-4);
}

TEST_P(DataParallelTest, ACheckpointResumesOnAnotherNumberOfRanks) {
  SingleProcessCommunicator single;
  if (rank() == 0) {
    ASSERT_TRUE(Train(Options("reference", &single)).ok());
  }
  // 2 ranks for steps 1-4, then 1 rank for 5-6.
  TrainOptions first = Options("two_then_one", world());
  first.max_steps = 4;
  ASSERT_TRUE(Train(first).ok());
  Barrier();
  if (rank() == 0) {
    TrainOptions rest = Options("two_then_one", &single);
    rest.resume = true;
    auto r = Train(rest);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->first_step, 4);
    EXPECT_EQ(r->last_step, 6);
    // 1 rank for steps 1-2, then 2 ranks for 3-6.
    TrainOptions one = Options("one_then_two", &single);
    one.max_steps = 2;
    ASSERT_TRUE(Train(one).ok());
  }
  Barrier();
  TrainOptions two = Options("one_then_two", world());
  two.resume = true;
  auto r = Train(two);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_step, 2);  // on rank 1 too: rank 0 broadcast the step
  Barrier();
  if (rank() != 0) return;
  const std::vector<float> reference = Weights("reference", 6);
  EXPECT_LT(testing::RelativeDifference(Weights("two_then_one", 6), reference), 1e-6);
  EXPECT_LT(testing::RelativeDifference(Weights("one_then_two", 6), reference), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Objectives, DataParallelTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Bert" : "CausalLm";
                         });

}  // namespace
}  // namespace headroom
