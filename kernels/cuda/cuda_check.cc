// ErrorSink and the error texts of HR_CUDA_CHECK (see cuda_check.h).
#include "kernels/cuda/cuda_check.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace headroom::cuda {

std::string ErrorText(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

std::string ErrorText(cublasStatus_t s) {
  return std::string(cublasLtGetStatusName(s)) + ": " + cublasLtGetStatusString(s);
}

void ErrorSink::Record(const char* call, const std::string& error, const char* file, int line) {
  ++count_;
  if (!first_.empty()) return;
  const char* base = file;
  for (const char* p = file; *p != '\0'; ++p) {
    if (*p == '/') base = p + 1;
  }
  first_ = std::string(call) + " failed: " + error + " (" + base + ":" + std::to_string(line) + ")";
  std::fprintf(stderr, "headroom CUDA error: %s\n", first_.c_str());
  if (abort_on_error_) std::abort();
}

}  // namespace headroom::cuda
