// A small fixed thread pool with one operation, ParallelFor, used by the CPU backend's loops.
//
// The CPU backend runs on few cores (2 on the development machine), so the pool is deliberately
// simple: the calling thread plus `num_threads - 1` workers split [0, n) into one contiguous
// chunk per participant and the call returns when every chunk is done. Chunk boundaries depend
// only on n and the thread count, so a kernel that writes disjoint outputs per chunk is
// deterministic. GEMM does not use it (OpenBLAS has its own threads).
//
// Example:
//   ThreadPool pool(2);
//   pool.ParallelFor(rows, /*grain=*/64, [&](int64_t begin, int64_t end) {
//     for (int64_t r = begin; r < end; ++r) NormaliseRow(r);
//   });
#ifndef HEADROOM_KERNELS_CPU_PARALLEL_H_
#define HEADROOM_KERNELS_CPU_PARALLEL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace headroom {

// Elements per chunk below which an elementwise loop is not worth splitting: a worker's wake-up
// costs a few microseconds, about what 32K simple float operations take on one core.
inline constexpr int64_t kElementwiseGrain = 32768;

class ThreadPool {
 public:
  // num_threads <= 0 picks DefaultThreads().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The hardware thread count, or HEADROOM_CPU_THREADS when set to a positive number.
  static int DefaultThreads();

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint chunks that cover [0, n), using at most one chunk per
  // thread and at least `grain` elements per chunk (so small loops run inline on the caller).
  // Blocks until all chunks are done. Calls from inside a chunk run inline (no nesting).
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // serialises ParallelFor calls from different threads

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;  // bumped per job
  bool stop_ = false;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  int pending_ = 0;  // worker chunks not yet finished
};

}  // namespace headroom

#endif  // HEADROOM_KERNELS_CPU_PARALLEL_H_
