// A console for the code under test that writes to a FILE* (TrainOptions::console,
// FineTuneOptions::console, MetricsOptions::console): a temporary file, read back as text.
//
//   testing::ConsoleCapture console;
//   options.console = console.file();
//   ... run ...
//   EXPECT_EQ(console.FirstLine(), "note: ...\n");
#ifndef HEADROOM_TESTS_CONSOLE_CAPTURE_H_
#define HEADROOM_TESTS_CONSOLE_CAPTURE_H_

#include <cstdio>
#include <string>

namespace headroom::testing {

class ConsoleCapture {
 public:
  ConsoleCapture() : file_(std::tmpfile()) {}
  ~ConsoleCapture() {
    if (file_ != nullptr) std::fclose(file_);
  }
  ConsoleCapture(const ConsoleCapture&) = delete;
  ConsoleCapture& operator=(const ConsoleCapture&) = delete;

  // Null if no temporary file could be made (the tests ASSERT on it).
  std::FILE* file() const { return file_; }

  // Everything written so far.
  std::string Text() const {
    std::string text;
    if (file_ == nullptr) return text;
    std::fflush(file_);
    std::rewind(file_);
    for (int c = std::fgetc(file_); c != EOF; c = std::fgetc(file_)) text += static_cast<char>(c);
    return text;
  }

  // The first line written, with its newline; "" if none.
  std::string FirstLine() const {
    const std::string text = Text();
    const size_t end = text.find('\n');
    return end == std::string::npos ? text : text.substr(0, end + 1);
  }

 private:
  std::FILE* file_;
};

}  // namespace headroom::testing

#endif  // HEADROOM_TESTS_CONSOLE_CAPTURE_H_
