// The C interface of libheadroom_spm.so, the module that holds all of headroom's SentencePiece
// code, and is loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) instead of being linked.
//
// Why a module: Debian's libsentencepiece.so.0 (0.1.97) carries its own copy of protobuf-lite
// and exports its symbols. Linked into a program that also uses the system libprotobuf (our
// tf.Example shards), the two copies interpose on each other and the program crashes while
// loading, before main. Loaded locally with deep binding, SentencePiece sees only its own
// protobuf and the rest of the program never sees it.
//
// Memory returned through `char**`/`int**` is malloc'ed by the module; the caller free()s it.
// Functions returning int give 0 on success; on failure they set *error (malloc'ed message).
#ifndef HEADROOM_DATA_INTERNAL_SENTENCEPIECE_MODULE_H_
#define HEADROOM_DATA_INTERNAL_SENTENCEPIECE_MODULE_H_

#include <stddef.h>

extern "C" {

struct HeadroomSpmApi {
  int version;  // kHeadroomSpmApiVersion
  // Returns a processor handle, or null with *error set.
  void* (*load)(const char* model_path, char** error);
  void (*free_processor)(void* processor);
  // SentencePieceTrainer::Train with `n` key/value flags (no dashes).
  int (*train)(const char* const* keys, const char* const* values, int n, char** error);
  int (*encode_ids)(const void* processor, const char* text, size_t text_len, int** ids,
                    size_t* num_ids, char** error);
  // Pieces joined, each followed by a NUL byte, into *pieces (*pieces_len bytes in all).
  int (*encode_pieces)(const void* processor, const char* text, size_t text_len, char** pieces,
                       size_t* pieces_len, char** error);
  int (*decode_ids)(const void* processor, const int* ids, size_t num_ids, char** text,
                    size_t* text_len, char** error);
  int (*piece_size)(const void* processor);
  // Malloc'ed NUL-terminated piece for `id`.
  char* (*id_to_piece)(const void* processor, int id);
  // Which: 0 pad, 1 eos, 2 bos, 3 unk.
  int (*special_id)(const void* processor, int which);
};

#define HEADROOM_SPM_API_VERSION 1

// The module's one exported symbol.
const HeadroomSpmApi* headroom_spm_api(void);

}  // extern "C"

#endif  // HEADROOM_DATA_INTERNAL_SENTENCEPIECE_MODULE_H_
