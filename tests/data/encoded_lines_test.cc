// EncodedLines: the lines and ids it hands out are those of a plain line-by-line loop, in
// order, for any number of workers and any block size; an encoder error is the first failing
// line's, whichever worker met it.
#include "data/encoded_lines.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/data/text_test_util.h"

namespace headroom {
namespace {

// A toy tokenizer: one id per byte (its value + 1), so ids identify the line's text.
absl::Status Bytes(absl::string_view line, std::vector<int32_t>* ids) {
  for (unsigned char c : line) ids->push_back(c + 1);
  return absl::OkStatus();
}

std::string WriteLines(int n) {
  const std::string path = testing::MakeTempDir("encoded_lines") + "/text.txt";
  FILE* f = std::fopen(path.c_str(), "w");
  for (int i = 0; i < n; ++i) {
    std::fputs(i % 7 == 3 ? "\n" : absl::StrCat("line ", i, " of text\n").c_str(), f);
  }
  std::fclose(f);
  return path;
}

struct Seen {
  std::vector<std::string> lines;
  std::vector<std::vector<int32_t>> ids;
};

Seen Read(const std::string& path, int workers, size_t block_bytes) {
  auto reader = TextReader::Open({path});
  EXPECT_TRUE(reader.ok()) << reader.status();
  EncodedLines lines(std::move(*reader), Bytes, workers, block_bytes);
  Seen seen;
  const std::string* line;
  const std::vector<int32_t>* ids;
  while (lines.Next(&line, &ids)) {
    seen.lines.push_back(*line);
    seen.ids.push_back(*ids);
  }
  EXPECT_TRUE(lines.status().ok()) << lines.status();
  EXPECT_DOUBLE_EQ(lines.fraction(), 1.0);
  return seen;
}

TEST(EncodedLinesTest, SameLinesAndIdsInOrderForAnyWorkersAndBlocks) {
  const std::string path = WriteLines(1000);
  Seen want;  // line by line, by hand
  {
    auto reader = TextReader::Open({path});
    ASSERT_TRUE(reader.ok());
    std::string line;
    while (reader->NextLine(&line)) {
      want.lines.push_back(line);
      std::vector<int32_t> ids;
      ASSERT_TRUE(Bytes(line, &ids).ok());
      want.ids.push_back(ids);
    }
  }
  ASSERT_EQ(want.lines.size(), 1000u);
  for (int workers : {1, 2, 3, 8}) {
    for (size_t block : {size_t{1}, size_t{100}, size_t{4} << 20}) {
      SCOPED_TRACE(absl::StrCat(workers, " workers, blocks of ", block, " bytes"));
      const Seen got = Read(path, workers, block);
      EXPECT_EQ(got.lines, want.lines);
      EXPECT_EQ(got.ids, want.ids);
    }
  }
}

TEST(EncodedLinesTest, TheFirstFailingLineIsReported) {
  const std::string path = WriteLines(200);
  for (int workers : {1, 4}) {
    auto reader = TextReader::Open({path});
    ASSERT_TRUE(reader.ok());
    // Lines 150 and 60 fail; with 4 workers line 150's worker may fail first in time.
    EncodedLines lines(
        std::move(*reader),
        [](absl::string_view line, std::vector<int32_t>* ids) -> absl::Status {
          if (line == "line 60 of text" || line == "line 150 of text") {
            return absl::InvalidArgumentError(absl::StrCat("cannot encode '", line, "'"));
          }
          return Bytes(line, ids);
        },
        workers);
    const std::string* line;
    const std::vector<int32_t>* ids;
    int n = 0;
    while (lines.Next(&line, &ids)) ++n;
    EXPECT_EQ(n, 0) << "the block holding the failure yields nothing";
    EXPECT_EQ(lines.status().message(), "cannot encode 'line 60 of text'");
  }
}

}  // namespace
}  // namespace headroom
