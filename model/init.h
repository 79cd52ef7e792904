// BERT's parameter initialisation, computed on the host so every backend starts from the same
// bits.
//
// Google BERT initialises every weight matrix and embedding table from a normal distribution
// with stddev `initializer_range` (0.02) truncated at two standard deviations (values outside
// are redrawn, as tf.truncated_normal), biases to zero and LayerNorm gains to one; the layout's
// TensorSpec::init says which rule each tensor follows (model/parameter_layout.h).
//
// The random stream of tensor t is its own splitmix64 generator seeded from (seed, t), turned
// into normals by Box-Muller in double, so a tensor's values depend only on the seed and its
// position in the layout, not on thread count or platform libm quirks beyond log/cos/sin.
//
// Example:
//   ParameterLayout layout = ParameterLayout::ForModel(config.model());
//   std::vector<float> w = InitialParameters(layout, config.model().initializer_range(), 1234);
//   // w.size() == layout.total()
#ifndef HEADROOM_MODEL_INIT_H_
#define HEADROOM_MODEL_INIT_H_

#include <cstdint>
#include <vector>

#include "model/parameter_layout.h"

namespace headroom {

// The initial value of every parameter of `layout`, in layout order (host memory).
std::vector<double> InitialParameters(const ParameterLayout& layout, double initializer_range,
                                      uint64_t seed);

}  // namespace headroom

#endif  // HEADROOM_MODEL_INIT_H_
