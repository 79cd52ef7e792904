// std-typed access to SentencePiece for data/sentencepiece_tokenizer.cc, through the module
// libheadroom_spm.so (see sentencepiece_module.h for why it is a dlopen'ed module and not linked).
//
// The module is looked up, first found wins: $HEADROOM_SPM_MODULE; the path CMake built it at;
// beside the running executable; in "data/" beside it. Every function returns an empty string
// on success and a one-line error otherwise (including "module not found", naming the paths).
#ifndef HEADROOM_DATA_INTERNAL_SENTENCEPIECE_SHIM_H_
#define HEADROOM_DATA_INTERNAL_SENTENCEPIECE_SHIM_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace headroom::internal_spm {

struct ProcessorDeleter {
  void operator()(void* p) const;
};
// An opaque sentencepiece::SentencePieceProcessor owned by the module.
using Processor = std::unique_ptr<void, ProcessorDeleter>;

std::string Load(const std::string& model_path, Processor* out);
// `options`: SentencePieceTrainer flags without dashes, e.g. {{"vocab_size", "8000"}}.
std::string Train(const std::vector<std::pair<std::string, std::string>>& options);
std::string EncodeIds(const void* p, const std::string& text, std::vector<int>* ids);
std::string EncodePieces(const void* p, const std::string& text, std::vector<std::string>* pieces);
std::string DecodeIds(const void* p, const std::vector<int>& ids, std::string* text);

int PieceSize(const void* p);
std::string IdToPiece(const void* p, int id);
int PadId(const void* p);
int EosId(const void* p);
int UnkId(const void* p);

}  // namespace headroom::internal_spm

#endif  // HEADROOM_DATA_INTERNAL_SENTENCEPIECE_SHIM_H_
