// BERT initialisation on the host; see init.h.
#include "model/init.h"

#include <cmath>

#include "base/splitmix.h"

namespace headroom {

std::vector<double> InitialParameters(const ParameterLayout& layout, double initializer_range,
                                      uint64_t seed) {
  std::vector<double> w(static_cast<size_t>(layout.total()), 0.0);
  const double kTwoPi = 6.283185307179586476925286766559;
  for (size_t t = 0; t < layout.tensors().size(); ++t) {
    const TensorSpec& spec = layout.tensors()[t];
    double* out = w.data() + spec.offset;
    switch (spec.init) {
      case ParamInit::kZeros:
        break;  // already zero
      case ParamInit::kOnes:
        for (int64_t i = 0; i < spec.numel; ++i) out[i] = 1.0;
        break;
      case ParamInit::kTruncatedNormal: {
        SplitMix rng{seed ^ (0xD1B54A32D192ED03ull * (t + 1))};
        rng.Next();
        for (int64_t i = 0; i < spec.numel; ++i) {
          double z;
          do {  // Box-Muller; redraw outside two standard deviations (P = 4.6%).
            z = std::sqrt(-2.0 * std::log(rng.Open01())) * std::cos(kTwoPi * rng.Open01());
          } while (std::fabs(z) > 2.0);
          out[i] = z * initializer_range;
        }
        break;
      }
    }
  }
  return w;
}

}  // namespace headroom
