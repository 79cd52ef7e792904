// Data-parallel fine-tuning (finetune.h) under `mpirun -np 2`, against an independent
// single-rank run (SingleProcessCommunicator) on the same data: with dropout on, 2 ranks with
// one micro-batch of G/2 each give the losses and weights of one rank accumulating two
// micro-batches of G/2 (the dropout key is the global micro-batch index), for the classifier
// and the SQuAD span head, with and without ZeRO-1; rank 0 alone writes the run and evaluates.
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/single_process_communicator.h"
#include "finetune/finetune.h"
#include "gtest/gtest.h"
#include "tests/finetune/finetune_test_util.h"
#include "tests/trainer/run_checks.h"
#include "trainer/checkpoint.h"

namespace headroom {
namespace {

namespace fs = std::filesystem;

constexpr char kSquad[] = R"({"version": "1.1", "data": [{"title": "t", "paragraphs": [
  {"context": "The cat sat on the mat. A dog ran on the rug.",
   "qas": [{"id": "q1", "question": "who sat ?", "answers": [{"text": "The cat", "answer_start": 0}]},
           {"id": "q2", "question": "where ran a dog ?",
            "answers": [{"text": "the rug", "answer_start": 38}]}]},
  {"context": "A red cat ran. The blue dog sat.",
   "qas": [{"id": "q3", "question": "what ran ?", "answers": [{"text": "red cat", "answer_start": 2}]},
           {"id": "q4", "question": "who sat ?",
            "answers": [{"text": "The blue dog", "answer_start": 15}]}]}]}]})";

using testing::RelativeDifference;

class FineTuneDataParallelTest : public ::testing::TestWithParam<bool /*squad*/> {
 protected:
  static void SetUpTestSuite() {
    auto c = MpiCommunicator::Create();
    ASSERT_TRUE(c.ok()) << c.status();
    mpi_ = c->release();
  }
  static void TearDownTestSuite() {
    delete mpi_;
    mpi_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(mpi_->size(), 2) << "run under mpirun -np 2";
    int id = static_cast<int>(::getpid());  // one directory for the job: rank 0's pid
    MPI_Bcast(&id, 1, MPI_INT, 0, MPI_COMM_WORLD);
    root_ =
        ::testing::TempDir() + "finetune_dp_" + std::to_string(id) + (GetParam() ? "_squad" : "");
    if (mpi_->rank() == 0) {
      fs::remove_all(root_);
      fs::create_directories(root_);
      checkpoint_ = testing::WriteTinyCheckpoint(root_);
      testing::Write(root_ + "/train.tsv", testing::ClassifyTsv(3));
      testing::Write(root_ + "/train.json", kSquad);
    }
    ASSERT_TRUE(mpi_->Barrier().ok());
    checkpoint_ = root_ + "/pretrain/checkpoints/step-00000007";
  }
  void TearDown() override {
    ASSERT_TRUE(mpi_->Barrier().ok());
    if (mpi_->rank() == 0) fs::remove_all(root_);
  }

  FineTuneOptions Options(const std::string& out, Communicator* comm, int zero_stage = 0) {
    const bool squad = GetParam();
    auto c = LoadFineTuneConfig(
        "", squad ? "squad" : "classify",
        {"finetune.max_seq_length=16", "finetune.max_query_length=5", "finetune.doc_stride=4",
         "finetune.train_batch_size=4", "finetune.micro_batch_size=2",
         "finetune.num_train_epochs=3", "finetune.dropout=0.1", "finetune.checkpoint_every=0",
         "train.comm_bucket_mb=0.001", "train.zero_stage=" + std::to_string(zero_stage)});
    EXPECT_TRUE(c.ok()) << c.status();
    FineTuneOptions o;
    o.config = *c;
    o.init_checkpoint = checkpoint_;
    o.train_file = root_ + (squad ? "/train.json" : "/train.tsv");
    o.dev_files = {o.train_file};
    o.output_dir = root_ + "/" + out;
    o.console = nullptr;
    o.comm = comm;
    return o;
  }

  // Two ranks (gradients all-reduced, or with ZeRO-1 reduce-scattered into sharded optimizer
  // state and the parameters gathered) against one rank.
  void Check(int zero_stage);

  static MpiCommunicator* mpi_;
  std::string root_, checkpoint_;
};

MpiCommunicator* FineTuneDataParallelTest::mpi_ = nullptr;

TEST_P(FineTuneDataParallelTest, TwoRanksMatchOneRankAccumulatingTheSameMicroBatches) {
  Check(/*zero_stage=*/0);
}

TEST_P(FineTuneDataParallelTest, WithZeroOneTwoRanksMatchOneRank) {
  Check(/*zero_stage=*/1);  // sharded optimizer state, parameters gathered
}

void FineTuneDataParallelTest::Check(int zero_stage) {
  FineTuneResult reference;
  if (mpi_->rank() == 0) {
    SingleProcessCommunicator single;
    auto r = FineTune(Options("reference", &single));  // 2 micro-batches of 2
    ASSERT_TRUE(r.ok()) << r.status();
    reference = *r;
  }
  ASSERT_TRUE(mpi_->Barrier().ok());
  auto r = FineTune(Options("dp", mpi_, zero_stage));  // 1 micro-batch of 2 per rank
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(mpi_->Barrier().ok());
  if (mpi_->rank() != 0) {
    EXPECT_TRUE(r->metrics.empty());  // rank 0 alone evaluates
    return;
  }
  ASSERT_EQ(r->losses.size(), reference.losses.size());
  ASSERT_GE(r->losses.size(), 3u);
  for (size_t i = 0; i < r->losses.size(); ++i) {
    EXPECT_NEAR(r->losses[i], reference.losses[i], 1e-6 * std::fabs(reference.losses[i])) << i;
  }
  auto a = LoadCheckpoint(r->last_checkpoint), b = LoadCheckpoint(reference.last_checkpoint);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT(RelativeDifference(a->params, b->params), 1e-6);
  ASSERT_EQ(r->metrics.size(), reference.metrics.size());
  for (size_t i = 0; i < r->metrics.size(); ++i) {
    EXPECT_EQ(r->metrics[i].first, reference.metrics[i].first);
  }
}

INSTANTIATE_TEST_SUITE_P(Tasks, FineTuneDataParallelTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Squad" : "Classify";
                         });

}  // namespace
}  // namespace headroom
