// Reading pre-training text: the standard form of Google BERT's create_pretraining_data.py and of
// our bundled corpus (scripts/fetch-data): one sentence per line, a blank line between
// documents. Input is streamed line by line, so memory does not grow with the corpus, and a
// progress line (documents/s, tokens/s, ETA) can be printed while it is consumed.
//
// Example:
//   HR_ASSIGN_OR_RETURN(std::vector<std::string> files, ExpandInputFiles("a.txt,shards/*.txt"));
//   HR_ASSIGN_OR_RETURN(TextReader reader, TextReader::Open(files));
//   std::string line;
//   while (reader.NextLine(&line)) { ... }   // a document ends at an empty line or a new file
//   HR_RETURN_IF_ERROR(reader.status());
#ifndef HEADROOM_DATA_TEXT_INPUT_H_
#define HEADROOM_DATA_TEXT_INPUT_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace headroom {

// Expands `spec`, a comma-separated list of paths or glob patterns (Google's --input_file), into
// files in the order given (each glob sorted). NotFound naming the pattern if one matches nothing.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ExpandInputFiles(const std::string& spec);

// Streams lines from files in order. Lines are returned without the trailing "\n" / "\r\n" and
// with surrounding ASCII whitespace stripped. The end of each file (except the last) is returned
// as an extra empty line, so documents never span files.
//
// A line of more than kLongLineChars characters (UTF-8 code points) is still returned whole, but
// first the warning handler gets one line naming the file and line number: such a line is one
// sentence to the data generators, which cut it to the sequence length, so the file is probably
// not one sentence per line.
class TextReader {
 public:
  static constexpr int64_t kLongLineChars = 1'000'000;
  [[nodiscard]] static absl::StatusOr<TextReader> Open(std::vector<std::string> files);
  TextReader(TextReader&&) = default;
  TextReader& operator=(TextReader&&) = default;
  ~TextReader();

  // False at the end of the input or on an I/O error (then status() says which file).
  bool NextLine(std::string* line);
  const absl::Status& status() const { return status_; }
  // Bytes consumed so far and in total (for progress and ETA).
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t total_bytes() const { return total_bytes_; }
  // Where warnings go (each a line without "\n"); by default stderr, prefixed "warning: ".
  void set_warning_handler(std::function<void(const std::string&)> handler) {
    warn_ = std::move(handler);
  }

 private:
  TextReader() = default;
  // Calls the warning handler when `line` (stripped) has more than kLongLineChars characters.
  void WarnIfLong(absl::string_view line) const;
  std::vector<std::string> files_;
  size_t next_file_ = 0;
  std::unique_ptr<FILE, int (*)(FILE*)> file_{nullptr, &std::fclose};
  std::string current_;
  int64_t line_number_ = 0;  // in current_, 1-based
  uint64_t bytes_read_ = 0, total_bytes_ = 0;
  std::function<void(const std::string&)> warn_;
  absl::Status status_;
};

// A progress line on stderr for long preparation steps, at most once per `interval`:
//   "prepare-bert: 12000 docs  3.1M tokens  41k instances | 5200 docs/s 1.3M tokens/s | 45% ETA 3s"
// On a terminal the line is rewritten in place; otherwise a new line is printed each time.
class Progress {
 public:
  // `unit` names what `documents` counts ("docs", "sentences").
  Progress(std::string what, bool enabled, std::string unit = "docs",
           std::chrono::milliseconds interval = std::chrono::seconds(1));
  // Reports counts so far; `fraction` in [0, 1] is the share of the input consumed (for ETA).
  void Update(int64_t documents, int64_t tokens, int64_t examples, double fraction);
  // Prints the final line (always, when enabled) and returns the elapsed seconds.
  double Finish(int64_t documents, int64_t tokens, int64_t examples);
  double ElapsedSeconds() const;

 private:
  void Print(int64_t documents, int64_t tokens, int64_t examples, double fraction, bool final);
  std::string what_, unit_;
  bool enabled_, tty_;
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace headroom

#endif  // HEADROOM_DATA_TEXT_INPUT_H_
