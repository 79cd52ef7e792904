// Dropout with a Philox-4x32-10 mask (kernels/philox.h defines the mask; this follows it).
//
// Element i is kept iff word (i & 3) of DropoutWords(seed, step, layer, site, i >> 2) is >=
// DropoutThreshold(rate); kept elements are scaled by 1 / (1 - rate). One Philox call yields
// the words of four consecutive elements, so chunks are processed in groups of four. The mask is
// a pure function of (key, i): backward is the same call on the gradient, and any split of the
// range between threads draws the same mask.
#include <algorithm>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/philox.h"

namespace headroom {

template <typename T>
void CpuOps<T>::Dropout(const T* x, T* y, int64_t n, float rate, const DropoutKey& key) {
  if (rate <= 0.0f) {
    if (y != x) CopyDevice(y, x, sizeof(T) * static_cast<size_t>(n));
    return;
  }
  if (rate >= 1.0f) {  // everything dropped (1 / (1 - rate) would be infinite)
    Fill(y, n, T(0));
    return;
  }
  const uint32_t threshold = DropoutThreshold(rate);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - static_cast<double>(rate)));
  const int64_t groups = (n + 3) / 4;
  pool_.ParallelFor(groups, kElementwiseGrain / 32, [&](int64_t lo, int64_t hi) {
    for (int64_t g = lo; g < hi; ++g) {
      const Philox4x32 words =
          DropoutWords(key.seed, key.step, key.layer, key.site, static_cast<uint64_t>(g));
      const int64_t i0 = g * 4;
      const int count = static_cast<int>(std::min<int64_t>(4, n - i0));
      for (int j = 0; j < count; ++j) {
        y[i0 + j] = words.v[j] >= threshold ? x[i0 + j] * keep_scale : T(0);
      }
    }
  });
}

template void CpuOps<float>::Dropout(const float*, float*, int64_t, float, const DropoutKey&);
template void CpuOps<double>::Dropout(const double*, double*, int64_t, float, const DropoutKey&);

}  // namespace headroom
