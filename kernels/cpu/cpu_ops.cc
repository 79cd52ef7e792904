// CpuOps construction and the explicit instantiations for float and double.
//
// Each kernel family's .cc defines its CpuOps<T> members and instantiates them for both types
// itself; the class instantiation here emits what is left (constructor, destructor, vtable).
#include "kernels/cpu/cpu_ops.h"

namespace headroom {

template <typename T>
CpuOps<T>::CpuOps(int num_threads) : pool_(num_threads) {}

template <typename T>
CpuOps<T>::~CpuOps() = default;

template class CpuOps<float>;
template class CpuOps<double>;

}  // namespace headroom
