// Helpers shared by the model tests: tiny configs, randomised parameters, Ridders' numerical
// derivative for finite-difference gradient checks, and a naive host reference transformer written
// from the paper's and Google BERT's equations (plain loops in double, nothing shared with model/
// or kernels/), so tests compare against an independent computation.
#ifndef HEADROOM_TESTS_MODEL_MODEL_TEST_UTIL_H_
#define HEADROOM_TESTS_MODEL_MODEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/config.pb.h"
#include "config/load.h"
#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "kernels/philox.h"
#include "model/batch.h"
#include "model/parameter_layout.h"

namespace headroom {
namespace testing {

// The model of configs/mini/<name>.textproto with `overrides` ("field=value", as --set);
// tests run through ctest, which sets HEADROOM_SOURCE_DIR to the checkout.
inline ModelConfig MiniModel(const std::string& name,
                             const std::vector<std::string>& overrides = {}) {
  const char* src = std::getenv("HEADROOM_SOURCE_DIR");
  const std::string path =
      std::string(src != nullptr ? src : ".") + "/configs/mini/" + name + ".textproto";
  absl::StatusOr<ExperimentConfig> c = LoadConfig(path, overrides);
  EXPECT_TRUE(c.ok()) << c.status() << " (run through ctest, which sets HEADROOM_SOURCE_DIR)";
  return c.ok() ? c->model() : ModelConfig();
}

// A tiny BERT: vocab 17, 8 positions, type vocab 2. head_size 0 means d/h.
inline ModelConfig TinyBert(int layers, int d, int heads, int head_size, int ffn,
                            float dropout = 0.0f) {
  ModelConfig m;
  m.set_objective(ModelConfig::BERT);
  m.set_vocab_size(17);
  m.set_max_positions(8);
  m.set_type_vocab_size(2);
  m.set_num_layers(layers);
  m.set_d_model(d);
  m.set_num_heads(heads);
  m.set_head_size(head_size);
  m.set_ffn_size(ffn);
  m.set_hidden_dropout(dropout);
  m.set_attention_dropout(dropout);
  m.set_layer_norm_epsilon(1e-6f);
  m.set_initializer_range(0.5f);
  m.set_tie_output_embedding(true);
  return m;
}

// A tiny causal LM: vocab 13, 8 positions.
inline ModelConfig TinyLm(int layers, int d, int heads, int head_size, int ffn,
                          float dropout = 0.0f) {
  ModelConfig m = TinyBert(layers, d, heads, head_size, ffn, dropout);
  m.set_objective(ModelConfig::CAUSAL_LM);
  m.set_vocab_size(13);
  m.set_type_vocab_size(0);
  return m;
}

// Parameters with every path active: the layout's weights drawn N(0, range^2), and LayerNorm
// gains 1 + N(0, 0.3^2), biases N(0, 0.2^2) instead of BERT's ones and zeros (which would hide
// errors in their gradients' cross terms).
inline std::vector<double> RandomParameters(const ParameterLayout& layout, double range,
                                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> w(layout.total());
  for (const TensorSpec& t : layout.tensors()) {
    for (int64_t i = 0; i < t.numel; ++i) {
      double z = normal(rng);
      switch (t.init) {
        case ParamInit::kMatrix:
        case ParamInit::kEmbedding:
          w[t.offset + i] = range * z;
          break;
        case ParamInit::kOnes:
          w[t.offset + i] = 1.0 + 0.3 * z;
          break;
        case ParamInit::kZeros:
          w[t.offset + i] = 0.2 * z;
          break;
      }
    }
  }
  return w;
}

// Ridders' method (Numerical Recipes, dfridr): central differences at steps h, h/1.4,
// h/1.4^2, ... extrapolated to step 0 in a Neville tableau, stopping when the estimate's error
// starts growing. It reaches near machine precision on smooth functions whose higher
// derivatives are large enough to make a fixed-step stencil miss 1e-6 either by truncation
// (large steps) or by rounding (small steps), as this tiny, sharply curved model's loss.
template <typename F>
inline double RiddersDerivative(const F& f, double x, double h) {
  constexpr int kTable = 10;
  constexpr double kShrink = 1.4, kShrink2 = kShrink * kShrink, kSafe = 2.0;
  double a[kTable][kTable];
  a[0][0] = (f(x + h) - f(x - h)) / (2 * h);
  double err = 1e300, best = a[0][0];
  for (int i = 1; i < kTable; ++i) {
    h /= kShrink;
    a[0][i] = (f(x + h) - f(x - h)) / (2 * h);
    double fac = kShrink2;
    for (int j = 1; j <= i; ++j) {
      a[j][i] = (a[j - 1][i] * fac - a[j - 1][i - 1]) / (fac - 1);
      fac *= kShrink2;
      const double e =
          std::max(std::fabs(a[j][i] - a[j - 1][i]), std::fabs(a[j][i] - a[j - 1][i - 1]));
      if (e <= err) err = e, best = a[j][i];
    }
    if (std::fabs(a[i][i] - a[i - 1][i - 1]) >= kSafe * err) break;
  }
  return best;
}

// ---- Naive reference ---------------------------------------------------------------------

struct ReferenceResult {
  double loss = 0, mlm_loss = 0, nsp_loss = 0, lm_loss = 0;
  int64_t mlm_correct = 0, nsp_correct = 0, lm_correct = 0;
  std::vector<double> hidden;  // [B*S, d] encoder output
};

// A parameter tensor as a checkpoint holds it: its true shape and values, found by name (no
// offsets, no padding).
struct NamedTensor {
  std::vector<int64_t> shape;
  std::vector<double> values;
};
using NamedTensors = std::map<std::string, NamedTensor>;

// The tensors of `layout` in the flat buffer `w`, by name.
inline NamedTensors TensorsByName(const ParameterLayout& layout, const std::vector<double>& w) {
  NamedTensors named;
  for (const TensorSpec& t : layout.tensors()) {
    named[t.name] = {t.shape,
                     std::vector<double>(w.begin() + t.offset, w.begin() + t.offset + t.numel)};
  }
  return named;
}

// The model's options (config/config.proto) as their papers and tensor2tensor state them:
// PRE_LN, sinusoidal positions, GELU's tanh form and ReLU, sqrt(d)-scaled embeddings, no output
// bias; `label_smoothing` > 0 gives the smoothed token losses of a training Forward.
class ReferenceModel {
 public:
  // The parameters `w` in the layout of `m` (ParameterLayout::ForModel).
  ReferenceModel(const ModelConfig& m, const std::vector<double>& w, double label_smoothing = 0)
      : ReferenceModel(m, TensorsByName(ParameterLayout::ForModel(m), w), label_smoothing) {}
  // The parameters by name (Hugging Face names, true shapes): the reference reads nothing else.
  ReferenceModel(const ModelConfig& m, NamedTensors tensors, double label_smoothing = 0)
      : m_(m),
        tensors_(std::move(tensors)),
        prefix_(m.objective() == ModelConfig::BERT ? "bert." : "lm."),
        smoothing_(label_smoothing) {}

  // Runs the FFN dropout (model.ffn_dropout) as in training under `base`, from its definition
  // in kernels/philox.h: element i = (row, unit) of layer l's [B*S, F] activations is kept iff
  // word i & 3 of DropoutWords(seed, step, l, site 3, i >> 2) >= DropoutThreshold(rate), and
  // scaled by 1 / (1 - rate). Without this call the reference is evaluation (no dropout).
  void SetFfnDropout(const DropoutKey& base) { ffn_key_ = base, ffn_dropout_ = true; }

  ReferenceResult Run(const Batch& batch) const {
    const bool bert = m_.objective() == ModelConfig::BERT;
    const int B = batch.batch_size, S = batch.seq_length, d = m_.d_model();
    const std::string p = prefix_;
    ReferenceResult r;
    r.hidden.assign(static_cast<size_t>(B) * S * d, 0.0);
    double mlm_sum = 0, mlm_w = 0, nsp_sum = 0, lm_sum = 0;
    int64_t lm_count = 0;
    const bool pre_ln = m_.norm() == ModelConfig::PRE_LN;
    const double embedding_scale = m_.scale_embeddings() ? std::sqrt(static_cast<double>(d)) : 1;
    for (int b = 0; b < B; ++b) {
      // Embeddings.
      std::vector<std::vector<double>> x(S, std::vector<double>(d));
      for (int s = 0; s < S; ++s) {
        int id = bert ? batch.input_ids[b * S + s] : (s == 0 ? 0 : batch.targets[b * S + s - 1]);
        for (int j = 0; j < d; ++j) {
          x[s][j] = embedding_scale * W(p + "embeddings.word_embeddings.weight")[id * d + j] +
                    Position(s, j);
          if (bert) {
            x[s][j] +=
                W("bert.embeddings.token_type_embeddings.weight")[batch.segment_ids[b * S + s] * d +
                                                                  j];
          }
        }
        if (!pre_ln) x[s] = LayerNorm(x[s], p + "embeddings.LayerNorm.");
      }
      for (int l = 0; l < m_.num_layers(); ++l) x = Layer(x, l, batch, b, bert);
      if (pre_ln) {
        for (int s = 0; s < S; ++s) x[s] = LayerNorm(x[s], p + "encoder.LayerNorm.");
      }
      for (int s = 0; s < S; ++s) {
        std::copy(x[s].begin(), x[s].end(),
                  r.hidden.begin() + (static_cast<size_t>(b) * S + s) * d);
      }
      const double* decoder = m_.tie_output_embedding()
                                  ? W(p + "embeddings.word_embeddings.weight")
                                  : W(bert ? "cls.predictions.decoder.weight" : "lm.output.weight");
      if (bert) {
        const int M = batch.max_predictions;
        for (int j = 0; j < M; ++j) {
          const double w = batch.masked_lm_weights[b * M + j];
          mlm_w += w;
          if (w == 0) continue;
          std::vector<double> t =
              Dense(x[batch.masked_lm_positions[b * M + j]], "cls.predictions.transform.dense.");
          for (double& v : t) v = Act(v);
          t = LayerNorm(t, "cls.predictions.transform.LayerNorm.");
          std::vector<double> logits = Affine(t, decoder, OutputBias(), m_.vocab_size(), d);
          const int label = batch.masked_lm_ids[b * M + j];
          mlm_sum += w * TokenLoss(logits, label);
          r.mlm_correct += ArgMax(logits) == label;
        }
        std::vector<double> pooled = Dense(x[0], "bert.pooler.dense.");
        for (double& v : pooled) v = std::tanh(v);
        std::vector<double> nsp = Dense(pooled, "cls.seq_relationship.");
        nsp_sum += CrossEntropy(nsp, batch.next_sentence_labels[b]);
        r.nsp_correct += ArgMax(nsp) == batch.next_sentence_labels[b];
      } else {
        for (int s = 0; s < S; ++s) {
          const int target = batch.targets[b * S + s];
          if (target == 0) continue;
          std::vector<double> logits = Affine(x[s], decoder, OutputBias(), m_.vocab_size(), d);
          lm_sum += TokenLoss(logits, target);
          r.lm_correct += ArgMax(logits) == target;
          ++lm_count;
        }
      }
    }
    if (bert) {
      r.mlm_loss = mlm_sum / (mlm_w + 1e-5);
      r.nsp_loss = nsp_sum / B;
      r.loss = r.mlm_loss + r.nsp_loss;
    } else {
      r.lm_loss = lm_count > 0 ? lm_sum / lm_count : 0.0;
      r.loss = r.lm_loss;
    }
    return r;
  }

 private:
  const double* W(const std::string& name) const { return tensors_.at(name).values.data(); }

  // The FFN dropout's factor for element i of layer l: 0 or 1 / (1 - rate) (1 without it).
  double FfnKeep(int l, int64_t i) const {
    const float rate = m_.ffn_dropout();
    if (!ffn_dropout_ || rate <= 0) return 1.0;
    const Philox4x32 words = DropoutWords(ffn_key_.seed, ffn_key_.step, static_cast<uint32_t>(l), 3,
                                          static_cast<uint64_t>(i) >> 2);
    const bool keep = words.v[i & 3] >= DropoutThreshold(rate);
    return keep ? 1.0 / (1.0 - static_cast<double>(rate)) : 0.0;
  }

  static double Gelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }

  // The configured activation: GELU's erf form, its tanh form (Hendrycks and Gimpel, eq. for
  // the approximation), or max(v, 0).
  double Act(double v) const {
    switch (m_.activation()) {
      case ModelConfig::RELU:
        return v > 0 ? v : 0.0;
      case ModelConfig::GELU_TANH:
        return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      default:
        return Gelu(v);
    }
  }

  // Position s's embedding, channel j: the learned table's, or the timing signal of
  // tensor2tensor's get_timing_signal_1d: sinusoids of the d/2 timescales 1e4^(i / (d/2 - 1)),
  // i = 0 .. d/2 - 1, sines in the first half, cosines in the second.
  double Position(int s, int j) const {
    const int d = m_.d_model();
    if (m_.position() != ModelConfig::SINUSOIDAL) {
      return W(prefix_ + "embeddings.position_embeddings.weight")[s * d + j];
    }
    const int half = d / 2;
    if (j >= 2 * half) return 0.0;
    const int i = j % half;
    const double timescale = std::pow(1e4, static_cast<double>(i) / std::max(half - 1, 1));
    return j < half ? std::sin(s / timescale) : std::cos(s / timescale);
  }

  const double* OutputBias() const {
    if (!HasOutputBias(m_)) return nullptr;
    return W(m_.objective() == ModelConfig::BERT ? "cls.predictions.bias" : "lm.output.bias");
  }

  // Cross-entropy against the one-hot label, or against tensor2tensor's smoothed target (1 - eps
  // on the label, eps / (V - 1) elsewhere) minus that target's entropy.
  double TokenLoss(const std::vector<double>& logits, int label) const {
    if (smoothing_ == 0) return CrossEntropy(logits, label);
    const double V = static_cast<double>(logits.size());
    const double off = smoothing_ / (V - 1), on = 1 - smoothing_;
    double loss = 0;
    for (size_t c = 0; c < logits.size(); ++c) {
      const double q = static_cast<int>(c) == label ? on : off;
      loss += q * CrossEntropy(logits, static_cast<int>(c)) + q * std::log(q);
    }
    return loss;
  }

  static int ArgMax(const std::vector<double>& v) {
    return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
  }

  static double CrossEntropy(const std::vector<double>& logits, int label) {
    double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
    for (double v : logits) sum += std::exp(v - mx);
    return mx + std::log(sum) - logits[label];
  }

  // y = W x + b with W [out, in] row-major (bias nullptr: none).
  static std::vector<double> Affine(const std::vector<double>& x, const double* w,
                                    const double* bias, int out, int in) {
    std::vector<double> y(out);
    for (int o = 0; o < out; ++o) {
      double acc = bias != nullptr ? bias[o] : 0.0;
      for (int i = 0; i < in; ++i) acc += w[o * in + i] * x[i];
      y[o] = acc;
    }
    return y;
  }

  // The Linear named `prefix` + "weight"/"bias", its shape from the layout.
  std::vector<double> Dense(const std::vector<double>& x, const std::string& prefix) const {
    const std::vector<int64_t>& shape = tensors_.at(prefix + "weight").shape;
    return Affine(x, W(prefix + "weight"), W(prefix + "bias"), static_cast<int>(shape[0]),
                  static_cast<int>(shape[1]));
  }

  std::vector<double> LayerNorm(const std::vector<double>& x, const std::string& prefix) const {
    const int n = static_cast<int>(x.size());
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= n;
    for (double v : x) var += (v - mean) * (v - mean);
    var /= n;
    const double rstd = 1.0 / std::sqrt(var + m_.layer_norm_epsilon());
    std::vector<double> y(n);
    for (int i = 0; i < n; ++i) {
      y[i] = (x[i] - mean) * rstd * W(prefix + "weight")[i] + W(prefix + "bias")[i];
    }
    return y;
  }

  std::vector<std::vector<double>> Layer(const std::vector<std::vector<double>>& x, int l,
                                         const Batch& batch, int b, bool bert) const {
    const int S = static_cast<int>(x.size()), h = m_.num_heads();
    const int dp = m_.head_size() > 0 ? m_.head_size() : m_.d_model() / h;
    const std::string lp = prefix_ + "encoder.layer." + std::to_string(l) + ".";
    const bool pre_ln = m_.norm() == ModelConfig::PRE_LN;
    std::vector<std::vector<double>> q(S), k(S), v(S), ctx(S, std::vector<double>(h * dp, 0.0));
    for (int s = 0; s < S; ++s) {
      const std::vector<double> in = pre_ln ? LayerNorm(x[s], lp + "attention.LayerNorm.") : x[s];
      q[s] = Dense(in, lp + "attention.self.query.");
      k[s] = Dense(in, lp + "attention.self.key.");
      v[s] = Dense(in, lp + "attention.self.value.");
    }
    for (int head = 0; head < h; ++head) {
      for (int i = 0; i < S; ++i) {
        std::vector<double> score(S, -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < S; ++j) {
          const bool visible = bert ? batch.input_mask[b * S + j] != 0 : j <= i;
          if (!visible) continue;
          double dot = 0;
          for (int c = 0; c < dp; ++c) dot += q[i][head * dp + c] * k[j][head * dp + c];
          score[j] = dot / std::sqrt(static_cast<double>(dp));
          mx = std::max(mx, score[j]);
        }
        double z = 0;
        for (int j = 0; j < S; ++j) z += std::isinf(score[j]) ? 0.0 : std::exp(score[j] - mx);
        for (int j = 0; j < S; ++j) {
          if (std::isinf(score[j])) continue;
          const double prob = std::exp(score[j] - mx) / z;
          for (int c = 0; c < dp; ++c) ctx[i][head * dp + c] += prob * v[j][head * dp + c];
        }
      }
    }
    std::vector<std::vector<double>> out(S);
    for (int s = 0; s < S; ++s) {
      std::vector<double> a = Dense(ctx[s], lp + "attention.output.dense.");
      for (size_t j = 0; j < a.size(); ++j) a[j] += x[s][j];
      if (!pre_ln) a = LayerNorm(a, lp + "attention.output.LayerNorm.");
      std::vector<double> u = Dense(pre_ln ? LayerNorm(a, lp + "intermediate.LayerNorm.") : a,
                                    lp + "intermediate.dense.");
      for (size_t j = 0; j < u.size(); ++j) {
        u[j] = Act(u[j]) * FfnKeep(l, (static_cast<int64_t>(b) * S + s) * u.size() + j);
      }
      std::vector<double> f = Dense(u, lp + "output.dense.");
      for (size_t j = 0; j < f.size(); ++j) f[j] += a[j];
      out[s] = pre_ln ? f : LayerNorm(f, lp + "output.LayerNorm.");
    }
    return out;
  }

  ModelConfig m_;
  NamedTensors tensors_;
  std::string prefix_;
  double smoothing_;
  DropoutKey ffn_key_;
  bool ffn_dropout_ = false;
};

}  // namespace testing
}  // namespace headroom

#endif  // HEADROOM_TESTS_MODEL_MODEL_TEST_UTIL_H_
