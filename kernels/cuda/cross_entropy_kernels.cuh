// The device code of the fused softmax cross-entropy (kernels/cuda/cross_entropy.cu): one block
// per row (rows `ld` apart; padding columns V .. ld-1 get zero gradient), loss and logits
// gradient against the one-hot or label-smoothed target. A header of
// its own so that tests/kernels/cross_entropy_emulation_test.cc runs exactly this code on the CPU
// under tests/kernels/cuda_emulation.h against the CPU twin (kernels/cpu/cross_entropy.cc); only
// cross_entropy.cu includes it otherwise.
#ifndef HEADROOM_KERNELS_CUDA_CROSS_ENTROPY_KERNELS_CUH_
#define HEADROOM_KERNELS_CUDA_CROSS_ENTROPY_KERNELS_CUH_

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/storage.cuh"

namespace headroom::cuda::cross_entropy_kernels {

constexpr int kBlock = 512;

// No __restrict__ on logits/dlogits: they may alias.
// The smoothed target: on, off and the entropy H(t) (host-computed in double).
struct Target {
  float on = 1.0f, off = 0.0f, entropy = 0.0f;
};

// Calls f(c, x[c]) (x[c] widened to fp32) for every column c < V this thread owns and, with
// `out` non-null, stores its result as out[c]: with `packed` (x and out 16-byte aligned) the whole
// 16-byte packs p = threadIdx.x, + blockDim.x, ... (one vector load, and store, each), then the
// last V % kN columns one at a time; otherwise the columns threadIdx.x, + blockDim.x, ... Every
// loop over a row uses it, so a thread always owns the same columns.
template <typename A, typename F>
__device__ __forceinline__ void ForEachOwnColumn(const A* x, A* out, int V, bool packed, F f) {
  constexpr int kN = Pack<A>::kSize;
  const int packs = packed ? V / kN : 0;
  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    float v[kN];
    Unpack(LoadPack(x + p * kN), v);
#pragma unroll
    for (int j = 0; j < kN; ++j) v[j] = f(p * kN + j, v[j]);
    if (out != nullptr) StorePack(out + p * kN, PackFrom<A>(v));
  }
  for (int c = packs * kN + threadIdx.x; c < V; c += blockDim.x) {
    const float r = f(c, ToFloat(x[c]));
    if (out != nullptr) out[c] = FromFloat<A>(r);
  }
}

// Templated on the logits' storage A (float, or __nv_bfloat16: read widened, the gradient stored
// rounded to nearest even); losses, weights and every sum are fp32. With `packed` (logits and
// dlogits 16-byte aligned, ld a multiple of the pack: the launcher checks) rows are read and the
// gradient written in 16-byte packs.
template <typename A>
__global__ void cross_entropy_kernel(const A* logits, const int32_t* __restrict__ labels,
                                     const float* __restrict__ weights, int V, int ld, Target t,
                                     float* __restrict__ losses, A* dlogits, float grad_scale,
                                     bool packed) {
  __shared__ float shared[kWarpSize];
  __shared__ float label_logit;
  const int64_t row = blockIdx.x;
  const A* x = logits + row * ld;
  const int32_t label = labels[row];
  if (dlogits != nullptr) {  // the padding columns V .. ld-1 are no class
    for (int c = V + threadIdx.x; c < ld; c += blockDim.x)
      dlogits[row * ld + c] = FromFloat<A>(0.0f);
  }
  if (label < 0 || label >= V) {  // no target (>= V is invalid input: treated alike, no OOB read)
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dlogits != nullptr) {
      for (int c = threadIdx.x; c < V; c += blockDim.x) dlogits[row * ld + c] = FromFloat<A>(0.0f);
    }
    return;  // the whole block returns: no barrier is left waiting
  }
  if (threadIdx.x == 0) label_logit = ToFloat(x[label]);
  float mx = -INFINITY;
  A* const no_output = nullptr;
  ForEachOwnColumn(x, no_output, V, packed, [&](int, float v) { return mx = fmaxf(mx, v); });
  mx = BlockMax(mx, shared);  // its barriers also publish label_logit
  float sum = 0.0f;
  ForEachOwnColumn(x, no_output, V, packed, [&](int, float v) { return sum += expf(v - mx); });
  sum = BlockSum(sum, shared);
  if (t.off == 0.0f) {
    if (threadIdx.x == 0) losses[row] = (mx + logf(sum)) - label_logit;
  } else {
    float x_sum = 0.0f;
    ForEachOwnColumn(x, no_output, V, packed, [&](int, float v) { return x_sum += v; });
    x_sum = BlockSum(x_sum, shared);
    if (threadIdx.x == 0) {
      losses[row] =
          (mx + logf(sum)) - (t.on * label_logit + t.off * (x_sum - label_logit)) - t.entropy;
    }
  }
  if (dlogits == nullptr) return;
  const float coef = grad_scale * (weights != nullptr ? weights[row] : 1.0f);
  const float inv_sum = 1.0f / sum;
  const float off = coef * t.off, on = coef * t.on;
  // Each thread writes only the columns it owns (read above): dlogits may overwrite logits.
  ForEachOwnColumn(x, dlogits + row * ld, V, packed, [&](int c, float v) {
    const float p = coef * (expf(v - mx) * inv_sum);
    return c == label ? p - on : p - off;
  });
}

}  // namespace headroom::cuda::cross_entropy_kernels

#endif  // HEADROOM_KERNELS_CUDA_CROSS_ENTROPY_KERNELS_CUH_
