// MNLI and headed-TSV readers and run_classifier.py's features on small files in GLUE's
// layouts written here: column selection, the last-column label, pair truncation worked by
// hand, and one-line errors naming file and line.
#include "finetune/sentence_data.h"

#include <cstdio>
#include <string>
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

}  // namespace
}  // namespace headroom
