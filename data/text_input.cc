// Streaming text input, input-file expansion and the progress line (see text_input.h).
#include "data/text_input.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace headroom {

absl::StatusOr<std::vector<std::string>> ExpandInputFiles(const std::string& spec) {
  std::vector<std::string> files;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::string pattern(absl::StripAsciiWhitespace(part));
    glob_t g;
    int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
      globfree(&g);
      return absl::NotFoundError(absl::StrCat("input ", pattern, " not found (no file matches)"));
    }
    if (rc != 0) {
      globfree(&g);
      return absl::InvalidArgumentError(absl::StrCat("cannot expand input pattern ", pattern));
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);  // glob sorts
    globfree(&g);
  }
  if (files.empty()) return absl::InvalidArgumentError("no input files given");
  return files;
}

absl::StatusOr<TextReader> TextReader::Open(std::vector<std::string> files) {
  if (files.empty()) return absl::InvalidArgumentError("no input files given");
  TextReader r;
  for (const std::string& f : files) {
    struct stat st;
    if (::stat(f.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("input ", f, ": ", std::strerror(errno)));
    }
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("input ", f, " is a directory"));
    }
    r.total_bytes_ += static_cast<uint64_t>(st.st_size);
  }
  r.files_ = std::move(files);
  return r;
}

TextReader::~TextReader() = default;

void TextReader::WarnIfLong(absl::string_view line) const {
  // Characters are code points: every byte but UTF-8 continuation bytes (10xxxxxx) starts one.
  const int64_t chars = std::count_if(line.begin(), line.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
  if (chars <= kLongLineChars) return;
  const std::string message = absl::StrCat(
      current_, ":", line_number_, ": a line of ", chars, " characters (more than ", kLongLineChars,
      "): it is read as one sentence and cut to the sequence length; is ", current_,
      " one sentence per line?");
  if (warn_) {
    warn_(message);
  } else {
    std::fprintf(stderr, "warning: %s\n", message.c_str());
  }
}

bool TextReader::NextLine(std::string* line) {
  if (!status_.ok()) return false;
  while (true) {
    if (file_ == nullptr) {
      if (next_file_ >= files_.size()) return false;
      current_ = files_[next_file_];
      file_.reset(std::fopen(current_.c_str(), "rb"));
      if (file_ == nullptr) {
        status_ = absl::NotFoundError(
            absl::StrCat("cannot open input ", current_, ": ", std::strerror(errno)));
        return false;
      }
      ++next_file_;
      line_number_ = 0;
    }
    char* buf = nullptr;
    size_t cap = 0;
    ssize_t n = ::getline(&buf, &cap, file_.get());
    if (n < 0) {
      bool error = std::ferror(file_.get());
      std::free(buf);
      file_.reset();
      if (error) {
        status_ = absl::DataLossError(absl::StrCat("read error in input ", current_));
        return false;
      }
      if (next_file_ < files_.size()) {  // a file boundary ends the document
        line->clear();
        return true;
      }
      return false;
    }
    bytes_read_ += static_cast<uint64_t>(n);
    ++line_number_;
    absl::string_view stripped =
        absl::StripAsciiWhitespace(absl::string_view(buf, static_cast<size_t>(n)));
    if (static_cast<int64_t>(stripped.size()) > kLongLineChars) WarnIfLong(stripped);
    line->assign(stripped.data(), stripped.size());
    std::free(buf);
    return true;
  }
}

Progress::Progress(std::string what, bool enabled, std::string unit,
                   std::chrono::milliseconds interval)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      interval_(tty_ ? interval : interval * 10),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

double Progress::ElapsedSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

namespace {
std::string Human(double v) {
  if (v >= 1e9) return absl::StrFormat("%.2fG", v / 1e9);
  if (v >= 1e6) return absl::StrFormat("%.2fM", v / 1e6);
  if (v >= 1e4) return absl::StrFormat("%.1fk", v / 1e3);
  return absl::StrFormat("%.0f", v);
}
}  // namespace

void Progress::Update(int64_t documents, int64_t tokens, int64_t examples, double fraction) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_ < interval_) return;
  last_ = now;
  Print(documents, tokens, examples, fraction, false);
}

double Progress::Finish(int64_t documents, int64_t tokens, int64_t examples) {
  if (enabled_) Print(documents, tokens, examples, 1.0, true);
  return ElapsedSeconds();
}

void Progress::Print(int64_t documents, int64_t tokens, int64_t examples, double fraction,
                     bool final) {
  double s = std::max(ElapsedSeconds(), 1e-9);
  std::string line = absl::StrFormat("%s: %s %s  %s tokens  %s examples | %s %s/s %s tokens/s",
                                     what_, Human(documents), unit_, Human(tokens), Human(examples),
                                     Human(documents / s), unit_, Human(tokens / s));
  if (final) {
    absl::StrAppendFormat(&line, " | done in %.1fs", s);
  } else if (fraction > 0) {
    absl::StrAppendFormat(&line, " | %.0f%% ETA %.0fs", 100 * fraction,
                          s * (1 - fraction) / fraction);
  }
  if (tty_) {
    std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace headroom
