// `headroom inspect FILE...`: prints the records of shard files decoded as tf.Example: each
// feature's name, kind, length and values, and with --vocab the token features as text. Reads
// with the same RecordReader as training, so a damaged file is reported the same way (file,
// record, byte offset) and the command exits non-zero.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "tools/command.h"

ABSL_FLAG(std::string, vocab, "",
          "vocab.txt (one token per line, id = line number) to print token features as text");
ABSL_FLAG(int64_t, limit, 10, "records to print per file (0: all)");
ABSL_FLAG(std::string, token_features, "input_ids,masked_lm_ids,targets,inputs",
          "comma-separated int64 features printed as text with --vocab");

namespace headroom {
namespace {

// A trailing run of zeros (padding) longer than this is printed as a count.
constexpr size_t kMinZeroRun = 4;

// Number of values worth printing: all but a long run of trailing zeros.
template <typename T>
size_t Significant(absl::Span<const T> v) {
  size_t n = v.size();
  while (n > 0 && v[n - 1] == T{0}) --n;
  return v.size() - n >= kMinZeroRun ? n : v.size();
}

std::string Escape(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 200)) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, static_cast<char>(c)));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  out += s.size() > 200 ? absl::StrCat("\"... (", s.size(), " bytes)") : "\"";
  return out;
}

void PrintFeature(const std::string& name, const tf::Feature& f,
                  const std::vector<std::string>& vocab,
                  const std::vector<std::string>& token_features) {
  std::string head;
  std::string values;
  std::string text;  // token features with --vocab
  if (f.has_int64_list()) {
    absl::Span<const int64_t> v(f.int64_list().value().data(), f.int64_list().value().size());
    size_t n = Significant(v);
    head = absl::StrCat("int64[", v.size(), "]");
    values = absl::StrJoin(v.subspan(0, n), " ");
    if (n < v.size()) absl::StrAppend(&values, n ? " " : "", "(then ", v.size() - n, " zeros)");
    bool is_tokens = !vocab.empty() && std::find(token_features.begin(), token_features.end(),
                                                 name) != token_features.end();
    if (is_tokens) {
      std::vector<std::string> tokens;
      for (size_t i = 0; i < n; ++i) {
        tokens.push_back(v[i] >= 0 && static_cast<uint64_t>(v[i]) < vocab.size()
                             ? vocab[v[i]]
                             : absl::StrCat("<id ", v[i], " not in vocab>"));
      }
      text = absl::StrJoin(tokens, " ");
      if (n < v.size()) absl::StrAppend(&text, " (then ", v.size() - n, " x ", vocab[0], ")");
    }
  } else if (f.has_float_list()) {
    absl::Span<const float> v(f.float_list().value().data(), f.float_list().value().size());
    size_t n = Significant(v);
    head = absl::StrCat("float[", v.size(), "]");
    values = absl::StrJoin(v.subspan(0, n), " ");
    if (n < v.size()) absl::StrAppend(&values, n ? " " : "", "(then ", v.size() - n, " zeros)");
  } else if (f.has_bytes_list()) {
    head = absl::StrCat("bytes[", f.bytes_list().value_size(), "]");
    std::vector<std::string> parts;
    for (const std::string& b : f.bytes_list().value()) parts.push_back(Escape(b));
    values = absl::StrJoin(parts, " ");
  } else {
    head = "empty";
  }
  std::printf("  %-20s %-10s %s\n", name.c_str(), head.c_str(), values.c_str());
  if (!text.empty()) std::printf("  %-20s %-10s %s\n", "", "as text", text.c_str());
}

// Prints the records of one file; returns false (after printing why) on damage.
bool InspectFile(const std::string& path, int64_t limit, const std::vector<std::string>& vocab,
                 const std::vector<std::string>& token_features) {
  absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
  if (!reader.ok()) {
    Fail("inspect", std::string(reader.status().message()));
    return false;
  }
  std::string record;
  tf::Example example;
  int64_t shown = 0;
  while (limit == 0 || shown < limit) {
    RecordLocation where{path, (*reader)->record_index(), (*reader)->offset()};
    absl::StatusOr<bool> more = (*reader)->ReadNext(&record);
    if (!more.ok()) {
      std::fflush(stdout);
      Fail("inspect", std::string(more.status().message()));
      return false;
    }
    if (!*more) break;
    ++shown;
    if (!ParseExample(record, where, &example).ok()) {
      std::printf("%s: %zu bytes, not a tf.Example: %s\n", where.ToString().c_str(), record.size(),
                  Escape(record.substr(0, 48)).c_str());
      continue;
    }
    const auto& features = example.features().feature();
    std::printf("%s: %zu bytes, %zu feature%s\n", where.ToString().c_str(), record.size(),
                features.size(), features.size() == 1 ? "" : "s");
    std::vector<std::string> names;
    for (const auto& [name, f] : features) names.push_back(name);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      PrintFeature(name, features.at(name), vocab, token_features);
    }
  }
  bool at_end = (*reader)->offset() == (*reader)->size();
  std::printf("%s: %" PRId64 " record%s shown%s\n\n", path.c_str(), shown, shown == 1 ? "" : "s",
              at_end ? " (end of file)" : absl::StrCat(" (--limit=", limit, ")").c_str());
  return true;
}

}  // namespace

int RunInspect(const CommandArgs& args) {
  if (args.positional.empty()) {
    return Fail("inspect", "no files given; e.g. headroom inspect shards/train-00000");
  }
  const int64_t limit = absl::GetFlag(FLAGS_limit);
  if (limit < 0) return Fail("inspect", "--limit must be >= 0 (0 prints every record)");
  std::vector<std::string> vocab;
  const std::string vocab_path = absl::GetFlag(FLAGS_vocab);
  if (!vocab_path.empty()) {
    absl::StatusOr<std::string> text = ReadFile(vocab_path);
    if (!text.ok()) return Fail("inspect", std::string(text.status().message()));
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      vocab.emplace_back(line);
    }
    if (!vocab.empty() && vocab.back().empty()) vocab.pop_back();  // final newline
    if (vocab.empty()) return Fail("inspect", absl::StrCat(vocab_path, ": empty vocabulary"));
  }
  std::vector<std::string> token_features =
      absl::StrSplit(absl::GetFlag(FLAGS_token_features), ',', absl::SkipEmpty());
  for (const std::string& path : args.positional) {
    if (!InspectFile(path, limit, vocab, token_features)) return 1;
  }
  return 0;
}

}  // namespace headroom
