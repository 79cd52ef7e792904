// The initial parameters, computed on the host so every backend starts from the same bits.
//
// model.initializer chooses the rule for weight matrices and embedding tables (TensorSpec::init
// in model/parameter_layout.h says which a tensor is); biases start at zero and LayerNorm gains
// at one under every rule:
//  - TRUNCATED_NORMAL (Google BERT): matrices and tables from N(0, initializer_range^2)
//    truncated at two standard deviations (values outside are redrawn, as tf.truncated_normal);
//  - UNIFORM_UNIT_SCALING (tensor2tensor's transformer_base, initializer_gain 1: TF's
//    variance_scaling_initializer with mode "fan_avg" and a uniform distribution): a matrix
//    [out, in] from U(-L, L) with L = sqrt(3 / ((in + out) / 2)); tables from N(0, 1/d_model),
//    as tensor2tensor's symbol modality draws its embedding and softmax weights.
//
// The random stream of tensor t is its own splitmix64 generator seeded from (seed, t), turned
// into normals by Box-Muller in double, so a tensor's values depend only on the seed and its
// position in the layout, not on thread count or platform libm quirks beyond log/cos/sin.
//
// Example:
//   ParameterLayout layout = ParameterLayout::ForModel(config.model());
//   std::vector<double> w = InitialParameters(layout, config.model(), 1234);
//   // w.size() == layout.total()
#ifndef HEADROOM_MODEL_INIT_H_
#define HEADROOM_MODEL_INIT_H_

#include <cstdint>
#include <vector>

#include "config/config.pb.h"
#include "model/parameter_layout.h"

namespace headroom {

// The initial value of every parameter of `layout`, in layout order (host memory), under
// `model`'s initializer (with its initializer_range and d_model).
std::vector<double> InitialParameters(const ParameterLayout& layout, const ModelConfig& model,
                                      uint64_t seed);

}  // namespace headroom

#endif  // HEADROOM_MODEL_INIT_H_
