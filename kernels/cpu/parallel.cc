// ThreadPool: one job at a time, static contiguous chunks, condition-variable hand-off.
//
// Chunk p of `parts` is [p*n/parts, (p+1)*n/parts); the caller runs chunk 0 itself so a
// 2-thread pool wakes only one worker. Workers sleep on a condition variable between jobs: the
// wake-up costs a few microseconds, which is why callers pass a grain that keeps tiny loops
// inline.
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <cstdlib>

namespace headroom {
namespace {

thread_local bool tl_in_parallel_region = false;

}  // namespace

int ThreadPool::DefaultThreads() {
  if (const char* env = std::getenv("HEADROOM_CPU_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads : DefaultThreads()) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  tl_in_parallel_region = true;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* fn;
    int64_t n;
    int parts;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      fn = fn_;
      n = n_;
      parts = parts_;
    }
    if (index < parts) {
      (*fn)(n * index / parts, n * (index + 1) / parts);
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_parts = std::min<int64_t>(num_threads_, (n + grain - 1) / grain);
  if (max_parts <= 1 || tl_in_parallel_region) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  const int parts = static_cast<int>(max_parts);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    pending_ = parts - 1;
    ++generation_;
  }
  work_cv_.notify_all();
  tl_in_parallel_region = true;
  fn(0, n / parts);
  tl_in_parallel_region = false;
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  fn_ = nullptr;
}

}  // namespace headroom
