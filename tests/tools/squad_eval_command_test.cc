// `headroom squad-eval` through the binary: the official output line for a dataset and
// predictions written here, the stderr lines for unanswered questions and a version other than
// 1.1, and bad input as one line naming the file with a non-zero exit.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"
#include "tests/tools/run_headroom.h"

namespace headroom {
namespace {

using ::testing::HasSubstr;

using Output = testing::HeadroomOutput;

Output SquadEval(const std::string& dir, const std::string& args) {
  return testing::RunHeadroom(dir, "squad-eval " + args);
}

void Write(const std::string& path, const std::string& text) {
  ASSERT_TRUE(WriteFileAtomically(path, text).ok());
}

constexpr char kDataset[] = R"({"version": "1.1", "data": [{"title": "t", "paragraphs": [
  {"context": "An orange cat sat on the mat.", "qas": [
    {"id": "q1", "question": "Who sat?", "answers": [{"text": "An orange cat", "answer_start": 0},
                                                      {"text": "cat", "answer_start": 10}]},
    {"id": "q2", "question": "On what?", "answers": [{"text": "the mat", "answer_start": 21}]},
    {"id": "q3", "question": "Did it?", "answers": [{"text": "sat", "answer_start": 14}]}]}]}]})";

TEST(SquadEvalCommand, PrintsTheOfficialJsonLine) {
  const std::string dir = testing::MakeTempDir("squad_eval");
  Write(dir + "/dev.json", kDataset);
  // q1 "orange cat": EM 1 (gold 1); q2 "mat on floor": F1 vs {mat}: p = 1/3, r = 1 -> 1/2;
  // q3 unanswered. EM = 100/3, F1 = 100 * 1.5 / 3 = 50.
  Write(dir + "/pred.json", R"({"q1": "orange cat", "q2": "mat on floor"})");
  Output r = SquadEval(dir, dir + "/dev.json " + dir + "/pred.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"exact_match\": 33.333333333333336, \"f1\": 50.0}\n");
  EXPECT_EQ(r.err, "Unanswered question q3 will receive score 0.\n");
}

TEST(SquadEvalCommand, WarnsAboutAnotherVersionAndRejectsBadInput) {
  const std::string dir = testing::MakeTempDir("squad_eval");
  std::string v2 = kDataset;
  v2.replace(v2.find("1.1"), 3, "2.0");
  Write(dir + "/v2.json", v2);
  Write(dir + "/pred.json", R"({"q1": "cat", "q2": "the mat", "q3": "sat"})");
  Output r = SquadEval(dir, dir + "/v2.json " + dir + "/pred.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"exact_match\": 100.0, \"f1\": 100.0}\n");
  EXPECT_EQ(r.err, "Evaluation expects v-1.1, but got dataset with v-2.0\n");

  Write(dir + "/bad.json", R"({"q1": ["cat"]})");
  r = SquadEval(dir, dir + "/v2.json " + dir + "/bad.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "headroom squad-eval: " + dir +
                       "/bad.json: \"q1\": expected a string (the answer text)\n");
  r = SquadEval(dir, dir + "/missing.json " + dir + "/pred.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("missing.json"));
  r = SquadEval(dir, dir + "/v2.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("expected two arguments"));
}

}  // namespace
}  // namespace headroom
