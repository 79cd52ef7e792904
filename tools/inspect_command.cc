// `headroom inspect FILE...`: prints the records of shard files decoded as tf.Example: each
// feature's name, kind, length and values, and with a vocabulary the token features as text:
// WordPiece ids as their tokens (--vocab=vocab.txt), SentencePiece ids decoded to the text they
// encode, sentence ends shown as </s> (--spm_model=lm.model, or --vocab=lm.model as a config's
// data.vocab_file names it). Reads with the same RecordReader as training, so a damaged file is
// reported the same way (file, record, byte offset) and the command exits non-zero. A shard's
// index given with it (a wildcard matches both) is skipped.
//
// `headroom inspect --write_index FILE...` instead writes each shard's index (`FILE.index`,
// data/record_index.h), for shards made by other tools (Google BERT's scripts, tensor2tensor)
// so that the loader need not scan them at every start.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "data/example_io.h"
#include "data/record_index.h"
#include "data/record_reader.h"
#include "data/sentencepiece_tokenizer.h"
#include "tools/command.h"

ABSL_FLAG(std::string, vocab, "",
          "vocabulary to print token features as text: a WordPiece vocab.txt (one token per line, "
          "id = line number) or a SentencePiece .model");
ABSL_FLAG(int64_t, limit, 10, "records to print per file (0: all)");
ABSL_FLAG(std::string, token_features, "input_ids,masked_lm_ids,targets,inputs",
          "comma-separated int64 features printed as text with a vocabulary");
ABSL_FLAG(bool, write_index, false,
          "write FILE.index for each shard (made by another tool) instead of printing it");
// Defined by prepare-lm (tools/prepare_lm_command.cc); here the model to decode with.
ABSL_DECLARE_FLAG(std::string, spm_model);

namespace headroom {
namespace {

// Token ids as text, from a WordPiece vocab.txt or a SentencePiece model.
class TokenText {
 public:
  // `path` ending in ".model" is a SentencePiece model, anything else a vocab.txt.
  static absl::StatusOr<TokenText> Load(const std::string& path) {
    TokenText t;
    if (absl::EndsWith(path, ".model")) {
      absl::StatusOr<SentencePieceTokenizer> spm = SentencePieceTokenizer::Load(path);
      if (!spm.ok()) return spm.status();
      t.spm_.emplace(*std::move(spm));
      return t;
    }
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) return text.status();
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      t.vocab_.emplace_back(line);
    }
    if (!t.vocab_.empty() && t.vocab_.back().empty()) t.vocab_.pop_back();  // final newline
    if (t.vocab_.empty()) return absl::InvalidArgumentError(path + ": empty vocabulary");
    return t;
  }

  // What id 0, the padding, is called.
  std::string PadName() const { return spm_ ? spm_->IdToPiece(0) : vocab_[0]; }

  std::string Render(absl::Span<const int64_t> ids) const {
    std::vector<std::string> parts;
    std::vector<int32_t> run;  // SentencePiece ids decoded together
    auto flush = [&] {
      if (run.empty()) return;
      absl::StatusOr<std::string> text = spm_->Decode(run);
      parts.push_back(text.ok() ? *text
                                : absl::StrCat("<cannot decode: ", text.status().message(), ">"));
      run.clear();
    };
    const int64_t size = spm_ ? spm_->vocab_size() : static_cast<int64_t>(vocab_.size());
    for (int64_t id : ids) {
      if (id < 0 || id >= size) {
        if (spm_) flush();
        parts.push_back(absl::StrCat("<id ", id, " not in vocab>"));
      } else if (!spm_) {
        parts.push_back(vocab_[id]);
      } else if (id == spm_->eos_id() || id == spm_->pad_id()) {
        flush();  // sentence ends and padding inside a packed example, by name
        parts.push_back(spm_->IdToPiece(static_cast<int32_t>(id)));
      } else {
        run.push_back(static_cast<int32_t>(id));
      }
    }
    if (spm_) flush();
    return absl::StrJoin(parts, " ");
  }

 private:
  std::vector<std::string> vocab_;
  std::optional<SentencePieceTokenizer> spm_;
};

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

void PrintFeature(const std::string& name, const tf::Feature& f, const TokenText* vocab,
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
    bool is_tokens = vocab != nullptr && std::find(token_features.begin(), token_features.end(),
                                                   name) != token_features.end();
    if (is_tokens) {
      text = vocab->Render(v.subspan(0, n));
      if (n < v.size()) {
        absl::StrAppend(&text, " (then ", v.size() - n, " x ", vocab->PadName(), ")");
      }
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
bool InspectFile(const std::string& path, int64_t limit, const TokenText* vocab,
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

// Writes the index of each shard of `files`; prints one line per shard.
int WriteIndexes(const std::vector<std::string>& files) {
  for (const std::string& path : files) {
    absl::StatusOr<int64_t> records = WriteRecordIndex(path);
    if (!records.ok()) return Fail("inspect", std::string(records.status().message()));
    std::printf("%s: %" PRId64 " record%s indexed\n", RecordIndexPath(path).c_str(), *records,
                *records == 1 ? "" : "s");
  }
  return 0;
}

}  // namespace

int RunInspect(const CommandArgs& args) {
  if (args.positional.empty()) {
    return Fail("inspect", "no files given; e.g. headroom inspect shards/train-00000");
  }
  const std::vector<std::string> files = WithoutRecordIndexes(args.positional);
  if (absl::GetFlag(FLAGS_write_index)) return WriteIndexes(files);
  const int64_t limit = absl::GetFlag(FLAGS_limit);
  if (limit < 0) return Fail("inspect", "--limit must be >= 0 (0 prints every record)");
  const std::string vocab_path = absl::GetFlag(FLAGS_vocab);
  const std::string spm_path = absl::GetFlag(FLAGS_spm_model);
  if (!vocab_path.empty() && !spm_path.empty()) {
    return Fail("inspect", "give --vocab or --spm_model, not both");
  }
  std::optional<TokenText> vocab;
  if (!vocab_path.empty() || !spm_path.empty()) {
    if (!spm_path.empty() && !absl::EndsWith(spm_path, ".model")) {
      return Fail("inspect",
                  absl::StrCat("--spm_model=", spm_path,
                               ": expected a SentencePiece model, a name ending in .model"));
    }
    absl::StatusOr<TokenText> loaded = TokenText::Load(spm_path.empty() ? vocab_path : spm_path);
    if (!loaded.ok()) return Fail("inspect", std::string(loaded.status().message()));
    vocab.emplace(*std::move(loaded));
  }
  std::vector<std::string> token_features =
      absl::StrSplit(absl::GetFlag(FLAGS_token_features), ',', absl::SkipEmpty());
  for (const std::string& path : files) {
    if (!InspectFile(path, limit, vocab ? &*vocab : nullptr, token_features)) return 1;
  }
  return 0;
}

}  // namespace headroom
