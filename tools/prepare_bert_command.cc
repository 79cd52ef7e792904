// `headroom prepare-bert`: text -> BERT pre-training shards (masked LM + next sentence), with
// Google BERT's create_pretraining_data.py algorithm, flags and defaults (data/
// bert_pretraining_data.h), streamed in chunks of documents, written round-robin over
// --num_shards shards in --output_dir. Several --max_seq_length values (BERT's two phases:
// --max_seq_length=128,512 --max_predictions_per_seq=20,80) write one set each, in
// --output_dir/seq<N>/, from one read of the input. The flags shared with prepare-lm (input,
// output, shards, progress) are in prepare_common.cc.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/bert_pretraining_data.h"
#include "data/text_input.h"
#include "data/wordpiece_tokenizer.h"
#include "tools/command.h"
#include "tools/prepare_common.h"

// Google's create_pretraining_data.py flags, same names and defaults.
ABSL_FLAG(std::string, vocab_file, "", "WordPiece vocab.txt the BERT model is trained with");
ABSL_FLAG(bool, do_lower_case, true, "lower-case and strip accents (uncased models)");
ABSL_FLAG(bool, do_whole_word_mask, false, "mask whole words (all their ## pieces) at once");
ABSL_FLAG(std::string, max_seq_length, "128",
          "maximum sequence length in tokens; several (e.g. 128,512 for BERT's two phases) write "
          "one set of shards each, to --output_dir/seq<N>/, from one read of the input");
ABSL_FLAG(std::string, max_predictions_per_seq, "20",
          "maximum masked LM predictions per sequence, one per --max_seq_length (e.g. 20,80)");
ABSL_FLAG(int32_t, random_seed, 12345, "random seed (same seed and input: identical shards)");
ABSL_FLAG(int32_t, dupe_factor, 10, "passes over the input, each with different masks");
ABSL_FLAG(double, masked_lm_prob, 0.15, "masked LM probability");
ABSL_FLAG(double, short_seq_prob, 0.1, "probability of a shorter-than-maximum target length");
// Streaming and tokenizer limits (not in Google's script).
ABSL_FLAG(int64_t, chunk_documents, 2000,
          "documents held in memory at once; random next sentences come from the same chunk");
ABSL_FLAG(int64_t, chunk_tokens, 8000000,
          "tokens held in memory at once (0: no bound): a chunk also closes, at a document "
          "boundary, once it holds this many");
ABSL_FLAG(int32_t, max_input_chars_per_word, 100,
          "longer words become [UNK] (Hugging Face: 100, Google: 200)");

namespace headroom {

int RunPrepareBert(const CommandArgs& args) {
  const char* kName = "prepare-bert";
  if (!args.positional.empty()) {
    return Fail(kName, absl::StrCat("unexpected argument '", args.positional[0],
                                    "'; inputs go in --input_file"));
  }
  const std::string input = absl::GetFlag(FLAGS_input_file);
  const std::string vocab = absl::GetFlag(FLAGS_vocab_file);
  if (input.empty()) return Fail(kName, "--input_file is required (text, one sentence per line)");
  if (vocab.empty()) return Fail(kName, "--vocab_file is required (a BERT vocab.txt)");

  WordPieceOptions wp;
  wp.do_lower_case = absl::GetFlag(FLAGS_do_lower_case);
  wp.max_input_chars_per_word = absl::GetFlag(FLAGS_max_input_chars_per_word);
  absl::StatusOr<WordPieceTokenizer> tok = WordPieceTokenizer::FromFile(vocab, wp);
  if (!tok.ok()) return Fail(kName, std::string(tok.status().message()));

  absl::StatusOr<std::vector<int>> lengths =
      ParseIntList("max_seq_length", absl::GetFlag(FLAGS_max_seq_length));
  if (!lengths.ok()) return Fail(kName, std::string(lengths.status().message()));
  absl::StatusOr<std::vector<int>> predictions =
      ParseIntList("max_predictions_per_seq", absl::GetFlag(FLAGS_max_predictions_per_seq));
  if (!predictions.ok()) return Fail(kName, std::string(predictions.status().message()));
  if (predictions->size() != lengths->size()) {
    return Fail(
        kName, absl::StrCat("--max_predictions_per_seq gives ", predictions->size(), " values for ",
                            lengths->size(), " --max_seq_length values; give one per length"));
  }
  BertDataOptions base;
  base.masked_lm_prob = absl::GetFlag(FLAGS_masked_lm_prob);
  base.short_seq_prob = absl::GetFlag(FLAGS_short_seq_prob);
  base.dupe_factor = absl::GetFlag(FLAGS_dupe_factor);
  base.do_whole_word_mask = absl::GetFlag(FLAGS_do_whole_word_mask);
  base.random_seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_random_seed));
  base.chunk_documents = absl::GetFlag(FLAGS_chunk_documents);
  base.chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);
  base.num_workers = absl::GetFlag(FLAGS_num_workers);
  std::vector<BertDataOptions> sets;
  for (size_t k = 0; k < lengths->size(); ++k) {
    BertDataOptions o = base;
    o.max_seq_length = (*lengths)[k];
    o.max_predictions_per_seq = (*predictions)[k];
    if (absl::Status s = ValidateBertDataOptions(o); !s.ok())
      return Fail(kName, std::string(s.message()));
    sets.push_back(o);
  }

  // Every input is checked, and the output directories made, before anything is written.
  absl::StatusOr<std::vector<PrepareSplit>> resolved = ResolvePrepareSplits(input);
  if (!resolved.ok()) return Fail(kName, std::string(resolved.status().message()));
  const std::vector<PrepareSplit>& splits = *resolved;
  const std::string out = absl::GetFlag(FLAGS_output_dir);
  // One length: the shards go in --output_dir; several: in --output_dir/seq<N>/ each.
  std::vector<std::string> dirs;
  for (const BertDataOptions& o : sets) {
    dirs.push_back(sets.size() == 1 ? out : absl::StrCat(out, "/seq", o.max_seq_length));
    if (absl::Status s = EnsureOutputDir(dirs.back()); !s.ok())
      return Fail(kName, std::string(s.message()));
  }

  for (size_t i = 0; i < splits.size(); ++i) {
    Progress progress(absl::StrCat(kName, " ", splits[i].name), absl::GetFlag(FLAGS_progress));
    absl::StatusOr<std::vector<BertDataStats>> stats = WriteBertShardSets(
        splits[i].files, *tok, sets, dirs, splits[i].name, splits[i].shards, &progress);
    if (!stats.ok()) return Fail(kName, std::string(stats.status().message()));
    for (size_t k = 0; k < sets.size(); ++k) {
      const BertDataStats& st = (*stats)[k];
      std::printf("%s\n",
                  absl::StrFormat(
                      "%s: %d documents, %d sentences, %d tokens -> %d examples of %d tokens in "
                      "%d shards %s/%s-*; %.1f s, %.0f tokens/s",
                      splits[i].name, st.documents, st.sentences, st.tokens, st.instances,
                      sets[k].max_seq_length, splits[i].shards, dirs[k], splits[i].name, st.seconds,
                      st.tokens / std::max(st.seconds, 1e-9))
                      .c_str());
    }
  }
  return 0;
}

}  // namespace headroom
