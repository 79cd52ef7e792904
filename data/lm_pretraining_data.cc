// LM example creation (see lm_pretraining_data.h): a small state machine over sentences.
#include "data/lm_pretraining_data.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "data/bert_pretraining_data.h"
#include "data/encoded_lines.h"
#include "data/example_io.h"
#include "data/record_writer.h"
#include "data/text_input.h"

namespace headroom {

absl::StatusOr<LmDataStats> CreateLmExamples(
    const std::vector<std::string>& input_files, const SentencePieceTokenizer& spm,
    const LmDataOptions& o, const std::function<absl::Status(const LmExample&)>& sink,
    Progress* progress) {
  if (o.max_length < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_length=", o.max_length, ": must be >= 2"));
  }
  if (spm.eos_id() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece model ", spm.path(), " has no end-of-sentence piece (eos_id)"));
  }
  HR_ASSIGN_OR_RETURN(TextReader reader, TextReader::Open(input_files));
  EncodedLines lines(
      std::move(reader),
      [&spm](absl::string_view text, std::vector<int32_t>* ids) -> absl::Status {
        HR_ASSIGN_OR_RETURN(*ids, spm.Encode(text));
        return absl::OkStatus();
      },
      o.num_workers);
  const size_t max_length = static_cast<size_t>(o.max_length);
  LmDataStats stats;
  LmExample current;  // the example being built
  auto emit = [&]() -> absl::Status {
    HR_RETURN_IF_ERROR(sink(current));
    ++stats.examples;
    stats.tokens += static_cast<int64_t>(current.targets.size());
    current = LmExample();
    return absl::OkStatus();
  };
  // Appends ids[begin, end) to the current example as one segment.
  auto append = [&](const std::vector<int32_t>& ids, size_t begin, size_t end) {
    const int32_t segment = current.segmentation.empty() ? 1 : current.segmentation.back() + 1;
    for (size_t i = begin; i < end; ++i) {
      current.targets.push_back(ids[i]);
      if (!o.pack || !o.pack_segments) continue;
      current.segmentation.push_back(segment);
      current.position.push_back(static_cast<int32_t>(i - begin));
    }
  };
  const std::string* line;
  const std::vector<int32_t>* encoded;
  std::vector<int32_t> ids;
  while (lines.Next(&line, &encoded)) {
    if (line->empty()) continue;
    ids = *encoded;
    ids.push_back(spm.eos_id());
    ++stats.sentences;
    if (o.pack && !current.targets.empty() && current.targets.size() + ids.size() > max_length) {
      HR_RETURN_IF_ERROR(emit());
    }
    // Cut what does not fit into full pieces; the rest starts (or extends) the current example.
    size_t start = 0;
    while (ids.size() - start > max_length) {
      append(ids, start, start + max_length);
      HR_RETURN_IF_ERROR(emit());
      start += max_length;
    }
    append(ids, start, ids.size());
    if (!o.pack || current.targets.size() == max_length) HR_RETURN_IF_ERROR(emit());
    if (progress != nullptr && (stats.sentences & 1023) == 0) {
      progress->Update(stats.sentences, stats.tokens, stats.examples, lines.fraction());
    }
  }
  HR_RETURN_IF_ERROR(lines.status());
  if (!current.targets.empty()) HR_RETURN_IF_ERROR(emit());
  if (stats.sentences == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no sentences in ", absl::StrJoin(input_files, ","),
                     ": the input is empty (expected one sentence per line)"));
  }
  return stats;
}

absl::StatusOr<LmDataStats> WriteLmShards(const std::vector<std::string>& input_files,
                                          const SentencePieceTokenizer& spm, const LmDataOptions& o,
                                          const std::string& output_dir, const std::string& name,
                                          int num_shards, Progress* progress) {
  if (num_shards < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--num_shards=", num_shards, ": must be >= 1"));
  }
  std::vector<std::unique_ptr<RecordWriter>> writers;
  for (const std::string& path : ShardPaths(output_dir, name, num_shards)) {
    HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordWriter> w, RecordWriter::Create(path));
    writers.push_back(std::move(w));
  }
  const auto start = std::chrono::steady_clock::now();
  size_t next = 0;
  std::vector<int64_t> values;
  auto sink = [&](const LmExample& example) -> absl::Status {
    tf::Example e;
    values.assign(example.targets.begin(), example.targets.end());
    SetInt64Feature(&e, "targets", values);
    if (!example.segmentation.empty()) {
      values.assign(example.segmentation.begin(), example.segmentation.end());
      SetInt64Feature(&e, "targets_segmentation", values);
      values.assign(example.position.begin(), example.position.end());
      SetInt64Feature(&e, "targets_position", values);
    }
    absl::Status s = writers[next]->Write(SerializeExampleDeterministically(e));
    next = (next + 1) % writers.size();
    return s;
  };
  HR_ASSIGN_OR_RETURN(LmDataStats stats, CreateLmExamples(input_files, spm, o, sink, progress));
  for (auto& w : writers) HR_RETURN_IF_ERROR(w->Close());
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (progress != nullptr) progress->Finish(stats.sentences, stats.tokens, stats.examples);
  return stats;
}

}  // namespace headroom
