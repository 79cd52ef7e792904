// The finite-difference gradient check of the model tests (tests/model/transformer_test.cc,
// task_model_test.cc): Ridders' estimate (model_test_util.h) of d loss / d w_i against the
// analytic gradient, tensor by tensor.
//
// Per tensor, every element when it has at most 40, else 24 random ones; the check is the max
// relative error |a - n| / max(|a| + |n|, tiny) below 1e-6. `tiny` is the finite-difference
// noise floor: the loss (~3) is computed to ~1e-15 in double, so no difference quotient with
// steps ~1e-3 resolves a gradient element better than ~1e-12 absolute, and elements below
// `tiny` are held to |a - n| < 1e-6 * tiny instead. Every checked tensor must get some
// gradient (largest |a| > 1e-8), except position embeddings beyond the sequence, which the
// sampled rows may all be.
#ifndef HEADROOM_TESTS_MODEL_FINITE_DIFFERENCE_CHECK_H_
#define HEADROOM_TESTS_MODEL_FINITE_DIFFERENCE_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/parameter_layout.h"
#include "tests/model/model_test_util.h"

namespace headroom {
namespace testing {

// What the check expects of one tensor's gradient.
enum class GradientKind {
  kChecked,    // against Ridders' estimate
  kVanishing,  // zero by a symmetry (e.g. attention key biases: a vector added to every key
               // shifts each query's scores by a constant, which softmax ignores): both the
               // analytic gradient and the estimate must vanish
  kUnused,     // not read by the loss: the analytic gradient is exactly 0 (no estimate)
};

struct FiniteDifferenceOptions {
  double first_step = 1e-2;  // Ridders' first step h
  double tiny = 1e-6;        // the noise floor (see the file comment)
  std::function<GradientKind(const std::string& tensor)> kind = [](const std::string& name) {
    return name.find("attention.self.key.bias") != std::string::npos ? GradientKind::kVanishing
                                                                     : GradientKind::kChecked;
  };
};

// Checks `analytic` (the gradient at `w`) tensor by tensor; loss_at(i, v) is the loss with
// parameter i set to v and the others as in `w`. Prints and returns the max relative error.
inline double CheckGradientsAgainstRidders(const ParameterLayout& layout,
                                           const std::vector<double>& analytic,
                                           const std::vector<double>& w,
                                           const std::function<double(int64_t, double)>& loss_at,
                                           const FiniteDifferenceOptions& o = {}) {
  std::mt19937 rng(17);
  double overall = 0;
  for (const TensorSpec& t : layout.tensors()) {
    std::vector<int64_t> idx;
    if (t.numel <= 40) {
      for (int64_t i = 0; i < t.numel; ++i) idx.push_back(t.offset + i);
    } else {
      std::uniform_int_distribution<int64_t> pick(0, t.numel - 1);
      for (int i = 0; i < 24; ++i) idx.push_back(t.offset + pick(rng));
    }
    const GradientKind kind = o.kind(t.name);
    if (kind == GradientKind::kUnused) {
      for (int64_t i : idx) EXPECT_EQ(analytic[i], 0.0) << t.name;
      continue;
    }
    double worst = 0, worst_a = 0, worst_n = 0, largest = 0;
    for (int64_t i : idx) {
      const double n =
          RiddersDerivative([&](double v) { return loss_at(i, v); }, w[i], o.first_step);
      const double a = analytic[i];
      if (kind == GradientKind::kVanishing) {
        EXPECT_LT(std::fabs(a), 1e-12) << t.name;
        EXPECT_LT(std::fabs(n), 1e-4 * o.tiny) << t.name;
        continue;
      }
      const double rel = std::fabs(a - n) / std::max(std::fabs(a) + std::fabs(n), o.tiny);
      largest = std::max(largest, std::fabs(a));
      if (rel > worst) worst = rel, worst_a = a, worst_n = n;
    }
    overall = std::max(overall, worst);
    EXPECT_LT(worst, 1e-6) << t.name << ": analytic " << worst_a << " numeric " << worst_n;
    if (kind == GradientKind::kChecked && t.name.find("position_embeddings") == std::string::npos) {
      EXPECT_GT(largest, 1e-8) << t.name << " has an all-zero sampled gradient";
    }
  }
  std::printf("max relative error over all tensors: %.3g\n", overall);
  return overall;
}

}  // namespace testing
}  // namespace headroom

#endif  // HEADROOM_TESTS_MODEL_FINITE_DIFFERENCE_CHECK_H_
