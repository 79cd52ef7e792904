// The initial parameters on the host; see init.h.
#include "model/init.h"

#include <cmath>

#include "base/splitmix.h"

namespace headroom {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

// A standard normal by Box-Muller.
double Normal(SplitMix& rng) {
  return std::sqrt(-2.0 * std::log(rng.Open01())) * std::cos(kTwoPi * rng.Open01());
}

// N(0, stddev^2) truncated at two standard deviations (outside: redrawn, P = 4.6%).
void FillTruncatedNormal(SplitMix& rng, double stddev, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) {
    double z;
    do {
      z = Normal(rng);
    } while (std::fabs(z) > 2.0);
    out[i] = z * stddev;
  }
}

void FillNormal(SplitMix& rng, double stddev, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = Normal(rng) * stddev;
}

// U(-limit, limit).
void FillUniform(SplitMix& rng, double limit, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = (2.0 * rng.Open01() - 1.0) * limit;
}

// A matrix or table of `spec` under `model`'s initializer.
void FillRandom(const TensorSpec& spec, const ModelConfig& model, SplitMix& rng, double* out) {
  if (model.initializer() != ModelConfig::UNIFORM_UNIT_SCALING) {
    FillTruncatedNormal(rng, model.initializer_range(), spec.numel, out);
  } else if (spec.init == ParamInit::kEmbedding) {
    FillNormal(rng, 1.0 / std::sqrt(static_cast<double>(model.d_model())), spec.numel, out);
  } else {
    // fan_in + fan_out of [out, in]; a vector counts as [1, n] (none is initialised so today).
    const double fans = spec.shape.size() == 2 ? static_cast<double>(spec.shape[0] + spec.shape[1])
                                               : static_cast<double>(spec.numel + 1);
    FillUniform(rng, std::sqrt(3.0 / (fans / 2.0)), spec.numel, out);
  }
}

}  // namespace

std::vector<double> InitialParameters(const ParameterLayout& layout, const ModelConfig& model,
                                      uint64_t seed) {
  std::vector<double> w(static_cast<size_t>(layout.total()), 0.0);
  for (size_t t = 0; t < layout.tensors().size(); ++t) {
    const TensorSpec& spec = layout.tensors()[t];
    double* out = w.data() + spec.offset;
    switch (spec.init) {
      case ParamInit::kZeros:
        break;  // already zero
      case ParamInit::kOnes:
        for (int64_t i = 0; i < spec.numel; ++i) out[i] = 1.0;
        break;
      case ParamInit::kMatrix:
      case ParamInit::kEmbedding: {
        SplitMix rng{seed ^ (0xD1B54A32D192ED03ull * (t + 1))};
        rng.Next();
        FillRandom(spec, model, rng, out);
        break;
      }
    }
  }
  return w;
}

}  // namespace headroom
