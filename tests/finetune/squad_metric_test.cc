// The SQuAD v1.1 metric against hand-worked values of the official definition
// (evaluate-v1.1.py): normalisation (case, punctuation, articles as whole Unicode words,
// whitespace), exact match and token F1 with repeated tokens, the maximum over several gold
// answers, empty predictions and unanswered questions, and the printed JSON line.
#include "finetune/squad_metric.h"

#include <string>

#include "finetune/squad_dataset.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

TEST(NormalizeAnswer, LowerCasesAndRemovesAsciiPunctuation) {
  EXPECT_EQ(NormalizeAnswer("The Cat"), "cat");
  EXPECT_EQ(NormalizeAnswer("U.S.A."), "usa");
  EXPECT_EQ(NormalizeAnswer("rock-'n'-roll!"), "rocknroll");
  EXPECT_EQ(NormalizeAnswer("$1,000 (approx.)"), "1000 approx");
  // Non-ASCII letters are lower-cased as Python's str.lower does, final sigma included.
  EXPECT_EQ(NormalizeAnswer("\u00c9CLAIR"), "\u00e9clair");
  EXPECT_EQ(NormalizeAnswer("\u039f\u0394\u039f\u03a3"), "\u03bf\u03b4\u03bf\u03c2");
}

TEST(NormalizeAnswer, RemovesArticlesOnlyAsWholeWords) {
  EXPECT_EQ(NormalizeAnswer("an apple a day"), "apple day");
  EXPECT_EQ(NormalizeAnswer("Anatomy of the banana"), "anatomy of banana");
  EXPECT_EQ(NormalizeAnswer("The"), "");
  EXPECT_EQ(NormalizeAnswer("the, the."), "");  // punctuation goes first, then both articles
  EXPECT_EQ(NormalizeAnswer("theater"), "theater");
  // Word characters are Unicode: "the" followed by e-acute is not a word of its own ...
  EXPECT_EQ(NormalizeAnswer("the\u00e9"), "the\u00e9");
  // ... while non-ASCII punctuation is kept but ends a word: "a" before an em dash goes.
  EXPECT_EQ(NormalizeAnswer("a\u2014b"), "\u2014b");
}

TEST(NormalizeAnswer, CollapsesAllPythonWhitespace) {
  EXPECT_EQ(NormalizeAnswer("  hello \t world\n"), "hello world");
  // NO-BREAK SPACE and IDEOGRAPHIC SPACE separate words for str.split(); the article before
  // the no-break space is a whole word.
  EXPECT_EQ(NormalizeAnswer("The\u00a0end\u3000game"), "end game");
}

TEST(SquadExactMatch, ComparesNormalisedStrings) {
  EXPECT_EQ(SquadExactMatch("The Eiffel Tower", "eiffel tower!"), 1.0);
  EXPECT_EQ(SquadExactMatch("Eiffel Towers", "eiffel tower"), 0.0);
  EXPECT_EQ(SquadExactMatch("", "cat"), 0.0);
  // An empty prediction matches a gold answer that normalises to nothing.
  EXPECT_EQ(SquadExactMatch("", "The"), 1.0);
}

TEST(SquadF1, CountsCommonTokensAsAMultiset) {
  // pred {cat, sat}, gold {cat, sat, down}: p = 1, r = 2/3, F1 = 0.8.
  EXPECT_DOUBLE_EQ(SquadF1("the cat sat", "a cat sat down"), 0.8);
  // pred {cat, cat, cat}, gold {cat, cat, dog}: common 2, p = r = 2/3.
  EXPECT_DOUBLE_EQ(SquadF1("the the cat cat cat", "cat cat dog"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(SquadF1("Cat", "cat."), 1.0);
  EXPECT_EQ(SquadF1("dog", "cat"), 0.0);
  // Empty prediction: no common token, 0 (even against an answer normalising to nothing).
  EXPECT_EQ(SquadF1("", "cat"), 0.0);
  EXPECT_EQ(SquadF1("", "the"), 0.0);
  EXPECT_EQ(SquadF1("a", "the"), 0.0);
}

// Four questions: several gold answers (EM via the third, F1 via the second), an empty
// prediction, an unanswered question, and a prediction for an id not in the dataset.
constexpr char kDataset[] = R"({"version": "1.1", "data": [
  {"title": "T", "paragraphs": [
    {"context": "The Denver Broncos played at Levi's Stadium in Santa Clara, California.",
     "qas": [
       {"id": "q1", "question": "Who?", "answers": [
          {"text": "Denver Broncos", "answer_start": 4},
          {"text": "The Denver Broncos", "answer_start": 0},
          {"text": "Broncos", "answer_start": 11}]},
       {"id": "q2", "question": "Where?", "answers": [
          {"text": "Santa Clara, California", "answer_start": 48},
          {"text": "Levi's Stadium", "answer_start": 29}]}]},
    {"context": "Gold.", "qas": [
       {"id": "q3", "question": "What?", "answers": [{"text": "Gold", "answer_start": 0}]},
       {"id": "q4", "question": "Which?", "answers": [{"text": "Gold", "answer_start": 0}]}]}]}]})";

TEST(EvaluateSquad, MaxOverGoldAnswersAndUnansweredQuestionsScoreZero) {
  absl::StatusOr<SquadDataset> dataset = ParseSquadDataset(kDataset, "dev.json");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->version, "1.1");
  EXPECT_EQ(dataset->num_questions(), 4);
  SquadPredictions predictions = {{"q1", "the broncos"},
                                  {"q2", "Levi's Stadium in Santa Clara"},
                                  {"q3", ""},
                                  {"q99", "not in the dataset"}};
  absl::StatusOr<SquadMetrics> m = EvaluateSquad(*dataset, predictions);
  ASSERT_TRUE(m.ok()) << m.status();
  // q1: "broncos" equals the third gold answer: EM 1, F1 1.
  // q2: pred {levis, stadium, in, santa, clara}; against "santa clara california" p = 2/5,
  //     r = 2/3, F1 = 1/2; against "levis stadium" p = 2/5, r = 1, F1 = 4/7; max 4/7, EM 0.
  // q3: empty prediction, 0. q4: unanswered, 0.
  EXPECT_EQ(m->questions, 4);
  EXPECT_DOUBLE_EQ(m->exact_match, 25.0);
  EXPECT_NEAR(m->f1, 100.0 * (1.0 + 4.0 / 7.0) / 4.0, 1e-12);
  ASSERT_EQ(m->unanswered.size(), 1u);
  EXPECT_EQ(m->unanswered[0], "q4");
  // The official script's line: the same sums in the same order printed by Python's
  // json.dumps, whose repr of 100.0 * 1.5714285714285714 / 4 ends in ...429.
  EXPECT_EQ(m->ToJson(), R"({"exact_match": 25.0, "f1": 39.28571428571429})");
}

TEST(EvaluateSquad, EveryQuestionUnansweredScoresZeroAndNoQuestionsIsAnError) {
  absl::StatusOr<SquadDataset> dataset = ParseSquadDataset(kDataset, "dev.json");
  ASSERT_TRUE(dataset.ok());
  absl::StatusOr<SquadMetrics> m = EvaluateSquad(*dataset, {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->ToJson(), R"({"exact_match": 0.0, "f1": 0.0})");
  EXPECT_EQ(m->unanswered.size(), 4u);
  absl::StatusOr<SquadDataset> empty = ParseSquadDataset(R"({"data": []})", "empty.json");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(EvaluateSquad(*empty, {}).ok());
}

TEST(PythonFloatRepr, MatchesPythonRepr) {
  EXPECT_EQ(PythonFloatRepr(100.0), "100.0");
  EXPECT_EQ(PythonFloatRepr(0.0), "0.0");
  EXPECT_EQ(PythonFloatRepr(81.2), "81.2");
  EXPECT_EQ(PythonFloatRepr(200.0 / 3.0), "66.66666666666667");
  EXPECT_EQ(PythonFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PythonFloatRepr(0.00001), "1e-05");
  EXPECT_EQ(PythonFloatRepr(1234.5), "1234.5");
  EXPECT_EQ(PythonFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PythonFloatRepr(123456789012345680.0), "1.2345678901234568e+17");
  EXPECT_EQ(PythonFloatRepr(-2.5), "-2.5");
}

TEST(ParseSquadDataset, NamesTheJsonPathOfABadValue) {
  absl::StatusOr<SquadDataset> d = ParseSquadDataset(
      R"({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "a", "question": "q",
          "answers": [{"text": "x", "answer_start": "0"}]}]}]}]})",
      "dev.json");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(),
            "dev.json: data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer");
  EXPECT_FALSE(ParseSquadDataset("{not json", "x.json").ok());
  absl::StatusOr<SquadPredictions> p = ParseSquadPredictions(R"({"q1": 3})", "pred.json");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), "pred.json: \"q1\": expected a string (the answer text)");
}

TEST(SquadPredictionsJson, WritesTheOfficialObjectInOrder) {
  EXPECT_EQ(SquadPredictionsJson({{"b", "Caf\u00e9"}, {"a", ""}}),
            "{\n    \"b\": \"Caf\\u00e9\",\n    \"a\": \"\"\n}\n");
  absl::StatusOr<SquadPredictions> back =
      ParseSquadPredictions(SquadPredictionsJson({{"b", "Caf\u00e9"}}), "p.json");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->at("b"), "Caf\u00e9");
}

}  // namespace
}  // namespace headroom
