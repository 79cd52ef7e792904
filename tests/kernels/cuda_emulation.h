// A CPU emulation of the CUDA features the device code of kernels/cuda/*_kernels.cuh uses, so
// that CI (no GPU) runs that device code itself, not only its CPU twin.
//
// Every CUDA thread of a block is a std::thread (a pool kept for the process, so launches are
// cheap); blocks run one after the other. Emulated:
// - threadIdx/blockIdx/blockDim/gridDim in up to 3 dimensions (Launch takes a Dim3 grid and
//   block, as <<<grid, block, smem>>> does); a warp is 32 consecutive linear thread ids
//   (x fastest, then y, then z), as on the GPU;
// - __syncthreads and __syncwarp (std::barrier per block and per warp). A thread that returns
//   from the kernel leaves its barriers (arrive_and_drop), as an exited GPU thread no longer
//   counts at a block barrier;
// - __shfl_sync / __shfl_xor_sync of floats and __ballot_sync within a warp (full warps);
// - static __shared__ arrays: `__shared__` becomes `static`, one object per kernel (template
//   instance) that every thread of a block sees; blocks run one at a time, so that is the
//   block's shared memory. Unlike the GPU's it starts zeroed and keeps the previous block's
//   values;
// - dynamic shared memory (HR_DYNAMIC_SHARED), 128-byte aligned and filled with NaN;
// - float4, int4 (16-byte vector moves of any element type), the math library (erff, expf, tanhf,
// logf, sqrtf, fmaxf: the host's libm, correctly
//   rounded or within 1 ulp, where CUDA's are within 2 ulp), __fmul_rn (a plain product: the host
//   build contracts nothing into an FMA);
// - bf16 (__float2bfloat16 rounds to nearest even, __bfloat162float widens exactly; or kept in
// float with HR_EMULATE_EXACT_BF16 to test the logic
//   without rounding), and the nvcuda::wmma fragment API at 16x16x16 with the documented meaning
//   of each layout: matrix_a row_major (i, k) = p[i * ldm + k], col_major p[k * ldm + i];
//   matrix_b row_major (k, n) = p[k * ldm + n], col_major p[n * ldm + k]; accumulators stored and
//   loaded with mem_row_major. Each fragment access checks WMMA's rules (32-byte aligned pointer,
//   ldm a multiple of 16 bytes) and stays inside the block's shared memory;
// - PTX's mma.sync m16n8k16 with bf16 operands (kernels/cuda/mma.cuh's MmaBf16), with the
//   PTX ISA's register fragment layout: each lane holds only its own elements, as on the GPU.
//   Products are summed in IEEE fp32 in k order, which tensor cores (WMMA's too) do not promise:
//   GPU results differ in the last bits, so the GPU tests compare within tolerances.
// kernels/cuda/common.cuh (warp and block reductions, grid-stride indices, grid sizing) is the
// real file, compiled against this emulation.
//
// What it cannot show: anything about real GPU timing, memory ordering beyond the barriers,
// nvcc's FMA contraction (a * b + c may round once on the GPU, twice here, as on the CPU twin:
// the tests that compare bit for bit leave that difference to the cuda_float op tests
// (tests/kernels/ops_test.cc) on a GPU), CUDA's own libm errors, or a misreading of WMMA's or
// mma.sync's layouts shared by this file and the kernels. The GPU tests (scripts/gpu-check) remain
// the judge; this catches indexing, masking, tiling, reduction-order and synchronisation mistakes
// on every CI run.
#ifndef HEADROOM_TESTS_KERNELS_CUDA_EMULATION_H_
#define HEADROOM_TESTS_KERNELS_CUDA_EMULATION_H_

#include <algorithm>
#include <array>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#define HR_CUDA_EMULATION 1
#define HR_DYNAMIC_SHARED(name) unsigned char* name = ::headroom::emulation::block_shared
#define __global__ inline  // kernels live in headers, several tests may include one
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

namespace headroom::emulation {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};

inline thread_local Dim3 thread_index, block_index;
inline Dim3 grid_dim, block_dim;
inline thread_local unsigned char* block_shared = nullptr;
inline unsigned char* shared_begin = nullptr;
inline size_t shared_bytes = 0;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> shuffle_slots;  // one per thread of the block
// Two per thread of the block: the A (8 values) and B (4) fragments a lane passes to mma.sync,
// alternately in each (mma_parity), so one warp barrier a product suffices.
inline std::vector<std::array<std::array<float, 12>, 2>> mma_slots;
inline thread_local unsigned mma_parity = 0;

// The emulated GPU's threads: made when a block first needs them and kept for the process
// (parked on a condition variable between launches), so that a launch creates no threads.
class ThreadPool {
 public:
  static ThreadPool& Get() {
    static ThreadPool pool;
    return pool;
  }

  // Runs body(t) for t = 0 .. n-1, each on its own thread, all at once, and waits for them.
  void Run(unsigned n, const std::function<void(unsigned)>& body) {
    std::unique_lock lock(mu_);
    while (workers_.size() < n) {
      const auto id = static_cast<unsigned>(workers_.size());
      workers_.emplace_back([this, id] { Work(id); });
    }
    body_ = &body;
    active_ = n;
    remaining_ = n;
    ++generation_;
    wake_.notify_all();
    done_.wait(lock, [&] { return remaining_ == 0; });
    body_ = nullptr;
  }

  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& w : workers_) w.join();
  }

 private:
  void Work(unsigned id) {
    uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (id >= active_) continue;
      const std::function<void(unsigned)>* body = body_;
      lock.unlock();
      (*body)(id);
      lock.lock();
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(unsigned)>* body_ = nullptr;
  unsigned active_ = 0, remaining_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

// Aborts (the test binary dies with the message) on an access outside the block's shared memory.
inline void CheckShared(const void* p, size_t bytes) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < shared_begin || c + bytes > shared_begin + shared_bytes) {
    std::fprintf(stderr, "emulation: shared memory access at offset %ld (%zu bytes) outside %zu\n",
                 static_cast<long>(c - shared_begin), bytes, shared_bytes);
    std::abort();
  }
}

inline unsigned LinearThread() {
  return thread_index.x + block_dim.x * (thread_index.y + block_dim.y * thread_index.z);
}

// Runs kernel() as a grid of `grid` blocks of `block` threads with `smem` bytes of dynamic shared
// memory (NaN-filled): kernel<<<grid, block, smem>>>(...). The block's threads (ThreadPool's)
// run the blocks one after the other (x fastest, then y, then z); between two blocks
// every thread waits until all have finished the previous one, and the next block starts with
// fresh barriers and freshly NaN-filled dynamic shared memory.
inline void Launch(const std::function<void()>& kernel, Dim3 grid, Dim3 block, size_t smem) {
  grid_dim = grid;
  block_dim = block;
  const unsigned threads = block.x * block.y * block.z;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  std::vector<unsigned char> buffer(smem + 128);
  auto* base = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(buffer.data()) + 127) &
                                                ~uintptr_t{127});
  std::unique_ptr<std::barrier<>> block_sync;
  uint64_t next = 0;  // the block the threads run after the coming switch
  // Runs once, on one thread, when every thread has finished the previous block.
  auto switch_block = [&]() noexcept {
    std::memset(base, 0xFF, smem);  // 0xFFFFFFFF is a NaN
    shared_begin = base;
    shared_bytes = smem;
    block_sync = std::make_unique<std::barrier<>>(threads);
    block_barrier = block_sync.get();
    warp_barriers.clear();
    for (unsigned w = 0; w * 32 < threads; ++w) {
      warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - w * 32)));
    }
    shuffle_slots.assign(threads, 0.0f);
    mma_slots.assign(threads, {});
    ++next;
  };
  std::barrier between_blocks(threads, switch_block);
  ThreadPool::Get().Run(threads, [&](unsigned t) {
    thread_index = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
    block_shared = base;
    for (;;) {
      between_blocks.arrive_and_wait();
      const uint64_t b = next - 1;
      if (b >= blocks) return;
      block_index = {static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                     static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y))};
      mma_parity = 0;
      kernel();
      warp_barriers[t / 32]->arrive_and_drop();
      block_barrier->arrive_and_drop();
    }
  });
}

// A 1-D block of `threads` threads on a grid_x x grid_y grid.
inline void Launch(const std::function<void()>& kernel, unsigned grid_x, unsigned grid_y,
                   unsigned threads, size_t smem) {
  Launch(kernel, Dim3{grid_x, grid_y, 1}, Dim3{threads, 1, 1}, smem);
}

}  // namespace headroom::emulation

#define threadIdx ::headroom::emulation::thread_index
#define blockIdx ::headroom::emulation::block_index
#define gridDim ::headroom::emulation::grid_dim
#define blockDim ::headroom::emulation::block_dim

inline void __syncthreads() { headroom::emulation::block_barrier->arrive_and_wait(); }
inline void __syncwarp() {
  headroom::emulation::warp_barriers[headroom::emulation::LinearThread() / 32]->arrive_and_wait();
}
inline float __shfl_sync(unsigned, float v, int src_lane) {
  const unsigned t = headroom::emulation::LinearThread(), warp = t / 32;
  headroom::emulation::shuffle_slots[t] = v;
  __syncwarp();
  const float r = headroom::emulation::shuffle_slots[warp * 32 + static_cast<unsigned>(src_lane)];
  __syncwarp();
  return r;
}
inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  return __shfl_sync(mask, v,
                     static_cast<int>((headroom::emulation::LinearThread() % 32) ^
                                      static_cast<unsigned>(lane_mask)));
}
// Bit l of the result is lane l's predicate (every lane of the warp takes part).
inline unsigned __ballot_sync(unsigned, bool predicate) {
  const unsigned t = headroom::emulation::LinearThread(), warp0 = t / 32 * 32;
  headroom::emulation::shuffle_slots[t] = predicate ? 1.0f : 0.0f;
  __syncwarp();
  unsigned word = 0;
  for (unsigned lane = 0; lane < 32; ++lane) {
    if (headroom::emulation::shuffle_slots[warp0 + lane] != 0.0f) word |= 1u << lane;
  }
  __syncwarp();
  return word;
}
inline float __fmul_rn(float a, float b) { return a * b; }
using std::max;
using std::min;

struct float4 {
  float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
// CUDA's int4 (vector_types.h): four ints, 16-byte aligned. Kernels move 16 bytes of any element
// type with one int4 load or store (kernels/cuda/storage.cuh's LoadPack / StorePack); the
// emulation targets are built with -fno-strict-aliasing, as that reinterpretation needs on the
// host.
struct alignas(16) int4 {
  int x, y, z, w;
};

#ifdef HR_EMULATE_EXACT_BF16
struct __nv_bfloat16 {
  float value;
};
inline __nv_bfloat16 __float2bfloat16(float x) { return {x}; }
inline float EmulatedFloat(__nv_bfloat16 b) { return b.value; }
#else
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16(float x) {  // round to nearest even
  if (std::isnan(x)) return {0x7FC0};
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}
inline float EmulatedFloat(__nv_bfloat16 b) {
  const uint32_t u = uint32_t{b.bits} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
#endif
inline float EmulatedFloat(float f) { return f; }
// Exact widening, as CUDA's __bfloat162float.
inline float __bfloat162float(__nv_bfloat16 b) { return EmulatedFloat(b); }
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16(a), __float2bfloat16(b)};
}
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }

namespace headroom::emulation {

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (kernels/cuda/mma.cuh), collective over
// the warp: each lane posts its A and B pairs, then computes its four elements of D from the
// whole A and B, which it rebuilds from every lane's pairs by the PTX ISA's fragment layout
// (lane = 4 g + t: A pairs (g, 2t), (g+8, 2t), (g, 2t+8), (g+8, 2t+8); B pairs (2t, g),
// (2t+8, g); D (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)). Sums in fp32, k in order. A lane
// posts into the slot set of its call's parity; it posts into that set again two calls later,
// after the next call's barrier, which every lane reaches only once it has read this call's set.
inline void MmaM16N8K16Bf16(float (&d)[4], const __nv_bfloat162 (&a)[4],
                            const __nv_bfloat162 (&b)[2]) {
  const unsigned thread = LinearThread(), warp0 = thread / 32 * 32;
  const unsigned parity = mma_parity;
  mma_parity ^= 1;
  std::array<float, 12>& mine = mma_slots[thread][parity];
  for (int i = 0; i < 4; ++i) {
    mine[2 * i] = EmulatedFloat(a[i].x);
    mine[2 * i + 1] = EmulatedFloat(a[i].y);
  }
  for (int i = 0; i < 2; ++i) {
    mine[8 + 2 * i] = EmulatedFloat(b[i].x);
    mine[8 + 2 * i + 1] = EmulatedFloat(b[i].y);
  }
  __syncwarp();
  float A[16][16], B[16][8];
  for (unsigned lane = 0; lane < 32; ++lane) {
    const std::array<float, 12>& f = mma_slots[warp0 + lane][parity];
    const unsigned g = lane / 4, t = lane % 4;
    for (unsigned i = 0; i < 4; ++i) {
      const unsigned row = g + 8 * (i % 2), col = 2 * t + 8 * (i / 2);
      A[row][col] = f[2 * i];
      A[row][col + 1] = f[2 * i + 1];
    }
    for (unsigned i = 0; i < 2; ++i) {
      B[2 * t + 8 * i][g] = f[8 + 2 * i];
      B[2 * t + 8 * i + 1][g] = f[8 + 2 * i + 1];
    }
  }
  const unsigned g = (thread % 32) / 4, t = thread % 4;
  for (unsigned i = 0; i < 4; ++i) {
    const unsigned row = g + 8 * (i / 2), col = 2 * t + i % 2;
    float s = d[i];
    for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
    d[i] = s;
  }
}

}  // namespace headroom::emulation

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  float x[16][16];
};

inline void CheckFragment(const void* p, unsigned ldm, size_t element_bytes) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * element_bytes) % 16 != 0) {
    std::fprintf(stderr, "emulation: WMMA pointer not 32-byte aligned or ldm not 16 bytes\n");
    std::abort();
  }
  headroom::emulation::CheckShared(p, element_bytes);
  headroom::emulation::CheckShared(static_cast<const char*>(p) + (15 * ldm + 15) * element_bytes,
                                   element_bytes);
}

template <typename Use, typename T, typename L>
void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, float v) {
  for (auto& row : f.x) std::fill(std::begin(row), std::end(row), v);
}

template <typename T, typename L>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, L>& f, const T* p, unsigned ldm) {
  CheckFragment(p, ldm, sizeof(T));
  for (unsigned i = 0; i < 16; ++i) {
    for (unsigned k = 0; k < 16; ++k) {
      f.x[i][k] = EmulatedFloat(std::is_same_v<L, row_major> ? p[i * ldm + k] : p[k * ldm + i]);
    }
  }
}

template <typename T, typename L>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, L>& f, const T* p, unsigned ldm) {
  CheckFragment(p, ldm, sizeof(T));
  for (unsigned k = 0; k < 16; ++k) {
    for (unsigned n = 0; n < 16; ++n) {
      f.x[k][n] = EmulatedFloat(std::is_same_v<L, row_major> ? p[k * ldm + n] : p[n * ldm + k]);
    }
  }
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  CheckFragment(p, ldm, 4);
  for (unsigned i = 0; i < 16; ++i) {
    for (unsigned j = 0; j < 16; ++j) {
      f.x[i][j] = layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i];
    }
  }
}

// Collective over the warp: every lane has finished its earlier reads before any lane writes.
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout) {
  CheckFragment(p, ldm, 4);
  __syncwarp();
  for (unsigned i = 0; i < 16; ++i) {
    for (unsigned j = 0; j < 16; ++j) {
      (layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.x[i][j];
    }
  }
}

template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
              const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  fragment<accumulator, 16, 16, 16, float> r;
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      float s = c.x[i][j];
      for (int k = 0; k < 16; ++k) s += a.x[i][k] * b.x[k][j];
      r.x[i][j] = s;
    }
  }
  d = r;
}

}  // namespace nvcuda::wmma

// The real device helpers, against the definitions above.
#include "kernels/cuda/common.cuh"

#endif  // HEADROOM_TESTS_KERNELS_CUDA_EMULATION_H_
