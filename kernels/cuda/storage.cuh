// Activation storage on the device: the element types a kernel's activations are stored in (float,
// or __nv_bfloat16 for `train.precision: "bf16"`) and their conversion to and from the fp32 every
// kernel computes in. The kernels of kernels/cuda/<family>_kernels.cuh are templated on the
// storage type A, so one copy of the device code serves both (float and __nv_bfloat16 instances).
//
//  - ToFloat(a): exact widening; FromFloat<A>(f): f itself for float, round to nearest even
//    (__float2bfloat16, cvt.rn) for bf16, as base/bf16.h's RoundToBf16 on the host.
//  - Pack<A>: 16 bytes of A (4 floats or 8 bf16), moved with ONE vector load or store
//    (LoadPack / StorePack: ld.global.v4 / st.global.v4 through int4). The address must be
//    16-byte aligned (the launchers check it; a misaligned vector access faults on the GPU).
//    LoadElements / StoreElements move kN elements of any storage type as whole packs (a bf16
//    chunk of 8 beside its fp32 parameters or an fp32 residual: two packs of 4 floats); Chunk
//    is the chunk for a kernel over several storage types.
//
// tests/kernels/cuda_emulation.h provides int4, __nv_bfloat16, __float2bfloat16 and
// __bfloat162float on the CPU, so the emulation runs this very file.
#ifndef HEADROOM_KERNELS_CUDA_STORAGE_CUH_
#define HEADROOM_KERNELS_CUDA_STORAGE_CUH_

#ifndef HR_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace headroom::cuda {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename A>
__device__ __forceinline__ A FromFloat(float v) {
  static_assert(std::is_same_v<A, float> || std::is_same_v<A, __nv_bfloat16>,
                "activations are stored as float or __nv_bfloat16");
  if constexpr (std::is_same_v<A, float>) {
    return v;
  } else {
    return __float2bfloat16(v);  // round to nearest even
  }
}

template <typename A>
struct alignas(16) Pack {
  static constexpr int kSize = static_cast<int>(16 / sizeof(A));
  A v[kSize];
};

// The 16 bytes at p (16-byte aligned) in one vector load.
template <typename A>
__device__ __forceinline__ Pack<A> LoadPack(const A* p) {
  Pack<A> r;
  *reinterpret_cast<int4*>(r.v) = *reinterpret_cast<const int4*>(p);
  return r;
}

// r to the 16 bytes at p (16-byte aligned) in one vector store.
template <typename A>
__device__ __forceinline__ void StorePack(A* p, const Pack<A>& r) {
  *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(r.v);
}

// A pack widened to fp32.
template <typename A>
__device__ __forceinline__ void Unpack(const Pack<A>& p, float (&out)[Pack<A>::kSize]) {
#pragma unroll
  for (int j = 0; j < Pack<A>::kSize; ++j) out[j] = ToFloat(p.v[j]);
}

// fp32 values stored as a pack of A (rounded to nearest even for bf16).
template <typename A>
__device__ __forceinline__ Pack<A> PackFrom(const float (&in)[Pack<A>::kSize]) {
  Pack<A> r;
#pragma unroll
  for (int j = 0; j < Pack<A>::kSize; ++j) r.v[j] = FromFloat<A>(in[j]);
  return r;
}

// kN elements of T (float or __nv_bfloat16) at p (16-byte aligned, kN a multiple of the pack),
// widened to fp32, in kN / Pack<T>::kSize vector loads.
template <int kN, typename T>
__device__ __forceinline__ void LoadElements(const T* p, float (&out)[kN]) {
  constexpr int kPer = Pack<T>::kSize;
  static_assert(kN % kPer == 0, "whole 16-byte packs");
#pragma unroll
  for (int q = 0; q < kN / kPer; ++q) {
    const Pack<T> pack = LoadPack(p + q * kPer);
#pragma unroll
    for (int j = 0; j < kPer; ++j) out[q * kPer + j] = ToFloat(pack.v[j]);
  }
}

// kN fp32 values stored as T at p (16-byte aligned), in kN / Pack<T>::kSize vector stores.
template <int kN, typename T>
__device__ __forceinline__ void StoreElements(T* p, const float (&in)[kN]) {
  constexpr int kPer = Pack<T>::kSize;
  static_assert(kN % kPer == 0, "whole 16-byte packs");
#pragma unroll
  for (int q = 0; q < kN / kPer; ++q) {
    Pack<T> pack;
#pragma unroll
    for (int j = 0; j < kPer; ++j) pack.v[j] = FromFloat<T>(in[q * kPer + j]);
    StorePack(p + q * kPer, pack);
  }
}

// The elements a thread of a kernel over tensors of the storage types Ts moves at a time: one
// 16-byte pack of the narrowest (8 when any is bf16, else 4), so every tensor's share is whole
// packs.
template <typename... Ts>
struct Chunk;
template <typename T>
struct Chunk<T> {
  static constexpr int kSize = Pack<T>::kSize;
};
template <typename T, typename... Ts>
struct Chunk<T, Ts...> {
  static constexpr int kSize =
      Pack<T>::kSize > Chunk<Ts...>::kSize ? Pack<T>::kSize : Chunk<Ts...>::kSize;
};

// Host side: whether every non-null pointer is 16-byte aligned (the launchers' check before a
// packed kernel).
inline bool Aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

}  // namespace headroom::cuda

#endif  // HEADROOM_KERNELS_CUDA_STORAGE_CUH_
