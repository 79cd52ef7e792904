// Loads libheadroom_spm.so once (dlopen with RTLD_LOCAL | RTLD_DEEPBIND, so SentencePiece's
// private protobuf copy binds to itself and stays out of the program's symbol scope) and wraps
// its C table in std types.
#include "data/internal/sentencepiece_shim.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "data/internal/sentencepiece_module.h"

namespace headroom::internal_spm {
namespace {

struct Module {
  const HeadroomSpmApi* api = nullptr;
  std::string error;
};

std::string ExecutableDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

const Module& GetModule() {
  static const Module* module = [] {
    auto* m = new Module();
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("HEADROOM_SPM_MODULE"); env != nullptr && *env != '\0') {
      candidates.push_back(env);
    }
#ifdef HEADROOM_SPM_MODULE_PATH
    candidates.push_back(HEADROOM_SPM_MODULE_PATH);
#endif
    const std::string dir = ExecutableDir();
    candidates.push_back(dir + "/libheadroom_spm.so");
    candidates.push_back(dir + "/data/libheadroom_spm.so");
    candidates.push_back(dir + "/../../data/libheadroom_spm.so");  // tests/<folder>/ binaries
    std::string tried;
    for (const std::string& path : candidates) {
      if (::access(path.c_str(), R_OK) != 0) {
        tried += (tried.empty() ? "" : ", ") + path;
        continue;
      }
      void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle == nullptr) {
        m->error = std::string("cannot load the SentencePiece module: ") + ::dlerror();
        return m;
      }
      auto get = reinterpret_cast<const HeadroomSpmApi* (*)()>(::dlsym(handle, "headroom_spm_api"));
      if (get == nullptr || get()->version != HEADROOM_SPM_API_VERSION) {
        m->error = "the SentencePiece module " + path + " is from another build; rebuild headroom";
        return m;
      }
      m->api = get();
      return m;
    }
    m->error = "SentencePiece module libheadroom_spm.so not found (tried " + tried +
               "); build it (target headroom_spm) or set HEADROOM_SPM_MODULE";
    return m;
  }();
  return *module;
}

std::string TakeError(char* error) {
  std::string s = error != nullptr ? error : "unknown SentencePiece error";
  std::free(error);
  return s;
}

}  // namespace

void ProcessorDeleter::operator()(void* p) const {
  if (p != nullptr && GetModule().api != nullptr) GetModule().api->free_processor(p);
}

std::string Load(const std::string& model_path, Processor* out) {
  const Module& m = GetModule();
  if (m.api == nullptr) return m.error;
  char* error = nullptr;
  void* p = m.api->load(model_path.c_str(), &error);
  if (p == nullptr) return TakeError(error);
  out->reset(p);
  return "";
}

std::string Train(const std::vector<std::pair<std::string, std::string>>& options) {
  const Module& m = GetModule();
  if (m.api == nullptr) return m.error;
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : options) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  char* error = nullptr;
  if (m.api->train(keys.data(), values.data(), static_cast<int>(keys.size()), &error) != 0) {
    return TakeError(error);
  }
  return "";
}

std::string EncodeIds(const void* p, const std::string& text, std::vector<int>* ids) {
  int* out = nullptr;
  size_t n = 0;
  char* error = nullptr;
  if (GetModule().api->encode_ids(p, text.data(), text.size(), &out, &n, &error) != 0) {
    return TakeError(error);
  }
  ids->assign(out, out + n);
  std::free(out);
  return "";
}

std::string EncodePieces(const void* p, const std::string& text, std::vector<std::string>* pieces) {
  char* out = nullptr;
  size_t n = 0;
  char* error = nullptr;
  if (GetModule().api->encode_pieces(p, text.data(), text.size(), &out, &n, &error) != 0) {
    return TakeError(error);
  }
  pieces->clear();
  for (size_t start = 0; start < n;) {
    size_t len = std::strlen(out + start);
    pieces->emplace_back(out + start, len);
    start += len + 1;
  }
  std::free(out);
  return "";
}

std::string DecodeIds(const void* p, const std::vector<int>& ids, std::string* text) {
  char* out = nullptr;
  size_t n = 0;
  char* error = nullptr;
  if (GetModule().api->decode_ids(p, ids.data(), ids.size(), &out, &n, &error) != 0) {
    return TakeError(error);
  }
  text->assign(out, n);
  std::free(out);
  return "";
}

int PieceSize(const void* p) { return GetModule().api->piece_size(p); }
std::string IdToPiece(const void* p, int id) {
  char* s = GetModule().api->id_to_piece(p, id);
  std::string out(s);
  std::free(s);
  return out;
}
int PadId(const void* p) { return GetModule().api->special_id(p, 0); }
int EosId(const void* p) { return GetModule().api->special_id(p, 1); }
int UnkId(const void* p) { return GetModule().api->special_id(p, 3); }

}  // namespace headroom::internal_spm
