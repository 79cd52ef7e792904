// SQuAD examples, features and decoding against hand-worked cases of Google BERT's
// run_squad.py: whitespace doc tokens with code-point offsets (U+202F, accents), skipped and
// malformed answers, WordPiece answers narrowed by _improve_answer_span, windows with an answer
// crossing a window boundary and the max-context flags, an accented and CJK context, and
// decoding that maps predictions back to exact substrings of the original context.
#include "finetune/squad_features.h"

#include <string>
#include <vector>

#include "finetune/squad_dataset.h"
#include "finetune/squad_decode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace headroom {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then the words in order from 5.
WordPieceTokenizer Vocab() {
  std::vector<std::string> tokens = {"[PAD]",  "[UNK]",  "[CLS]",  "[SEP]",  "[MASK]",  // 0-4
                                     "zero",   "one",    "two",    "three",  "four",
                                     "five",   "six",    "seven",  "eight",  "nine",  // 5-14
                                     "which",  "when",   "where",  "born",   "(",
                                     "18",     "##95",   "-",      "19",     "##43",  // 15-24
                                     ")",      ".",      "he",     "le",     "cafe",
                                     "de",     "zurich", "\u5317", "\u4eac",  // 25-33
                                     "\u5927", "\u5b66", "est",    "la"};     // 34-37
  return WordPieceTokenizer::FromTokens(tokens).value();
}

SquadDataset OneQuestion(const std::string& context, const std::string& question,
                         const std::string& answer, int64_t answer_start) {
  SquadDataset d;
  d.version = "1.1";
  d.paragraphs.push_back({context, {{"q", question, {{answer, answer_start}}}}});
  return d;
}

TEST(ReadSquadExamples, SplitsOnRunSquadWhitespaceAndCountsCodePoints) {
  // "the" starts at code point 16 (U+202F, one code point of three UTF-8 bytes, is whitespace).
  const std::string context = "The  cat\tsat on\u202fthe mat.";
  std::vector<std::string> warnings;
  auto ex =
      ReadSquadExamples(OneQuestion(context, "Where?", "the mat", 16), "t.json", true, &warnings);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 1u);
  EXPECT_THAT((*ex)[0].doc_tokens, ElementsAre("The", "cat", "sat", "on", "the", "mat."));
  EXPECT_EQ((*ex)[0].start_position, 4);
  EXPECT_EQ((*ex)[0].end_position, 5);
  EXPECT_TRUE(warnings.empty());
  // "au" is code point 5 of "Caf\u00e9 au lait" (byte 6): offsets count characters.
  ex = ReadSquadExamples(OneQuestion("Caf\u00e9 au lait", "?", "au", 5), "t.json", true, nullptr);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ((*ex)[0].start_position, 1);
  EXPECT_EQ((*ex)[0].end_position, 1);
}

TEST(ReadSquadExamples, SkipsUnrecoverableAnswersAndRejectsMalformedOnes) {
  std::vector<std::string> warnings;
  auto ex = ReadSquadExamples(OneQuestion("a cat sat", "?", "dog", 2), "t.json", true, &warnings);
  ASSERT_TRUE(ex.ok());
  EXPECT_TRUE(ex->empty());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("could not find answer 'dog' in 'cat'"));
  // For prediction the same question is kept (answers are not read).
  ex = ReadSquadExamples(OneQuestion("a cat sat", "?", "dog", 2), "t.json", false, nullptr);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->size(), 1u);
  EXPECT_EQ((*ex)[0].start_position, -1);

  auto past = ReadSquadExamples(OneQuestion("a cat", "?", "cats", 2), "t.json", true, nullptr);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.status().message(),
            "t.json: question q: answer_start 2 + 4 characters runs past the end of the context "
            "(5 characters)");
  SquadDataset two = OneQuestion("a cat", "?", "cat", 2);
  two.paragraphs[0].questions[0].answers.push_back({"a", 0});
  auto many = ReadSquadExamples(two, "t.json", true, nullptr);
  ASSERT_FALSE(many.ok());
  EXPECT_THAT(many.status().message(), HasSubstr("has 2 answers"));
  EXPECT_TRUE(ReadSquadExamples(two, "t.json", false, nullptr).ok());
}

// Ten one-token words, a one-token question, windows of 5 context tokens every 2 tokens:
// [0,4] [2,6] [4,8] [6,9]. The answer "Four Five" (tokens 4-5) crosses the end of window 0.
constexpr char kTen[] = "Zero One Two Three Four Five Six Seven Eight Nine";
constexpr SquadFeatureOptions kWindows{/*max_seq_length=*/9, /*doc_stride=*/2,
                                       /*max_query_length=*/64};

TEST(ConvertSquadExamples, AnswerCrossingAWindowBoundary) {
  const WordPieceTokenizer tok = Vocab();
  auto ex = ReadSquadExamples(OneQuestion(kTen, "Which", "Four Five", 19), "t.json", true, nullptr);
  ASSERT_TRUE(ex.ok());
  std::vector<SquadFeature> f = ConvertSquadExamples(*ex, tok, kWindows, /*is_training=*/true);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_THAT(f[1].feature.input_ids, ElementsAre(2, 15, 3, 7, 8, 9, 10, 11, 3));
  EXPECT_EQ(f[1].feature.segment_b_start, 3);
  EXPECT_EQ(f[0].unique_id, 1000000000);
  EXPECT_EQ(f[3].unique_id, 1000000003);
  EXPECT_EQ(f[3].doc_span_index, 3);
  EXPECT_THAT(f[3].feature.input_ids, ElementsAre(2, 15, 3, 11, 12, 13, 14, 3));
  // Window 0 holds token 4 but not 5: [CLS]. Windows 1 and 2 hold both. Window 3 neither.
  const int want[4][2] = {{0, 0}, {5, 6}, {3, 4}, {0, 0}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(f[i].feature.start_position, want[i][0]) << "window " << i;
    EXPECT_EQ(f[i].feature.end_position, want[i][1]) << "window " << i;
    EXPECT_TRUE(f[i].token_to_orig_map.empty());  // training features carry no decoding maps
  }

  // Max context, by hand: score = min(left, right) + 0.01 * length, first window on ties.
  // Token 3: window 0 (3,1) 1.05 = window 1 (1,3) 1.05 -> 0. Token 5: windows 1 and 2 tie -> 1.
  // Token 6: window 1 (4,0) .05, window 2 (2,2) 2.05, window 3 (0,3) .04 -> 2.
  // Token 8: window 2 (4,0) .05, window 3 (2,1) 1.04 -> 3.
  f = ConvertSquadExamples(*ex, tok, kWindows, /*is_training=*/false);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_THAT(f[0].token_is_max_context, ElementsAre(0, 0, 0, 1, 1, 1, 1, 0, 0));
  EXPECT_THAT(f[1].token_is_max_context, ElementsAre(0, 0, 0, 0, 0, 1, 1, 0, 0));
  EXPECT_THAT(f[2].token_is_max_context, ElementsAre(0, 0, 0, 0, 0, 1, 1, 0, 0));
  EXPECT_THAT(f[3].token_is_max_context, ElementsAre(0, 0, 0, 0, 0, 1, 1, 0));
  EXPECT_THAT(f[1].token_to_orig_map, ElementsAre(-1, -1, -1, 2, 3, 4, 5, 6, -1));
  EXPECT_EQ(f[1].feature.start_position, -1);  // no targets when not training
}

TEST(ConvertSquadExamples, QueryIsTruncatedAndAnswerNarrowedToItsWordPieces) {
  const WordPieceTokenizer tok = Vocab();
  // Doc tokens: born | (1895-1943). | He ; WordPieces: born ( 18 ##95 - 19 ##43 ) . he
  auto ex = ReadSquadExamples(OneQuestion("born (1895-1943). He", "when when when", "1895", 6),
                              "t.json", true, nullptr);
  ASSERT_TRUE(ex.ok());
  ASSERT_EQ(ex->size(), 1u);
  EXPECT_EQ((*ex)[0].start_position, 1);
  std::vector<SquadFeature> f =
      ConvertSquadExamples(*ex, tok, {/*max_seq_length=*/32, 128, /*max_query_length=*/2}, true);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_THAT(f[0].feature.input_ids,
              ElementsAre(2, 16, 16, 3, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 3));
  EXPECT_EQ(f[0].feature.segment_b_start, 4);
  // The word "(1895-1943)." is tokens 1-8 of the context; the answer's tokens "18 ##95" are 2-3.
  EXPECT_EQ(f[0].feature.start_position, 4 + 2);
  EXPECT_EQ(f[0].feature.end_position, 4 + 3);

  // Decoding those two tokens maps back to "1895" inside the original word.
  f = ConvertSquadExamples(*ex, tok, {32, 128, 2}, false);
  std::vector<float> start(32, 0.0f), end(32, 0.0f);
  start[6] = 5;
  end[7] = 5;
  auto p = DecodeSquadPredictions(*ex, f, {start}, {end}, tok, {20, 30});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].first, "q");
  EXPECT_EQ(p[0].second, "1895");
}

TEST(ConvertSquadExamples, AccentsAndCjkCharacters) {
  const WordPieceTokenizer tok = Vocab();
  // Doc tokens: Le | caf\u00e9 | de | Z\u00fcrich | \u5317\u4eac\u5927\u5b66 | est | l\u00e0.
  // The CJK word is four WordPieces, one per character; accents are stripped (uncased).
  const std::string context = "Le caf\u00e9 de Z\u00fcrich \u5317\u4eac\u5927\u5b66 est l\u00e0.";
  auto ex =
      ReadSquadExamples(OneQuestion(context, "where", "\u5317\u4eac", 18), "t.json", true, nullptr);
  ASSERT_TRUE(ex.ok());
  ASSERT_EQ(ex->size(), 1u);
  EXPECT_EQ((*ex)[0].start_position, 4);
  EXPECT_EQ((*ex)[0].end_position, 4);
  std::vector<SquadFeature> f = ConvertSquadExamples(*ex, tok, {32, 128, 64}, true);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_THAT(f[0].feature.input_ids,
              ElementsAre(2, 17, 3, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 26, 3));
  // The word's tokens 4-7 narrowed to the answer's two characters, tokens 4-5.
  EXPECT_EQ(f[0].feature.start_position, 3 + 4);
  EXPECT_EQ(f[0].feature.end_position, 3 + 5);

  // Decoding: each prediction maps back to the exact original substring, with its accents and
  // without the spaces BERT put between CJK characters.
  f = ConvertSquadExamples(*ex, tok, {32, 128, 64}, false);
  struct Case {
    int start, end;
    std::string want;
  };
  const Case cases[] = {{7, 8, "\u5317\u4eac"},
                        {6, 6, "Z\u00fcrich"},
                        {4, 6, "caf\u00e9 de Z\u00fcrich"},
                        {12, 12, "l\u00e0"},
                        {8, 11, "\u4eac\u5927\u5b66 est"}};
  for (const Case& c : cases) {
    std::vector<float> start(32, 0.0f), end(32, 0.0f);
    start[c.start] = 3;
    end[c.end] = 3;
    auto p = DecodeSquadPredictions(*ex, f, {start}, {end}, tok, {20, 30});
    EXPECT_EQ(p[0].second, c.want) << c.start << ".." << c.end;
    EXPECT_NE(context.find(p[0].second), std::string::npos);
  }
}

TEST(GetFinalText, FallsBackToTheOriginalSpanWhenTheAlignmentFails) {
  const WordPieceTokenizer tok = Vocab();
  EXPECT_EQ(GetFinalText("1895", "(1895-1943).", tok), "1895");
  EXPECT_EQ(GetFinalText("steve smith", "Steve Smith's", tok), "Steve Smith");
  // Not found in the tokenised original: the original.
  EXPECT_EQ(GetFinalText("jones", "Steve Smith's", tok), "Steve Smith's");
  // A decomposed accent: "Cafe" + U+0301 is 5 characters, its tokenisation "cafe" 4.
  EXPECT_EQ(GetFinalText("cafe", "Cafe\u0301", tok), "Cafe\u0301");
}

TEST(DecodeSquadPredictions, KeepsOnlyValidMaxContextSpansAcrossWindows) {
  const WordPieceTokenizer tok = Vocab();
  auto ex =
      ReadSquadExamples(OneQuestion(kTen, "Which", "Four Five", 19), "t.json", false, nullptr);
  std::vector<SquadFeature> f = ConvertSquadExamples(*ex, tok, kWindows, false);
  ASSERT_EQ(f.size(), 4u);
  // Every other logit is -100, so only the pairs set here can win; from the highest score
  // down, excluded: a span starting in the question (window 0, position 1: 40); "Six .. Nine"
  // in window 3, 4 tokens > max_answer_length 3 (38); an end before its start in window 2
  // (30); "Four" in window 0, whose token 4 is not max-context there (20).
  std::vector<std::vector<float>> start(4, std::vector<float>(9, -100.0f)), end = start;
  start[0][1] = 20, end[0][3] = 20;
  start[3][3] = 19, end[3][6] = 19;
  start[2][6] = 15, end[2][4] = 15;
  start[0][7] = 10, end[0][7] = 10;
  // Valid: "Four Five" in window 1 (18) beats "Six" in window 2 (10).
  start[1][5] = 9, end[1][6] = 9;
  start[2][5] = 5, end[2][5] = 5;
  auto p = DecodeSquadPredictions(*ex, f, start, end, tok, {20, /*max_answer_length=*/3});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].second, "Four Five");
  // With no valid span at all, run_squad's nonce answer: with n_best_size 1 and equal logits
  // only position 0 ([CLS]) is a candidate start.
  std::vector<std::vector<float>> none(4, std::vector<float>(9, 0.0f));
  p = DecodeSquadPredictions(*ex, f, none, none, tok, {1, 30});
  EXPECT_EQ(p[0].second, "empty");
}

TEST(MakeTaskBatch, PadsRowsAndSetsSegmentsAndTargets) {
  TaskFeature a{{2, 7, 3, 8, 9, 3}, 3, -1, 4, 5};
  TaskFeature b{{2, 7, 3}, 3, -1, 0, 0};
  TaskBatch t = MakeTaskBatch({&a, &b}, 7);
  EXPECT_EQ(t.inputs.batch_size, 2);
  EXPECT_EQ(t.inputs.seq_length, 7);
  EXPECT_THAT(t.inputs.input_ids, ElementsAreArray({2, 7, 3, 8, 9, 3, 0, 2, 7, 3, 0, 0, 0, 0}));
  EXPECT_THAT(t.inputs.input_mask, ElementsAreArray({1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_THAT(t.inputs.segment_ids, ElementsAreArray({0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_THAT(t.start_positions, ElementsAre(4, 0));
  EXPECT_THAT(t.end_positions, ElementsAre(5, 0));
  EXPECT_TRUE(t.labels.empty());
}

}  // namespace
}  // namespace headroom
