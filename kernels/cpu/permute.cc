// PermuteHeads: [B, S, H, D] <-> [B, H, S, D], the head split/merge around attention.
//
// A pure copy of D-element rows; each (b, s, h) row moves as one contiguous memcpy, and the
// B*S source rows are split between threads.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace headroom {

template <typename T>
void CpuOps<T>::PermuteHeads(const T* x, T* y, int B, int S, int H, int D, bool inverse) {
  const int64_t rows = static_cast<int64_t>(B) * S;  // one (b, s) pair per iteration
  const int64_t grain =
      std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, int64_t{H} * D));
  const size_t bytes = sizeof(T) * static_cast<size_t>(D);
  pool_.ParallelFor(rows, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t bs = lo; bs < hi; ++bs) {
      const int64_t b = bs / S, s = bs % S;
      for (int h = 0; h < H; ++h) {
        const int64_t bsh = (bs * H + h) * D;           // [B, S, H, D] offset
        const int64_t bhs = ((b * H + h) * S + s) * D;  // [B, H, S, D] offset
        if (inverse) {
          std::memcpy(y + bsh, x + bhs, bytes);
        } else {
          std::memcpy(y + bhs, x + bsh, bytes);
        }
      }
    }
  });
}

template void CpuOps<float>::PermuteHeads(const float*, float*, int, int, int, int, bool);
template void CpuOps<double>::PermuteHeads(const double*, double*, int, int, int, int, bool);

}  // namespace headroom
