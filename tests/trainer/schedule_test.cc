// Learning-rate schedules against values computed by hand from the formulas in
// trainer/schedule.h (Google BERT's warm-up + linear decay, tensor2tensor's two rsqrt forms,
// constant) and BERT's two-phase recipe with its re-warm-up.
#include "trainer/schedule.h"

#include <cstdlib>
#include <string>

#include "config/load.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

constexpr char kBase[] = R"pb(
  model {
    objective: BERT
    vocab_size: 100
    max_positions: 64
    type_vocab_size: 2
    num_layers: 1
    d_model: 8
    num_heads: 2
    ffn_size: 16
  }
  data { seq_length: 16 max_predictions_per_seq: 3 }
  train { global_batch_size: 4 }
)pb";

ExperimentConfig Config(const std::string& train_extra) {
  ExperimentConfig c;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(kBase, &c));
  EXPECT_TRUE(google::protobuf::TextFormat::MergeFromString(train_extra, &c)) << train_extra;
  FillDefaults(c);
  return c;
}

TEST(ScheduleTest, LinearWarmupThenLinearDecayToZero) {
  auto s = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 10
      schedule { type: LINEAR_WARMUP_LINEAR_DECAY learning_rate: 1.0 warmup_steps: 4 }
    })pb"));
  ASSERT_TRUE(s.ok()) << s.status();
  // Warm-up: 0/4, 1/4, 2/4, 3/4. Then 1 - g/10 (decay measured from step 0, as Google BERT).
  EXPECT_DOUBLE_EQ(s->LearningRate(0), 0.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(1), 0.25);
  EXPECT_DOUBLE_EQ(s->LearningRate(2), 0.5);
  EXPECT_DOUBLE_EQ(s->LearningRate(3), 0.75);
  EXPECT_DOUBLE_EQ(s->LearningRate(4), 0.6);
  EXPECT_DOUBLE_EQ(s->LearningRate(5), 0.5);
  EXPECT_DOUBLE_EQ(s->LearningRate(9), 0.1);
  EXPECT_DOUBLE_EQ(s->LearningRate(10), 0.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(25), 0.0);  // past the end: stays at 0
  EXPECT_EQ(s->total_steps(), 10);
  ASSERT_EQ(s->phases().size(), 1u);
  EXPECT_EQ(s->phases()[0].seq_length, 16);
  EXPECT_EQ(s->phases()[0].max_predictions_per_seq, 3);
  EXPECT_EQ(s->phases()[0].global_batch_size, 4);
}

TEST(ScheduleTest, NoWarmupStartsAtThePeak) {
  auto s = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 4
      schedule { learning_rate: 2.0 }
    })pb"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->LearningRate(0), 2.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(1), 1.5);
  EXPECT_DOUBLE_EQ(s->LearningRate(3), 0.5);
}

// tensor2tensor's "constant*linear_warmup*rsqrt_decay" (utils/learning_rate.py): the factors
// constant = lr, linear_warmup = min(1, step / W), rsqrt_decay = rsqrt(max(step, W)), with
// step = global_step counted from 0. By hand for lr = 2, W = 4: peak 2 / sqrt(4) = 1 at t = 4.
TEST(ScheduleTest, WarmupThenInverseSquareRoot) {
  auto s = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 1000
      schedule { type: LINEAR_WARMUP_RSQRT learning_rate: 2.0 warmup_steps: 4 }
    })pb"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->LearningRate(0), 0.0);      // 2 * 0/4 / 2
  EXPECT_DOUBLE_EQ(s->LearningRate(1), 0.25);     // 2 * 1/4 / 2
  EXPECT_DOUBLE_EQ(s->LearningRate(2), 0.5);      // 2 * 2/4 / 2
  EXPECT_DOUBLE_EQ(s->LearningRate(4), 1.0);      // 2 * 1 / 2: the peak, lr / sqrt(W)
  EXPECT_DOUBLE_EQ(s->LearningRate(16), 0.5);     // 2 / 4
  EXPECT_DOUBLE_EQ(s->LearningRate(100), 0.2);    // 2 / 10
  EXPECT_DOUBLE_EQ(s->LearningRate(400), 0.1);    // 2 / 20
  EXPECT_DOUBLE_EQ(s->LearningRate(1600), 0.05);  // past the end: the formula continues
}

// tensor2tensor's "constant*linear_warmup*rsqrt_normalized_decay": rsqrt_decay times sqrt(W),
// so the peak is lr itself: 2 * min(t/4, sqrt(4/t)).
TEST(ScheduleTest, WarmupThenNormalizedInverseSquareRoot) {
  auto s = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 1000
      schedule { type: LINEAR_WARMUP_RSQRT_NORMALIZED learning_rate: 2.0 warmup_steps: 4 }
    })pb"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->LearningRate(0), 0.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(1), 0.5);
  EXPECT_DOUBLE_EQ(s->LearningRate(2), 1.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(4), 2.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(16), 1.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(100), 0.4);
  EXPECT_DOUBLE_EQ(s->LearningRate(400), 0.2);
}

// The paper's LM1B schedule as every configs/paper/lm1b_* file states it: learning rate 0.1,
// 10k warm-up steps, t2t's rsqrt decay: 0.1 * min(1, t/W) / sqrt(max(t, W)) at t = W/2, W, 4W
// is 0.1 * 0.5 / 100, 0.1 / 100 and 0.1 / 200 (the peak is 1e-3, not 0.1).
TEST(ScheduleTest, PaperLm1bRecipe) {
  const char* root = std::getenv("HEADROOM_SOURCE_DIR");
  ASSERT_NE(root, nullptr) << "ctest sets HEADROOM_SOURCE_DIR";
  for (const char* name : {"lm1b_std_d512_h8", "lm1b_std_d256_h16", "lm1b_fixed_d256_h70_p32"}) {
    SCOPED_TRACE(name);
    auto c = LoadConfig(std::string(root) + "/configs/paper/" + name + ".textproto");
    ASSERT_TRUE(c.ok()) << c.status();
    auto s = LearningRateSchedule::Create(*c);
    ASSERT_TRUE(s.ok()) << s.status();
    const double lr = static_cast<double>(0.1f);  // the config's float
    EXPECT_EQ(s->type(), ScheduleConfig::LINEAR_WARMUP_RSQRT);
    EXPECT_EQ(s->total_steps(), 250000);
    EXPECT_DOUBLE_EQ(s->LearningRate(0), 0.0);
    EXPECT_DOUBLE_EQ(s->LearningRate(5000), lr * 0.5 / 100);
    EXPECT_DOUBLE_EQ(s->LearningRate(10000), lr / 100);
    EXPECT_DOUBLE_EQ(s->LearningRate(40000), lr / 200);
    EXPECT_NEAR(s->LearningRate(10000), 1e-3, 1e-10);
  }
}

TEST(ScheduleTest, ConstantWithAndWithoutWarmup) {
  auto flat = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 5
      schedule { type: CONSTANT learning_rate: 0.5 }
    })pb"));
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_DOUBLE_EQ(flat->LearningRate(0), 0.5);
  EXPECT_DOUBLE_EQ(flat->LearningRate(4), 0.5);
  auto warm = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 5
      schedule { type: CONSTANT learning_rate: 0.5 warmup_steps: 2 }
    })pb"));
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_DOUBLE_EQ(warm->LearningRate(0), 0.0);
  EXPECT_DOUBLE_EQ(warm->LearningRate(1), 0.25);
  EXPECT_DOUBLE_EQ(warm->LearningRate(2), 0.5);
  EXPECT_DOUBLE_EQ(warm->LearningRate(4), 0.5);
}

TEST(ScheduleTest, TwoPhasesEachWarmUpAndDecayOverTheirOwnSteps) {
  auto s = LearningRateSchedule::Create(Config(R"pb(
    train {
      schedule { type: LINEAR_WARMUP_LINEAR_DECAY learning_rate: 1.0 }
      phases { steps: 10 seq_length: 16 max_predictions_per_seq: 3 warmup_steps: 2 }
      phases {
        steps: 5
        seq_length: 64
        max_predictions_per_seq: 10
        warmup_steps: 1
        global_batch_size: 2
      }
    })pb"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->total_steps(), 15);
  // Phase 0: g/2 for g < 2, then 1 - g/10.
  EXPECT_DOUBLE_EQ(s->LearningRate(0), 0.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(1), 0.5);
  EXPECT_DOUBLE_EQ(s->LearningRate(2), 0.8);
  EXPECT_DOUBLE_EQ(s->LearningRate(9), 0.1);
  // Phase 1 (t = g - 10): re-warm-up t/1 for t < 1, then 1 - t/5.
  EXPECT_DOUBLE_EQ(s->LearningRate(10), 0.0);
  EXPECT_DOUBLE_EQ(s->LearningRate(11), 0.8);
  EXPECT_DOUBLE_EQ(s->LearningRate(14), 0.2);
  EXPECT_DOUBLE_EQ(s->LearningRate(15), 0.0);
  EXPECT_EQ(s->PhaseIndex(9), 0);
  EXPECT_EQ(s->PhaseIndex(10), 1);
  EXPECT_EQ(s->PhaseIndex(99), 1);
  EXPECT_EQ(s->PhaseAt(3).seq_length, 16);
  EXPECT_EQ(s->PhaseAt(3).global_batch_size, 4);  // 0 in the phase: the run's batch
  EXPECT_EQ(s->PhaseAt(12).seq_length, 64);
  EXPECT_EQ(s->PhaseAt(12).max_predictions_per_seq, 10);
  EXPECT_EQ(s->PhaseAt(12).global_batch_size, 2);
  EXPECT_EQ(s->PhaseAt(12).begin, 10);
}

TEST(ScheduleTest, PaperBertLargeRecipe) {
  const char* root = std::getenv("HEADROOM_SOURCE_DIR");
  ASSERT_NE(root, nullptr) << "ctest sets HEADROOM_SOURCE_DIR";
  auto c = LoadConfig(std::string(root) + "/configs/paper/bert_large.textproto");
  ASSERT_TRUE(c.ok()) << c.status();
  auto s = LearningRateSchedule::Create(*c);
  ASSERT_TRUE(s.ok()) << s.status();
  const double lr = static_cast<double>(1e-4f);  // the config's float
  EXPECT_EQ(s->total_steps(), 500000);
  EXPECT_DOUBLE_EQ(s->LearningRate(2500), lr * 0.5);    // warm-up 5k
  EXPECT_DOUBLE_EQ(s->LearningRate(90000), lr * 0.8);   // 1 - 90k/450k
  EXPECT_DOUBLE_EQ(s->LearningRate(450000), 0.0);       // re-warm-up
  EXPECT_DOUBLE_EQ(s->LearningRate(451500), lr * 0.5);  // 1500/3000
  EXPECT_DOUBLE_EQ(s->LearningRate(475000), lr * 0.5);  // 1 - 25k/50k
  EXPECT_EQ(s->PhaseAt(460000).seq_length, 512);
  EXPECT_EQ(s->PhaseAt(460000).max_predictions_per_seq, 80);
}

// train.global_batch_tokens: each phase trains tokens / seq_length sequences unless it sets its
// own batch (BERT-like: 65536 tokens are 512 sequences of 128, then 128 of 512).
TEST(ScheduleTest, BatchInTokensBecomesSequencesPerPhase) {
  ExperimentConfig c = Config(R"pb(
    train {
      global_batch_tokens: 65536
      phases { steps: 10 seq_length: 128 }
      phases { steps: 5 seq_length: 512 }
      phases { steps: 5 seq_length: 512 global_batch_size: 7 }
    })pb");
  c.mutable_train()->set_global_batch_size(0);
  c.mutable_model()->set_max_positions(512);
  auto s = LearningRateSchedule::Create(c);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->phases()[0].global_batch_size, 512);
  EXPECT_EQ(s->phases()[1].global_batch_size, 128);
  EXPECT_EQ(s->phases()[2].global_batch_size, 7);

  ExperimentConfig odd = Config("train { steps: 3 global_batch_tokens: 100 }");
  odd.mutable_train()->set_global_batch_size(0);
  auto bad = LearningRateSchedule::Create(odd);  // data.seq_length is 16
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.global_batch_tokens"), absl::string_view::npos);
  EXPECT_NE(bad.status().message().find("16"), absl::string_view::npos) << bad.status();
  ExperimentConfig few = Config("train { steps: 3 global_batch_tokens: 8 }");
  few.mutable_train()->set_global_batch_size(0);
  EXPECT_FALSE(LearningRateSchedule::Create(few).ok());  // not a multiple of 16 either way
}

// The paper's LM1B batch: 4096 tokens per core on 8 cores = 32768 tokens = 128 sequences of 256.
TEST(ScheduleTest, PaperLm1bBatchIs128SequencesOf256) {
  const char* root = std::getenv("HEADROOM_SOURCE_DIR");
  ASSERT_NE(root, nullptr) << "ctest sets HEADROOM_SOURCE_DIR";
  auto c = LoadConfig(std::string(root) + "/configs/paper/lm1b_fixed_d256_h16_p32.textproto");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train().global_batch_tokens(), 8 * 4096);
  auto s = LearningRateSchedule::Create(*c);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->phases()[0].seq_length, 256);
  EXPECT_EQ(s->phases()[0].global_batch_size, 128);
}

TEST(ScheduleTest, RejectsInconsistentSettings) {
  auto mismatch = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 7
      phases { steps: 5 seq_length: 16 }
    })pb"));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("train.steps"), absl::string_view::npos);

  auto rsqrt = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 7
      schedule { type: LINEAR_WARMUP_RSQRT learning_rate: 1 }
    })pb"));
  ASSERT_FALSE(rsqrt.ok());
  EXPECT_NE(rsqrt.status().message().find("train.schedule.warmup_steps"), absl::string_view::npos);
  auto normalized = LearningRateSchedule::Create(Config(R"pb(
    train {
      steps: 7
      schedule { type: LINEAR_WARMUP_RSQRT_NORMALIZED learning_rate: 1 }
    })pb"));
  ASSERT_FALSE(normalized.ok());
  EXPECT_NE(normalized.status().message().find("train.schedule.warmup_steps"),
            absl::string_view::npos);

  auto long_warmup = LearningRateSchedule::Create(Config(R"pb(
    train { phases { steps: 5 seq_length: 16 warmup_steps: 6 } })pb"));
  ASSERT_FALSE(long_warmup.ok());
  EXPECT_NE(long_warmup.status().message().find("train.phases[0].warmup_steps"),
            absl::string_view::npos);

  auto nothing = LearningRateSchedule::Create(Config("train { steps: 0 }"));
  ASSERT_FALSE(nothing.ok());
  EXPECT_NE(nothing.status().message().find("train.steps"), absl::string_view::npos);
}

}  // namespace
}  // namespace headroom
