// The add-one smoothed unigram baseline; see unigram.h. Reads the shards record by record
// (sequentially, no loader): the order is the unshuffled loader's, files sorted by name.
#include "trainer/unigram.h"

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "data/example_io.h"
#include "data/record_reader.h"
#include "data/sharded_loader.h"

namespace headroom {
namespace {

// Calls `fn` with the non-zero targets of each example of `files`, in loader order, until
// `limit` examples were seen (limit < 0: all). Returns the number of examples seen.
absl::StatusOr<int64_t> ForEachTargets(const std::string& files, int64_t vocab_size, int64_t limit,
                                       const std::function<void(int64_t id)>& fn) {
  HR_ASSIGN_OR_RETURN(std::vector<std::string> paths, ExpandFileGlobs(files));
  int64_t seen = 0;
  std::string record;
  tf::Example example;
  for (const std::string& path : paths) {
    HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader, RecordReader::Open(path));
    while (limit < 0 || seen < limit) {
      const RecordLocation where{path, reader->record_index(), reader->offset()};
      HR_ASSIGN_OR_RETURN(bool more, reader->ReadNext(&record));
      if (!more) break;
      HR_RETURN_IF_ERROR(ParseExample(record, where, &example));
      HR_ASSIGN_OR_RETURN(absl::Span<const int64_t> targets,
                          GetInt64Feature(example, "targets", where));
      for (size_t i = 0; i < targets.size(); ++i) {
        const int64_t id = targets[i];
        if (id < 0 || id >= vocab_size) {
          return absl::InvalidArgumentError(
              absl::StrCat(where.ToString(), ": feature 'targets' value ", id, " at position ", i,
                           " is not a token id of the vocabulary of ", vocab_size));
        }
        if (id != 0) fn(id);
      }
      ++seen;
    }
  }
  return seen;
}

}  // namespace

absl::StatusOr<UnigramResult> UnigramPerplexity(int64_t vocab_size, const std::string& train_files,
                                                const std::string& eval_files,
                                                int64_t num_sequences) {
  if (vocab_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("unigram: vocab_size ", vocab_size, " < 1"));
  }
  UnigramResult r;
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size), 0);
  HR_RETURN_IF_ERROR(ForEachTargets(train_files, vocab_size, -1, [&](int64_t id) {
                       ++counts[static_cast<size_t>(id)];
                       ++r.train_tokens;
                     }).status());
  const double log_denominator = std::log(static_cast<double>(r.train_tokens + vocab_size));
  double nll = 0;
  HR_ASSIGN_OR_RETURN(r.sequences,
                      ForEachTargets(eval_files, vocab_size, num_sequences, [&](int64_t id) {
                        const double c = counts[static_cast<size_t>(id)] + 1.0;
                        nll += log_denominator - std::log(c);
                        ++r.tokens;
                      }));
  if (r.tokens == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("unigram: no target tokens to score in '", eval_files, "'"));
  }
  r.loss = nll / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace headroom
