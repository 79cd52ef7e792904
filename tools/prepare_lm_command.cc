// `headroom prepare-lm`: text -> SentencePiece ids -> tensor2tensor-style `targets` shards for
// the causal LM (data/lm_pretraining_data.h; --pack adds t2t's packed features). Trains the
// SentencePiece model on --input_file first when --spm_model does not exist. The input/output/shard
// flags are in prepare_common.cc.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/lm_pretraining_data.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/text_input.h"
#include "tools/command.h"
#include "tools/prepare_common.h"

ABSL_FLAG(std::string, spm_model, "",
          "SentencePiece model (.model); trained on --input_file and written here if missing");
ABSL_FLAG(int32_t, vocab_size, 32000, "SentencePiece vocabulary size when training (LM1B: 32000)");
ABSL_FLAG(std::string, spm_model_type, "unigram",
          "SentencePiece model type when training: unigram or bpe");
ABSL_FLAG(int64_t, input_sentence_size, 10000000,
          "sentences SentencePiece trains on, sampled from --input_file with SentencePiece's "
          "fixed seed (0: all of them)");
ABSL_FLAG(int32_t, max_length, 256, "tokens per example at most (EOS included)");
ABSL_FLAG(bool, pack, false,
          "pack several sentences per example instead of one per example, with tensor2tensor's "
          "targets_segmentation and targets_position (each sentence is trained on alone)");
ABSL_FLAG(bool, pack_segments, true,
          "with --pack: write the segment features; false packs the sentences into one stream "
          "(attention and positions across sentence ends, the demo's data)");

namespace headroom {
namespace {

constexpr int kSentencePieceThreads = 8;

}  // namespace

int RunPrepareLm(const CommandArgs& args) {
  const char* kName = "prepare-lm";
  if (!args.positional.empty()) {
    return Fail(kName, absl::StrCat("unexpected argument '", args.positional[0],
                                    "'; inputs go in --input_file"));
  }
  const std::string input = absl::GetFlag(FLAGS_input_file);
  const std::string model = absl::GetFlag(FLAGS_spm_model);
  if (input.empty()) return Fail(kName, "--input_file is required (text, one sentence per line)");
  if (model.empty())
    return Fail(kName, "--spm_model is required (an existing .model or where to write one)");
  if (!absl::EndsWith(model, ".model")) {
    return Fail(kName, absl::StrCat("--spm_model=", model, ": expected a name ending in .model"));
  }

  // Every input is checked, and the output directory made, before anything is written.
  absl::StatusOr<std::vector<PrepareSplit>> resolved = ResolvePrepareSplits(input);
  if (!resolved.ok()) return Fail(kName, std::string(resolved.status().message()));
  const std::vector<PrepareSplit>& splits = *resolved;
  const std::string out = absl::GetFlag(FLAGS_output_dir);

  absl::StatusOr<SentencePieceTokenizer> spm = SentencePieceTokenizer::Load(model);
  if (!spm.ok() && spm.status().code() == absl::StatusCode::kNotFound) {
    SentencePieceTrainOptions t;
    t.input_files = splits[0].files;
    t.model_prefix = model.substr(0, model.size() - 6);
    t.vocab_size = absl::GetFlag(FLAGS_vocab_size);
    t.model_type = absl::GetFlag(FLAGS_spm_model_type);
    t.input_sentence_size = absl::GetFlag(FLAGS_input_sentence_size);
    // SentencePiece's result depends on its thread count (each thread sums its share of the
    // sentences), so it gets a fixed count, not --num_workers: the model, and so the shards,
    // are then the same for any number of workers.
    t.num_threads = kSentencePieceThreads;
    Progress timer("", false);
    if (absl::Status s = TrainSentencePiece(t); !s.ok())
      return Fail(kName, std::string(s.message()));
    std::fprintf(stderr, "%s: trained a %d-piece %s SentencePiece model on %s in %.0f s -> %s\n",
                 kName, t.vocab_size, t.model_type.c_str(), input.c_str(), timer.ElapsedSeconds(),
                 model.c_str());
    spm = SentencePieceTokenizer::Load(model);
  }
  if (!spm.ok()) return Fail(kName, std::string(spm.status().message()));

  LmDataOptions o;
  o.max_length = absl::GetFlag(FLAGS_max_length);
  o.pack = absl::GetFlag(FLAGS_pack);
  o.pack_segments = absl::GetFlag(FLAGS_pack_segments);
  o.num_workers = absl::GetFlag(FLAGS_num_workers);
  for (size_t i = 0; i < splits.size(); ++i) {
    Progress progress(absl::StrCat(kName, " ", splits[i].name), absl::GetFlag(FLAGS_progress),
                      "sentences");
    absl::StatusOr<LmDataStats> stats =
        WriteLmShards(splits[i].files, *spm, o, out, splits[i].name, splits[i].shards, &progress);
    if (!stats.ok()) return Fail(kName, std::string(stats.status().message()));
    std::printf("%s\n",
                absl::StrFormat("%s: %d sentences -> %d examples, %d tokens (vocab %d) in "
                                "%d shards %s/%s-*; %.1f s, %.0f tokens/s",
                                splits[i].name, stats->sentences, stats->examples, stats->tokens,
                                spm->vocab_size(), splits[i].shards, out, splits[i].name,
                                stats->seconds, stats->tokens / std::max(stats->seconds, 1e-9))
                    .c_str());
  }
  return 0;
}

}  // namespace headroom
