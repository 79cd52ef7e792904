// MNLI and headed-TSV readers and run_classifier.py's features on small files in GLUE's
// layouts written here: column selection, the last-column label, pair truncation worked by
// hand, and one-line errors naming file and line; the long-text windows of
// finetune.long_text_windows and the mean-of-logits prediction, worked by hand.
#include "finetune/sentence_data.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

using ::testing::ElementsAre;

// Ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then the words from 5.
WordPieceTokenizer Vocab() {
  return WordPieceTokenizer::FromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b",
                                         "c", "d", "e", "x", "y", "z", "."})
      .value();
}

// GLUE MNLI: train.tsv has 12 columns (label1, gold_label), dev_matched.tsv 16 (five
// annotator labels, then gold_label).
constexpr char kMnliTrain[] =
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
    "0\t31193\t31193n\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tA b c.\tX y.\tneutral\t"
    "neutral\r\n"
    "\n"
    "1\t101457\t101457e\ttelephone\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tD e\tZ\tentailment\t"
    "entailment\n";
constexpr char kMnliDev[] =
    "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tlabel2\t"
    "label3\tlabel4\tlabel5\tgold_label\n"
    "0\t63735\t63735n\tslate\t.\t.\t.\t.\ta\tb\tneutral\tentailment\tneutral\tneutral\tneutral\t"
    "contradiction\n";

TEST(ReadSentenceTsv, MnliTakesColumns8And9AndTheLastColumn) {
  auto train = ParseSentenceTsv(kMnliTrain, "train.tsv", SentenceFormat::kMnli);
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_EQ(train->size(), 2u);
  EXPECT_EQ((*train)[0].text_a, "A b c.");
  EXPECT_EQ((*train)[0].text_b, "X y.");
  EXPECT_EQ((*train)[0].label, "neutral");  // the CR of a CRLF line is dropped
  EXPECT_EQ((*train)[1].label, "entailment");
  EXPECT_EQ((*train)[1].source, "train.tsv:4");  // the blank line is skipped but counted
  auto dev = ParseSentenceTsv(kMnliDev, "dev_matched.tsv", SentenceFormat::kMnli);
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ((*dev)[0].label, "contradiction");  // gold_label, not label1
  EXPECT_THAT(MnliLabels(), ElementsAre("contradiction", "entailment", "neutral"));

  auto short_row = ParseSentenceTsv("h\n0\t1\t2\n", "dev.tsv", SentenceFormat::kMnli);
  ASSERT_FALSE(short_row.ok());
  EXPECT_EQ(short_row.status().message(),
            "dev.tsv:2: has 3 tab-separated columns; GLUE MNLI rows have sentence1 in column 9, "
            "sentence2 in 10 and the label last");
}

TEST(ReadSentenceTsv, ClassifyFindsColumnsByHeaderName) {
  const std::string dir = testing::MakeTempDir("sentence_tsv");
  ASSERT_TRUE(WriteFileAtomically(dir + "/train.tsv",
                                  "id\tlabel\tsentence\n7\tspam\tBuy x\n"
                                  "8\tham\tHello y\n9\tspam\tz\n")
                  .ok());
  auto single = ReadSentenceTsv(dir + "/train.tsv", SentenceFormat::kClassify);
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_EQ(single->size(), 3u);
  EXPECT_EQ((*single)[1].text_a, "Hello y");
  EXPECT_FALSE((*single)[1].has_b);
  EXPECT_EQ((*single)[1].label, "ham");
  EXPECT_THAT(DistinctLabels(*single), ElementsAre("ham", "spam"));

  auto pair = ParseSentenceTsv("sentence2\tsentence1\tlabel\nb\ta\t1\n", "p.tsv",
                               SentenceFormat::kClassify);
  ASSERT_TRUE(pair.ok());
  EXPECT_EQ((*pair)[0].text_a, "a");
  EXPECT_EQ((*pair)[0].text_b, "b");
  EXPECT_TRUE((*pair)[0].has_b);

  auto no_label = ParseSentenceTsv("sentence\ttag\nx\t1\n", "n.tsv", SentenceFormat::kClassify);
  ASSERT_FALSE(no_label.ok());
  EXPECT_EQ(no_label.status().message(),
            "n.tsv:1: the header (sentence, tag) must name `sentence` (or `sentence1` and "
            "`sentence2`) and `label` columns, tab-separated");
  EXPECT_FALSE(ParseSentenceTsv("sentence1\tlabel\nx\t1\n", "n.tsv", SentenceFormat::kClassify)
                   .ok());  // sentence1 without sentence2
  auto short_row = ParseSentenceTsv("label\tsentence\nham\n", "s.tsv", SentenceFormat::kClassify);
  ASSERT_FALSE(short_row.ok());
  EXPECT_EQ(short_row.status().message(), "s.tsv:2: has 1 tab-separated columns, the header 2");
  EXPECT_FALSE(ReadSentenceTsv(dir + "/missing.tsv", SentenceFormat::kClassify).ok());
}

TEST(SentenceFeatures, PairsAndSingleSentencesAsRunClassifier) {
  const WordPieceTokenizer tok = Vocab();
  SentenceExample pair{"a b c d e", "x y z", true, "neutral", "t:2"};
  // max_seq_length 8: the pair may keep 5 tokens. a (5) > b (3): pop a -> 4, pop a -> 3; then
  // 3 + 3 = 6 > 5 with a not longer: pop b -> 2.
  auto f = SentenceFeatures({pair}, MnliLabels(), tok, 8);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)[0].input_ids, ElementsAre(2, 5, 6, 7, 3, 10, 11, 3));
  EXPECT_EQ((*f)[0].segment_b_start, 5);
  EXPECT_EQ((*f)[0].label, 2);
  SentenceExample single{"a b c d e .", "", false, "ham", "t:3"};
  f = SentenceFeatures({single}, {"ham", "spam"}, tok, 5);
  ASSERT_TRUE(f.ok());
  EXPECT_THAT((*f)[0].input_ids, ElementsAre(2, 5, 6, 7, 3));  // cut to 5 - 2 tokens
  EXPECT_EQ((*f)[0].segment_b_start, 5);                       // no segment B
  EXPECT_EQ((*f)[0].label, 0);

  SentenceExample unknown{"a", "", false, "maybe", "dev.tsv:9"};
  auto bad = SentenceFeatures({unknown}, {"ham", "spam"}, tok, 5);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "dev.tsv:9: label 'maybe' is not one of the task's labels (ham, spam)");
}

TEST(TokenWindows, RunSquadDocSpans) {
  auto starts = [](const std::vector<TokenWindow>& w) {
    std::vector<std::pair<int, int>> out;
    for (const TokenWindow& x : w) out.emplace_back(x.start, x.length);
    return out;
  };
  using P = std::pair<int, int>;
  // 10 tokens, windows of 4 every 3: [0,4) [3,7) [6,10), which reaches the end.
  EXPECT_THAT(starts(TokenWindows(10, 4, 3)), ElementsAre(P{0, 4}, P{3, 4}, P{6, 4}));
  // A stride longer than the window advances by the window: no token is skipped.
  EXPECT_THAT(starts(TokenWindows(9, 4, 128)), ElementsAre(P{0, 4}, P{4, 4}, P{8, 1}));
  EXPECT_THAT(starts(TokenWindows(3, 4, 2)), ElementsAre(P{0, 3}));
  EXPECT_TRUE(TokenWindows(0, 4, 2).empty());
}

TEST(SentenceWindowFeatures, EveryWindowOfEveryTextWithItsLabel) {
  const WordPieceTokenizer tok = Vocab();
  // max_seq_length 6: windows of 4 tokens; stride 2. "a b c d e x ." is 7 tokens (5..11, 13):
  // [0,4) a b c d, [2,6) c d e x, [4,7) e x . (reaches the end).
  std::vector<SentenceExample> ex = {{"a b c d e x .", "", false, "spam", "t:2"},
                                     {"", "", false, "ham", "t:3"},
                                     {"z", "", false, "ham", "t:4"}};
  auto w = SentenceWindowFeatures(ex, {"ham", "spam"}, tok, 6, 2);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->features.size(), 5u);
  EXPECT_THAT(w->features[0].input_ids, ElementsAre(2, 5, 6, 7, 8, 3));
  EXPECT_THAT(w->features[1].input_ids, ElementsAre(2, 7, 8, 9, 10, 3));
  EXPECT_THAT(w->features[2].input_ids, ElementsAre(2, 9, 10, 13, 3));
  EXPECT_THAT(w->features[3].input_ids, ElementsAre(2, 3));  // an empty text: one feature
  EXPECT_THAT(w->features[4].input_ids, ElementsAre(2, 12, 3));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(w->features[i].label, 1);
  EXPECT_EQ(w->features[3].label, 0);
  EXPECT_EQ(w->features[2].segment_b_start, 5);  // no segment B
  EXPECT_THAT(w->example_of_feature, ElementsAre(0, 0, 0, 1, 2));

  SentenceExample pair{"a", "b", true, "ham", "dev.tsv:7"};
  auto bad = SentenceWindowFeatures({pair}, {"ham", "spam"}, tok, 6, 2);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "dev.tsv:7: is a sentence pair; finetune.long_text_windows takes single sentences (a "
            "TSV with a `sentence` column)");
}

TEST(MeanLogitPredictions, TheMeanOfTheWindowsLogitsNotTheirVote) {
  // Example 0 has 3 windows: (0, 1), (0, 1), (5, 0). Two of three windows say label 1, but the
  // mean is (5/3, 2/3): label 0. Example 1: one window (0.5, 2.0) -> 1. Example 2: a tie
  // (1, 1) -> the first label. Example 3 has no window -> -1.
  const std::vector<float> logits = {0, 1, 0, 1, 5, 0, 0.5f, 2.0f, 1, 1};
  EXPECT_THAT(MeanLogitPredictions(logits, 2, {0, 0, 0, 1, 2}, 4), ElementsAre(0, 1, 0, -1));
  // Three labels: windows (1, 2, 0) and (1, 0, 3): mean (1, 1, 1.5) -> label 2.
  EXPECT_THAT(MeanLogitPredictions({1, 2, 0, 1, 0, 3}, 3, {0, 0}, 1), ElementsAre(2));
}

}  // namespace
}  // namespace headroom
