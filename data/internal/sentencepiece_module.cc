// libheadroom_spm.so: SentencePiece behind a C table (see sentencepiece_module.h for why). This
// file includes only SentencePiece and the standard library: sentencepiece_processor.h also
// declares `absl::string_view` as std::string_view, which collides with Debian's Abseil.
#include "data/internal/sentencepiece_module.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using sentencepiece::SentencePieceProcessor;

char* Dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

int Fail(const sentencepiece::util::Status& s, char** error) {
  *error = Dup(s.ToString());
  return 1;
}

void* Load(const char* model_path, char** error) {
  auto* p = new SentencePieceProcessor();
  sentencepiece::util::Status s = p->Load(model_path);
  if (!s.ok()) {
    delete p;
    Fail(s, error);
    return nullptr;
  }
  return p;
}

void FreeProcessor(void* p) { delete static_cast<SentencePieceProcessor*>(p); }

int Train(const char* const* keys, const char* const* values, int n, char** error) {
  std::unordered_map<std::string, std::string> kwargs;
  for (int i = 0; i < n; ++i) kwargs[keys[i]] = values[i];
  sentencepiece::util::Status s = sentencepiece::SentencePieceTrainer::Train(kwargs);
  return s.ok() ? 0 : Fail(s, error);
}

const SentencePieceProcessor& P(const void* p) {
  return *static_cast<const SentencePieceProcessor*>(p);
}

int EncodeIds(const void* p, const char* text, size_t len, int** ids, size_t* num, char** error) {
  std::vector<int> out;
  sentencepiece::util::Status s = P(p).Encode(std::string(text, len), &out);
  if (!s.ok()) return Fail(s, error);
  *num = out.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
  if (!out.empty()) std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return 0;
}

int EncodePieces(const void* p, const char* text, size_t len, char** pieces, size_t* plen,
                 char** error) {
  std::vector<std::string> out;
  sentencepiece::util::Status s = P(p).Encode(std::string(text, len), &out);
  if (!s.ok()) return Fail(s, error);
  std::string joined;
  for (const std::string& piece : out) {
    joined += piece;
    joined.push_back('\0');
  }
  *plen = joined.size();
  *pieces = Dup(joined);
  return 0;
}

int DecodeIds(const void* p, const int* ids, size_t num, char** text, size_t* len, char** error) {
  std::string out;
  sentencepiece::util::Status s = P(p).Decode(std::vector<int>(ids, ids + num), &out);
  if (!s.ok()) return Fail(s, error);
  *len = out.size();
  *text = Dup(out);
  return 0;
}

int PieceSize(const void* p) { return P(p).GetPieceSize(); }
char* IdToPiece(const void* p, int id) { return Dup(P(p).IdToPiece(id)); }
int SpecialId(const void* p, int which) {
  switch (which) {
    case 0:
      return P(p).pad_id();
    case 1:
      return P(p).eos_id();
    case 2:
      return P(p).bos_id();
    default:
      return P(p).unk_id();
  }
}

const HeadroomSpmApi kApi = {HEADROOM_SPM_API_VERSION,
                             Load,
                             FreeProcessor,
                             Train,
                             EncodeIds,
                             EncodePieces,
                             DecodeIds,
                             PieceSize,
                             IdToPiece,
                             SpecialId};

}  // namespace

extern "C" __attribute__((visibility("default"))) const HeadroomSpmApi* headroom_spm_api(void) {
  return &kApi;
}
