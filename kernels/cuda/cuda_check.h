// One check macro for CUDA runtime and cuBLAS(Lt) calls, and the sink that keeps the first error.
//
// Ops return void (kernels/ops.h), so a failing CUDA call cannot return a Status. Instead every
// call goes through HR_CUDA_CHECK(sink, call), which on failure records
//   "<call text> failed: <error name>: <error string> (<file>:<line>)"
// in an ErrorSink. The sink keeps the FIRST failure (later ones are usually consequences of it:
// after an illegal address every call fails), prints it once to stderr so that it shows up in
// test logs even when nobody asks, and aborts the process when asked to. CudaOps::status()
// turns the kept message into an absl::Status.
//
// This header is plain C++ (no Abseil) so that nvcc-compiled .cu files can use it too.
//
// Example:
//   ErrorSink err;
//   HR_CUDA_CHECK(err, cudaMemsetAsync(p, 0, bytes, stream));
//   if (!HR_CUDA_CHECK(err, cublasLtCreate(&handle))) return;
#ifndef HEADROOM_KERNELS_CUDA_CUDA_CHECK_H_
#define HEADROOM_KERNELS_CUDA_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <string>

namespace headroom::cuda {

// Keeps the first failure of a sequence of CUDA calls. Not thread-safe (an Ops object is used
// from one thread at a time).
class ErrorSink {
 public:
  ErrorSink() = default;

  bool ok() const { return first_.empty(); }
  // The first recorded failure; empty when ok().
  const std::string& first_error() const { return first_; }
  // How many failures were recorded (the first one is kept).
  int count() const { return count_; }

  // When true, the first failure aborts the process after printing it.
  void set_abort_on_error(bool abort_on_error) { abort_on_error_ = abort_on_error; }

  // Records a failure of `call` with `error` at file:line.
  void Record(const char* call, const std::string& error, const char* file, int line);

 private:
  std::string first_;
  int count_ = 0;
  bool abort_on_error_ = false;
};

inline bool IsSuccess(cudaError_t e) { return e == cudaSuccess; }
inline bool IsSuccess(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
std::string ErrorText(cudaError_t e);
std::string ErrorText(cublasStatus_t s);

// A failed runtime call also leaves its error as the thread's "last error", which the next
// HR_CUDA_CHECK(err, cudaGetLastError()) after an unrelated, good launch would report again: on
// the H100 (2026-12-06) a test's deliberate out-of-memory failed the next test's first kernel,
// in a new CudaOps. Reading the last error clears it once the failure is recorded. A sticky error
// (a fault inside a kernel) is not cleared by this: every later call keeps failing, as it should.
inline void ClearLastError(cudaError_t) { (void)cudaGetLastError(); }
inline void ClearLastError(cublasStatus_t) {}

template <typename Result>
inline bool CheckResult(Result result, const char* call, const char* file, int line,
                        ErrorSink& sink) {
  if (IsSuccess(result)) return true;
  sink.Record(call, ErrorText(result), file, line);
  ClearLastError(result);
  return false;
}

}  // namespace headroom::cuda

// Evaluates `call` (returning cudaError_t or cublasStatus_t) once; on failure records it in
// `sink` (an ErrorSink). Yields true on success. After a kernel launch use
// HR_CUDA_CHECK(err, cudaGetLastError()): file:line names the launch.
#define HR_CUDA_CHECK(sink, call) \
  ::headroom::cuda::CheckResult((call), #call, __FILE__, __LINE__, (sink))

#endif  // HEADROOM_KERNELS_CUDA_CUDA_CHECK_H_
