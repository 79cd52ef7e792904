// The add-one smoothed unigram baseline; see unigram.h. Reads the shards record by record
// (sequentially, no loader): the order is the unshuffled loader's, files sorted by name.
#include "trainer/unigram.h"

#include <algorithm>
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

// Calls `fn` with each example of `files` (and where it is), in loader order, until `limit`
// examples were seen (limit < 0: all). Returns the number of examples seen.
absl::StatusOr<int64_t> ForEachExample(
    const std::string& files, int64_t limit,
    const std::function<absl::Status(const tf::Example&, const RecordLocation&)>& fn) {
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
      HR_RETURN_IF_ERROR(fn(example, where));
      ++seen;
    }
  }
  return seen;
}

// InvalidArgument unless 0 <= id < vocab_size.
absl::Status CheckId(int64_t id, int64_t vocab_size, const char* feature, size_t position,
                     const RecordLocation& where) {
  if (id >= 0 && id < vocab_size) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(where.ToString(), ": feature '", feature, "' value ", id, " at position ",
                   position, " is not a token id of the vocabulary of ", vocab_size));
}

// Calls `fn` with the non-zero targets of each example of `files`, in loader order, until
// `limit` examples were seen (limit < 0: all). Returns the number of examples seen.
absl::StatusOr<int64_t> ForEachTargets(const std::string& files, int64_t vocab_size, int64_t limit,
                                       const std::function<void(int64_t id)>& fn) {
  return ForEachExample(files, limit, [&](const tf::Example& e, const RecordLocation& where) {
    HR_ASSIGN_OR_RETURN(absl::Span<const int64_t> targets, GetInt64Feature(e, "targets", where));
    for (size_t i = 0; i < targets.size(); ++i) {
      HR_RETURN_IF_ERROR(CheckId(targets[i], vocab_size, "targets", i, where));
      if (targets[i] != 0) fn(targets[i]);
    }
    return absl::OkStatus();
  });
}

// Calls `prediction(id, weight)` for each masked position of weight > 0 (ids checked against
// vocab_size) and `pair(label)` once per example of `files`, in loader order, until `limit`
// examples were seen (limit < 0: all). Returns the number of examples seen.
absl::StatusOr<int64_t> ForEachBertExample(const std::string& files, int64_t vocab_size,
                                           int64_t limit,
                                           const std::function<void(int64_t, double)>& prediction,
                                           const std::function<void(int64_t)>& pair) {
  return ForEachExample(files, limit, [&](const tf::Example& e, const RecordLocation& where) {
    HR_ASSIGN_OR_RETURN(absl::Span<const int64_t> ids, GetInt64Feature(e, "masked_lm_ids", where));
    HR_ASSIGN_OR_RETURN(absl::Span<const float> weights,
                        GetFloatFeature(e, "masked_lm_weights", where));
    HR_ASSIGN_OR_RETURN(absl::Span<const int64_t> labels,
                        GetInt64Feature(e, "next_sentence_labels", where));
    if (ids.size() != weights.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where.ToString(), ": feature 'masked_lm_weights' has ", weights.size(),
                       " values, 'masked_lm_ids' ", ids.size()));
    }
    if (labels.size() != 1 || (labels[0] != 0 && labels[0] != 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where.ToString(), ": feature 'next_sentence_labels' must be one value, 0 or 1"));
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!(weights[i] > 0)) continue;
      HR_RETURN_IF_ERROR(CheckId(ids[i], vocab_size, "masked_lm_ids", i, where));
      prediction(ids[i], weights[i]);
    }
    pair(labels[0]);
    return absl::OkStatus();
  });
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

absl::StatusOr<BertBaselineResult> BertUnigramBaseline(int64_t vocab_size,
                                                       const std::string& train_files,
                                                       const std::string& eval_files,
                                                       int64_t num_sequences) {
  if (vocab_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("unigram: vocab_size ", vocab_size, " < 1"));
  }
  BertBaselineResult r;
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size), 0);
  int64_t label_counts[2] = {0, 0};
  HR_RETURN_IF_ERROR(ForEachBertExample(
                         train_files, vocab_size, -1,
                         [&](int64_t id, double) {
                           ++counts[static_cast<size_t>(id)];
                           ++r.train_predictions;
                         },
                         [&](int64_t label) { ++label_counts[label]; })
                         .status());
  r.train_pairs = label_counts[0] + label_counts[1];
  r.train_random_next_share =
      r.train_pairs > 0 ? static_cast<double>(label_counts[1]) / r.train_pairs : 0.0;
  r.majority_label = label_counts[1] > label_counts[0] ? 1 : 0;
  // The argmax: max_element returns the first (smallest) id among ties.
  const int64_t commonest = std::max_element(counts.begin(), counts.end()) - counts.begin();
  const double log_denominator = std::log(static_cast<double>(r.train_predictions + vocab_size));
  const double log_pairs = std::log(static_cast<double>(r.train_pairs + 2));
  double nll = 0, weight_sum = 0, nsp_nll = 0;
  int64_t correct = 0, pairs = 0, majority = 0;
  HR_ASSIGN_OR_RETURN(r.sequences, ForEachBertExample(
                                       eval_files, vocab_size, num_sequences,
                                       [&](int64_t id, double w) {
                                         nll +=
                                             w * (log_denominator -
                                                  std::log(counts[static_cast<size_t>(id)] + 1.0));
                                         weight_sum += w;
                                         ++r.predictions;
                                         if (id == commonest) ++correct;
                                       },
                                       [&](int64_t label) {
                                         nsp_nll += log_pairs - std::log(label_counts[label] + 1.0);
                                         ++pairs;
                                         if (label == r.majority_label) ++majority;
                                       }));
  if (r.predictions == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("unigram: no masked predictions to score in '", eval_files, "'"));
  }
  r.mlm_loss = nll / weight_sum;
  r.mlm_accuracy = static_cast<double>(correct) / static_cast<double>(r.predictions);
  r.nsp_loss = nsp_nll / static_cast<double>(pairs);
  r.nsp_accuracy = static_cast<double>(majority) / static_cast<double>(pairs);
  r.loss = r.mlm_loss + r.nsp_loss;
  return r;
}

}  // namespace headroom
