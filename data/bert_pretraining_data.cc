// BERT instance creation (see bert_pretraining_data.h). The structure follows Google's
// create_pretraining_data.py function by function, over token ids instead of strings; comments
// mark where the streaming version must differ.
#include "data/bert_pretraining_data.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <deque>
#include <future>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/splitmix.h"
#include "base/status_macros.h"
#include "data/encoded_lines.h"
#include "data/example_io.h"
#include "data/record_writer.h"
#include "data/text_input.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace headroom {

absl::Status ValidateBertDataOptions(const BertDataOptions& o) {
  auto bad = [](const char* what, auto v, const char* want) {
    return absl::InvalidArgumentError(absl::StrCat("--", what, "=", v, ": must be ", want));
  };
  if (o.max_seq_length < 5) return bad("max_seq_length", o.max_seq_length, ">= 5");
  if (o.max_predictions_per_seq < 1) {
    return bad("max_predictions_per_seq", o.max_predictions_per_seq, ">= 1");
  }
  if (!(o.masked_lm_prob > 0 && o.masked_lm_prob <= 1)) {
    return bad("masked_lm_prob", o.masked_lm_prob, "in (0, 1]");
  }
  if (!(o.short_seq_prob >= 0 && o.short_seq_prob <= 1)) {
    return bad("short_seq_prob", o.short_seq_prob, "in [0, 1]");
  }
  if (o.dupe_factor < 1) return bad("dupe_factor", o.dupe_factor, ">= 1");
  if (o.chunk_documents < 1) return bad("chunk_documents", o.chunk_documents, ">= 1");
  if (o.chunk_tokens < 0) return bad("chunk_tokens", o.chunk_tokens, ">= 0 (0: no bound)");
  return absl::OkStatus();
}

// ---- Random numbers ----

BertRng::BertRng(uint64_t seed) {
  SplitMix expand{seed};  // SplitMix64 expands the seed into the state
  for (uint64_t& s : s_) s = expand.Next();
}

uint64_t BertRng::Next() {  // xoshiro256**
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double BertRng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

int64_t BertRng::UniformInt(int64_t lo, int64_t hi) {
  // Lemire's multiply-shift with rejection: unbiased, and the same on every platform (unlike
  // std::uniform_int_distribution, whose algorithm is implementation-defined).
  uint64_t range = static_cast<uint64_t>(hi - lo) + 1;
  if (range == 0) return static_cast<int64_t>(Next());
  unsigned __int128 m = static_cast<unsigned __int128>(Next()) * range;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < range) {
    uint64_t threshold = -range % range;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(Next()) * range;
      low = static_cast<uint64_t>(m);
    }
  }
  return lo + static_cast<int64_t>(m >> 64);
}

// ---- The algorithm ----

void TruncateSeqPair(std::vector<int32_t>* a, std::vector<int32_t>* b, size_t max_tokens,
                     BertRng* rng) {
  // The kept range [lo, hi) of each side moves; the vectors are cut once at the end, so a
  // multi-megabyte sentence costs time linear in its length (erasing the front token by token
  // was quadratic).
  size_t a_lo = 0, a_hi = a->size(), b_lo = 0, b_hi = b->size();
  while ((a_hi - a_lo) + (b_hi - b_lo) > max_tokens) {
    const bool a_longer = a_hi - a_lo > b_hi - b_lo;
    size_t& lo = a_longer ? a_lo : b_lo;
    size_t& hi = a_longer ? a_hi : b_hi;
    if (rng->Uniform() < 0.5) {
      ++lo;
    } else {
      --hi;
    }
  }
  for (auto [v, lo, hi] : {std::tuple{a, a_lo, a_hi}, std::tuple{b, b_lo, b_hi}}) {
    v->erase(v->begin() + static_cast<std::ptrdiff_t>(hi), v->end());
    v->erase(v->begin(), v->begin() + static_cast<std::ptrdiff_t>(lo));
  }
}

namespace {

// create_masked_lm_predictions, in place on instance->input_ids.
void CreateMaskedLmPredictions(BertInstance* inst, const WordPieceTokenizer& tok,
                               const BertDataOptions& o, BertRng* rng) {
  std::vector<int32_t>& ids = inst->input_ids;
  // Candidate groups of positions; with whole-word masking "##" pieces join the group before
  // (across [SEP] too, as in Google's code).
  std::vector<std::vector<int32_t>> candidates;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == tok.cls_id() || ids[i] == tok.sep_id()) continue;
    if (o.do_whole_word_mask && !candidates.empty() && tok.IsContinuation(ids[i])) {
      candidates.back().push_back(static_cast<int32_t>(i));
    } else {
      candidates.push_back({static_cast<int32_t>(i)});
    }
  }
  rng->Shuffle(&candidates);
  // Python's round() rounds half to even, as nearbyint does in the default rounding mode.
  const int64_t num_to_predict = std::min<int64_t>(
      o.max_predictions_per_seq,
      std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(static_cast<double>(ids.size()) *
                                                               o.masked_lm_prob))));
  const std::vector<int32_t> original = ids;
  std::vector<bool> covered(ids.size(), false);
  std::vector<int32_t> positions;
  for (const std::vector<int32_t>& group : candidates) {
    if (static_cast<int64_t>(positions.size()) >= num_to_predict) break;
    if (static_cast<int64_t>(positions.size() + group.size()) > num_to_predict) continue;
    if (std::any_of(group.begin(), group.end(), [&](int32_t p) { return covered[p]; })) continue;
    for (int32_t p : group) {
      covered[p] = true;
      if (rng->Uniform() < 0.8) {
        ids[p] = tok.mask_id();
      } else if (rng->Uniform() < 0.5) {
        // keep the original token
      } else {
        ids[p] = static_cast<int32_t>(rng->UniformInt(0, tok.vocab_size() - 1));
      }
      positions.push_back(p);
    }
  }
  std::sort(positions.begin(), positions.end());
  inst->masked_lm_positions = positions;
  inst->masked_lm_ids.clear();
  for (int32_t p : positions) inst->masked_lm_ids.push_back(original[p]);
}

}  // namespace

void CreateInstancesFromDocument(const std::vector<Document>& documents, size_t document_index,
                                 const WordPieceTokenizer& tok, const BertDataOptions& o,
                                 BertRng* rng, std::vector<BertInstance>* out) {
  const Document& document = documents[document_index];
  const int64_t max_num_tokens = o.max_seq_length - 3;  // room for [CLS], [SEP], [SEP]
  int64_t target_seq_length = max_num_tokens;
  if (rng->Uniform() < o.short_seq_prob) target_seq_length = rng->UniformInt(2, max_num_tokens);

  std::vector<const std::vector<int32_t>*> chunk;
  int64_t chunk_length = 0;
  int64_t i = 0;
  const int64_t n = static_cast<int64_t>(document.size());
  while (i < n) {
    chunk.push_back(&document[i]);
    chunk_length += static_cast<int64_t>(document[i].size());
    if (i == n - 1 || chunk_length >= target_seq_length) {
      if (!chunk.empty()) {
        const int64_t chunk_size = static_cast<int64_t>(chunk.size());
        int64_t a_end = chunk_size >= 2 ? rng->UniformInt(1, chunk_size - 1) : 1;
        BertInstance inst;
        std::vector<int32_t> a, b;
        for (int64_t j = 0; j < a_end; ++j) a.insert(a.end(), chunk[j]->begin(), chunk[j]->end());
        if (chunk_size == 1 || rng->Uniform() < 0.5) {
          inst.is_random_next = true;
          const int64_t target_b_length = target_seq_length - static_cast<int64_t>(a.size());
          // Another document of the chunk (ten tries; a one-document chunk reuses itself).
          size_t random_index = document_index;
          for (int tries = 0; tries < 10; ++tries) {
            random_index =
                static_cast<size_t>(rng->UniformInt(0, static_cast<int64_t>(documents.size()) - 1));
            if (random_index != document_index) break;
          }
          const Document& random_document = documents[random_index];
          const int64_t start =
              rng->UniformInt(0, static_cast<int64_t>(random_document.size()) - 1);
          for (size_t j = static_cast<size_t>(start); j < random_document.size(); ++j) {
            b.insert(b.end(), random_document[j].begin(), random_document[j].end());
            if (static_cast<int64_t>(b.size()) >= target_b_length) break;
          }
          i -= chunk_size - a_end;  // put the unused sentences back
        } else {
          for (int64_t j = a_end; j < chunk_size; ++j) {
            b.insert(b.end(), chunk[j]->begin(), chunk[j]->end());
          }
        }
        TruncateSeqPair(&a, &b, static_cast<size_t>(max_num_tokens), rng);
        inst.input_ids.reserve(a.size() + b.size() + 3);
        inst.input_ids.push_back(tok.cls_id());
        inst.input_ids.insert(inst.input_ids.end(), a.begin(), a.end());
        inst.input_ids.push_back(tok.sep_id());
        inst.input_ids.insert(inst.input_ids.end(), b.begin(), b.end());
        inst.input_ids.push_back(tok.sep_id());
        inst.segment_ids.assign(a.size() + 2, 0);
        inst.segment_ids.resize(inst.input_ids.size(), 1);
        CreateMaskedLmPredictions(&inst, tok, o, rng);
        out->push_back(std::move(inst));
      }
      chunk.clear();
      chunk_length = 0;
    }
    ++i;
  }
}

tf::Example BertInstanceToExample(const BertInstance& inst, const BertDataOptions& o) {
  const size_t seq = static_cast<size_t>(o.max_seq_length);
  const size_t preds = static_cast<size_t>(o.max_predictions_per_seq);
  std::vector<int64_t> input_ids(seq, 0), input_mask(seq, 0), segment_ids(seq, 0);
  for (size_t i = 0; i < inst.input_ids.size() && i < seq; ++i) {
    input_ids[i] = inst.input_ids[i];
    input_mask[i] = 1;
    segment_ids[i] = inst.segment_ids[i];
  }
  std::vector<int64_t> positions(preds, 0), ids(preds, 0);
  std::vector<float> weights(preds, 0.0f);
  for (size_t i = 0; i < inst.masked_lm_positions.size() && i < preds; ++i) {
    positions[i] = inst.masked_lm_positions[i];
    ids[i] = inst.masked_lm_ids[i];
    weights[i] = 1.0f;
  }
  tf::Example e;
  SetInt64Feature(&e, "input_ids", input_ids);
  SetInt64Feature(&e, "input_mask", input_mask);
  SetInt64Feature(&e, "segment_ids", segment_ids);
  SetInt64Feature(&e, "masked_lm_positions", positions);
  SetInt64Feature(&e, "masked_lm_ids", ids);
  SetFloatFeature(&e, "masked_lm_weights", weights);
  const int64_t label = inst.is_random_next ? 1 : 0;
  SetInt64Feature(&e, "next_sentence_labels", absl::Span<const int64_t>(&label, 1));
  return e;
}

std::string SerializeExampleDeterministically(const tf::Example& example) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    example.SerializeToCodedStream(&coded);
  }
  return bytes;
}

namespace {

// Reads the input a chunk of tokenized documents at a time (see the file comment). A document
// closes at a blank line; a chunk closes when it holds chunk_documents documents, or
// chunk_tokens tokens, and the next document starts. Lines are tokenized on o.num_workers
// threads (data/encoded_lines.h), which changes nothing in what is read.
class DocumentChunks {
 public:
  DocumentChunks(TextReader reader, const WordPieceTokenizer& tok, const BertDataOptions& o)
      : lines_(
            std::move(reader),
            [&tok](absl::string_view text, std::vector<int32_t>* ids) {
              tok.Encode(text, ids);
              return absl::OkStatus();
            },
            o.num_workers),
        chunk_documents_(o.chunk_documents),
        chunk_tokens_(o.chunk_tokens) {}

  // The next non-empty chunk into `documents`; false at the end of the input (or on a read
  // error: then status() says which).
  bool Next(std::vector<Document>* documents, BertDataStats* stats) {
    const std::string* line;
    const std::vector<int32_t>* ids;
    while (more_) {
      documents->assign(1, Document());
      int64_t tokens = 0;
      while (true) {
        more_ = lines_.Next(&line, &ids);
        if (!more_) break;
        if (line->empty()) {
          if (!documents->back().empty()) {
            if (static_cast<int64_t>(documents->size()) >= chunk_documents_ ||
                (chunk_tokens_ > 0 && tokens >= chunk_tokens_)) {
              break;
            }
            documents->emplace_back();
          }
          continue;
        }
        if (ids->empty()) continue;
        tokens += static_cast<int64_t>(ids->size());
        stats->tokens += static_cast<int64_t>(ids->size());
        ++stats->sentences;
        documents->back().push_back(*ids);
      }
      if (!lines_.status().ok()) return false;
      if (documents->back().empty()) documents->pop_back();
      if (documents->empty()) continue;
      stats->documents += static_cast<int64_t>(documents->size());
      return true;
    }
    return false;
  }

  absl::Status status() const { return lines_.status(); }
  // The fraction of the input read so far.
  double fraction() const { return lines_.fraction(); }

 private:
  EncodedLines lines_;
  int64_t chunk_documents_, chunk_tokens_;
  bool more_ = true;
};

// The seed of chunk `chunk`'s generator for option set `o`: SplitMix64 over the set's
// random_seed, the chunk's index and the set's max_seq_length, so that each chunk draws its own
// numbers whichever thread builds it, and a set's output does not depend on the other sets.
uint64_t ChunkSeed(const BertDataOptions& o, int64_t chunk) {
  SplitMix mix{o.random_seed};
  mix.state = mix.Next() ^ static_cast<uint64_t>(chunk);
  mix.state = mix.Next() ^ static_cast<uint64_t>(o.max_seq_length);
  return mix.Next();
}

// One chunk's instances for option set `o`: Google shuffles all documents, runs dupe_factor
// passes, then shuffles all instances; streaming does the same per chunk.
std::vector<BertInstance> BuildChunk(const std::vector<Document>& documents, int64_t chunk,
                                     const WordPieceTokenizer& tok, const BertDataOptions& o) {
  std::vector<BertInstance> built;
  BertRng rng(ChunkSeed(o, chunk));
  std::vector<Document> shuffled = documents;
  rng.Shuffle(&shuffled);
  for (int d = 0; d < o.dupe_factor; ++d) {
    for (size_t i = 0; i < shuffled.size(); ++i) {
      CreateInstancesFromDocument(shuffled, i, tok, o, &rng, &built);
    }
  }
  rng.Shuffle(&built);
  return built;
}

}  // namespace

absl::StatusOr<std::vector<BertDataStats>> CreateBertInstanceSets(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tok,
    const std::vector<BertDataOptions>& sets,
    const std::vector<std::function<absl::Status(const BertInstance&)>>& sinks,
    Progress* progress) {
  if (sets.empty() || sinks.size() != sets.size()) {
    return absl::InvalidArgumentError("CreateBertInstanceSets: one sink per option set");
  }
  for (const BertDataOptions& o : sets) {
    HR_RETURN_IF_ERROR(ValidateBertDataOptions(o));
    if (o.chunk_documents != sets[0].chunk_documents || o.chunk_tokens != sets[0].chunk_tokens ||
        o.num_workers != sets[0].num_workers) {
      return absl::InvalidArgumentError(
          "the option sets must share chunk_documents, chunk_tokens and num_workers");
    }
  }
  HR_ASSIGN_OR_RETURN(TextReader reader, TextReader::Open(input_files));
  DocumentChunks chunks(std::move(reader), tok, sets[0]);
  // Each (chunk, set) is built on one of up to `workers` threads while this thread reads the
  // next chunk (at most workers + 1 chunks in memory) and writes them in chunk order; each draws
  // from its own generator (ChunkSeed), so the output does not depend on the number of workers.
  const size_t workers = static_cast<size_t>(WorkerCount(sets[0].num_workers));
  std::deque<std::pair<size_t, std::future<std::vector<BertInstance>>>> pending;  // (set, work)
  BertDataStats read;  // documents, sentences and tokens: shared by the sets
  std::vector<int64_t> written(sets.size(), 0);
  auto write_oldest = [&]() -> absl::Status {
    const size_t k = pending.front().first;
    const std::vector<BertInstance> built = pending.front().second.get();
    pending.pop_front();
    for (const BertInstance& inst : built) HR_RETURN_IF_ERROR(sinks[k](inst));
    written[k] += static_cast<int64_t>(built.size());
    if (progress != nullptr) {
      int64_t total = 0;
      for (int64_t w : written) total += w;
      progress->Update(read.documents, read.tokens, total, chunks.fraction());
    }
    return absl::OkStatus();
  };
  std::vector<Document> documents;
  for (int64_t chunk = 0; chunks.Next(&documents, &read); ++chunk) {
    auto shared = std::make_shared<const std::vector<Document>>(std::move(documents));
    documents.clear();
    for (size_t k = 0; k < sets.size(); ++k) {
      while (pending.size() >= workers) HR_RETURN_IF_ERROR(write_oldest());
      const BertDataOptions* o = &sets[k];
      pending.emplace_back(k, std::async(std::launch::async, [shared, chunk, &tok, o] {
                             return BuildChunk(*shared, chunk, tok, *o);
                           }));
    }
  }
  while (!pending.empty()) HR_RETURN_IF_ERROR(write_oldest());
  HR_RETURN_IF_ERROR(chunks.status());
  if (read.documents == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no documents in ", absl::StrJoin(input_files, ","),
                     ": the input is empty (expected one sentence per line, blank lines between "
                     "documents)"));
  }
  std::vector<BertDataStats> stats(sets.size(), read);
  for (size_t k = 0; k < sets.size(); ++k) stats[k].instances = written[k];
  return stats;
}

absl::StatusOr<BertDataStats> CreateBertInstances(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tok,
    const BertDataOptions& o, const std::function<absl::Status(const BertInstance&)>& sink,
    Progress* progress) {
  HR_ASSIGN_OR_RETURN(std::vector<BertDataStats> stats,
                      CreateBertInstanceSets(input_files, tok, {o}, {sink}, progress));
  return stats[0];
}

std::vector<std::string> ShardPaths(const std::string& dir, const std::string& name,
                                    int num_shards) {
  std::vector<std::string> paths;
  for (int i = 0; i < num_shards; ++i) {
    paths.push_back(absl::StrFormat("%s/%s-%05d-of-%05d.tfrecord", dir, name, i, num_shards));
  }
  return paths;
}

absl::StatusOr<std::vector<BertDataStats>> WriteBertShardSets(
    const std::vector<std::string>& input_files, const WordPieceTokenizer& tok,
    const std::vector<BertDataOptions>& sets, const std::vector<std::string>& output_dirs,
    const std::string& name, int num_shards, Progress* progress) {
  if (num_shards < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--num_shards=", num_shards, ": must be >= 1"));
  }
  if (output_dirs.size() != sets.size()) {
    return absl::InvalidArgumentError("WriteBertShardSets: one output directory per option set");
  }
  for (const BertDataOptions& o : sets) HR_RETURN_IF_ERROR(ValidateBertDataOptions(o));
  // writers[k][i]: shard i of set k; each set fills its shards round-robin.
  std::vector<std::vector<std::unique_ptr<RecordWriter>>> writers(sets.size());
  std::vector<size_t> next(sets.size(), 0);
  std::vector<std::function<absl::Status(const BertInstance&)>> sinks;
  for (size_t k = 0; k < sets.size(); ++k) {
    for (const std::string& path : ShardPaths(output_dirs[k], name, num_shards)) {
      HR_ASSIGN_OR_RETURN(std::unique_ptr<RecordWriter> w, RecordWriter::Create(path));
      writers[k].push_back(std::move(w));
    }
    sinks.push_back([&, k](const BertInstance& inst) -> absl::Status {
      absl::Status s = writers[k][next[k]]->Write(
          SerializeExampleDeterministically(BertInstanceToExample(inst, sets[k])));
      next[k] = (next[k] + 1) % writers[k].size();
      return s;
    });
  }
  const auto start = std::chrono::steady_clock::now();
  HR_ASSIGN_OR_RETURN(std::vector<BertDataStats> stats,
                      CreateBertInstanceSets(input_files, tok, sets, sinks, progress));
  for (auto& set : writers) {
    for (auto& w : set) HR_RETURN_IF_ERROR(w->Close());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t instances = 0;
  for (BertDataStats& st : stats) {
    st.seconds = seconds;
    instances += st.instances;
  }
  if (progress != nullptr) progress->Finish(stats[0].documents, stats[0].tokens, instances);
  return stats;
}

absl::StatusOr<BertDataStats> WriteBertShards(const std::vector<std::string>& input_files,
                                              const WordPieceTokenizer& tok,
                                              const BertDataOptions& o,
                                              const std::string& output_dir,
                                              const std::string& name, int num_shards,
                                              Progress* progress) {
  HR_ASSIGN_OR_RETURN(
      std::vector<BertDataStats> stats,
      WriteBertShardSets(input_files, tok, {o}, {output_dir}, name, num_shards, progress));
  return stats[0];
}

}  // namespace headroom
