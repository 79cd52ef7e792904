// The transformer forward and backward over Ops<T>; see transformer.h for the structure, the
// kept activations and the dropout sites.
//
// Backward follows one rule throughout: activation gradients overwrite, parameter gradients
// accumulate (as the op set), and residual connections are added by GEMMs with beta = 1 into
// the gradient buffer that already holds the skip path, instead of separate Add passes.
#include "model/transformer.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/bf16.h"
#include "config/load.h"
#include "kernels/mixed_ops.h"
#include "model/init.h"

namespace headroom {

// The FFN activation of `m` (a validated config names a known one).
Activation ActivationOf(const ModelConfig& m) {
  switch (m.activation()) {
    case ModelConfig::RELU:
      return Activation::kRelu;
    case ModelConfig::GELU_TANH:
      return Activation::kGeluTanh;
    default:
      return Activation::kGelu;
  }
}

// One block: attention sublayer then FFN sublayer, post-LN (BERT) or pre-LN (tensor2tensor; see
// transformer.h). Owns the attention and the block's kept activations (see transformer.h);
// parameters and gradients are views into the model's flat buffers, the GEMM weights into its
// A mirror of the parameters (`weights`, the parameters themselves when A is T).
//
// Types (A = T, or bf16 with T = float): the sublayers' inputs and outputs, q, k, v, the FFN's
// activations and the LayerNorm outputs are A; the residual stream (post-LN: the sums before
// each LayerNorm; pre-LN: h_l and h1), its gradient, the LayerNorm statistics and every
// parameter gradient are T.
template <typename T, typename A>
class EncoderLayer {
 public:
  EncoderLayer(Ops<T, A>* ops, const ModelConfig& m, int index, const ParameterLayout& layout,
               T* params, const A* weights, T* grads, int max_batch, int max_seq,
               const ModelOptions& options)
      : ops_(ops),
        index_(index),
        d_(m.d_model()),
        f_(m.ffn_size()),
        pre_ln_(m.norm() == ModelConfig::PRE_LN),
        act_(ActivationOf(m)),
        recompute_gelu_(options.recompute_gelu),
        ln_from_output_(options.layernorm_from_output),
        eps_(static_cast<T>(m.layer_norm_epsilon())),
        attn_(ops, m.d_model(), m.num_heads(), HeadSize(m), max_batch, max_seq,
              /*keep_dropped_probs=*/ops->device() == DeviceKind::kCpu && m.attention_dropout() > 0,
              options.attention == AttentionPath::kFused) {
    const std::string lp = layout.LayerPrefix(index);
    auto offset = [&](const std::string& name) { return layout.Get(lp + name).offset; };
    // Q, K and V are one [3I, d] weight and [3I] bias starting at the query's (the key and
    // value tensors are views into it, parameter_layout.h).
    const int64_t qkv_w = offset("attention.self.query.weight");
    const int64_t qkv_b = offset("attention.self.query.bias");
    const int64_t out_w = offset("attention.output.dense.weight");
    const int64_t out_b = offset("attention.output.dense.bias");
    ap_ = {weights + qkv_w, weights + qkv_b, weights + out_w, weights + out_b};
    ag_ = {grads + qkv_w, grads + qkv_b, grads + out_w, grads + out_b};
    auto view = [&](const std::string& name, T** p, T** g) {
      *p = params + offset(name);
      *g = grads + offset(name);
    };
    // LN1 belongs to the attention sublayer, LN2 to the FFN (parameter_layout.h names them).
    const std::string ln1 = pre_ln_ ? "attention.LayerNorm." : "attention.output.LayerNorm.";
    const std::string ln2 = pre_ln_ ? "intermediate.LayerNorm." : "output.LayerNorm.";
    view(ln1 + "weight", &ln1_g_, &d_ln1_g_);
    view(ln1 + "bias", &ln1_b_, &d_ln1_b_);
    view(ln2 + "weight", &ln2_g_, &d_ln2_g_);
    view(ln2 + "bias", &ln2_b_, &d_ln2_b_);
    const int64_t b1 = offset("intermediate.dense.bias"), b2 = offset("output.dense.bias");
    const int64_t w1 = offset("intermediate.dense.weight"), w2 = offset("output.dense.weight");
    w1_ = weights + w1;
    w2_ = weights + w2;
    b1_ = weights + b1;
    b2_ = weights + b2;
    db1_ = grads + b1;
    db2_ = grads + b2;
    dw1_ = grads + w1;
    dw2_ = grads + w2;
    AllocateKept(static_cast<int64_t>(max_batch) * max_seq);
  }
  ~EncoderLayer() {
    for (void* p : allocations_) ops_->Free(p);
  }

  // Kept bytes, including the attention's (the layer input and output belong to the model).
  int64_t KeptBytes(int64_t n) const {
    const int64_t a = sizeof(A), t = sizeof(T);
    // Post-LN: h1 (A) and, unless recomputed, the two sums (T); pre-LN: h1 (T) and the two
    // LayerNorm outputs (A).
    const int64_t norm =
        pre_ln_ ? n * d_ * (t + 2 * a) : n * d_ * (a + (ln_from_output_ ? 0 : 2 * t));
    return attn_.KeptBytes() + norm + n * f_ * (recompute_gelu_ ? 1 : 2) * a + 4 * n * t;
  }

  // The workspace: the sublayer output [N, d] (A), then `rest`, which holds the attention's
  // scratch, the FFN's [N, F] activations or gradients (A), and (layernorm_from_output) a
  // LayerNorm input [N, d] (T) passing through.
  static int64_t ScratchBytes(const ModelConfig& m, int max_batch, int max_seq, bool fused) {
    const int64_t n = static_cast<int64_t>(max_batch) * max_seq;
    const int64_t attention = FixedHeadAttention<T, A>::ScratchBytes(m.num_heads(), HeadSize(m),
                                                                     max_batch, max_seq, fused);
    const int64_t a = sizeof(A), t = sizeof(T);
    return AlignTensorBytes(n * m.d_model() * a, sizeof(T)) +
           std::max({n * m.ffn_size() * a, attention, n * m.d_model() * t});
  }

  // The input of this layer's attention in the last Forward, [B*S, d]: the layer input x
  // (post-LN) or LN1(x) (pre-LN).
  const A* AttentionInput(const HiddenState<T, A>& x) const { return pre_ln_ ? ln1_out_ : x.a; }

  // out [N, d] = block(x). scratch: ScratchBytes. The dropout rates (0 in evaluation):
  // attention probabilities, sublayer outputs, and the FFN's activations.
  void Forward(const HiddenState<T, A>& x, int B, int S, const int32_t* key_segments, bool causal,
               float attn_rate, float hidden_rate, float ffn_rate, const DropoutKey& base,
               const HiddenState<T, A>& out, void* scratch) {
    hidden_rate_ = hidden_rate;
    ffn_rate_ = ffn_rate;
    base_ = base;
    B_ = B;
    S_ = S;
    const Workspace w = Carve(scratch);
    if (pre_ln_) {
      ForwardPreLn(x.t, key_segments, causal, attn_rate, out.t, w);
      return;
    }
    const int N = B * S;
    attn_.Forward(ap_, x.a, B, S, key_segments, causal, attn_rate, Key(0), w.sub, w.rest);
    // With layernorm_from_output the LayerNorm inputs only pass through the workspace.
    ops_->ResidualLayerNormForward(x.a, w.sub, hidden_rate, Key(1), ln1_g_, ln1_b_, N, d_, eps_,
                                   ln_from_output_ ? w.rest_t : sum1_, h1_, mean1_, rstd1_);
    Ffn(h1_, w);
    ops_->ResidualLayerNormForward(h1_, w.sub, hidden_rate, Key(2), ln2_g_, ln2_b_, N, d_, eps_,
                                   ln_from_output_ ? w.rest_t : sum2_, out.a, mean2_, rstd2_);
  }

  // dout: d loss / d out [N, d], destroyed. dx [N, d] is overwritten with d loss / d x. x and
  // out are the last Forward's input and output, unchanged.
  void Backward(const HiddenState<T, A>& x, const HiddenState<T, A>& out, T* dout, T* dx,
                void* scratch) {
    const Workspace w = Carve(scratch);
    if (pre_ln_) {
      BackwardPreLn(x.t, dout, dx, w);
      return;
    }
    const int N = B_ * S_;
    const int64_t nd = static_cast<int64_t>(N) * d_;
    T* db = dout;  // becomes d/d b_pre, then d/d h1, then d/d a_pre in place

    const T* b_pre = sum2_;
    if (ln_from_output_) {  // the workspace is free until dg
      ops_->LayerNormInputFromOutput(out.a, ln2_g_, ln2_b_, mean2_, rstd2_, N, d_, w.rest_t);
      b_pre = w.rest_t;
    }
    ops_->ResidualLayerNormBackward(dout, b_pre, ln2_g_, mean2_, rstd2_, N, d_, hidden_rate_,
                                    Key(2), db, w.dsub, d_ln2_g_, d_ln2_b_);
    // d/d h1 = skip path (db) + the FFN's input gradient.
    FfnBackward(SublayerGradient(db, w.dsub, nd), h1_, db, /*beta=*/T(1), w);

    const T* a_pre = sum1_;
    if (ln_from_output_) {  // dg is consumed: the workspace is free until attention's backward
      ops_->LayerNormInputFromOutput(h1_, ln1_g_, ln1_b_, mean1_, rstd1_, N, d_, w.rest_t);
      a_pre = w.rest_t;
    }
    ops_->ResidualLayerNormBackward(db, a_pre, ln1_g_, mean1_, rstd1_, N, d_, hidden_rate_, Key(1),
                                    db, w.dsub, d_ln1_g_, d_ln1_b_);
    const A* dattn = SublayerGradient(db, w.dsub, nd);
    ops_->CopyDevice(dx, db, sizeof(T) * static_cast<size_t>(nd));  // skip path
    attn_.Backward(ap_, ag_, x.a, dattn, dx, w.rest);
  }

 private:
  // The workspace's pieces: the sublayer output or its gradient [N, d] (A) at the start, then
  // `rest`, seen as bytes (the attention's scratch), as A or as T.
  struct Workspace {
    A* sub;
    A* dsub;  // the same buffer, in backward
    void* rest;
    A* rest_a;
    T* rest_t;
  };
  Workspace Carve(void* scratch) const {
    unsigned char* bytes = static_cast<unsigned char*>(scratch);
    const int64_t nd = static_cast<int64_t>(B_) * S_ * d_;
    unsigned char* rest = bytes + AlignTensorBytes(nd * static_cast<int64_t>(sizeof(A)), sizeof(T));
    A* sub = reinterpret_cast<A*>(bytes);
    return {sub, sub, rest, reinterpret_cast<A*>(rest), reinterpret_cast<T*>(rest)};
  }

  // The gradient a post-LN sublayer receives: the dropout's (dsub, written by
  // ResidualLayerNormBackward when the rate is > 0) or the residual one's, db. With A != T the
  // latter is converted into dsub (a rate-0 Dropout), since the sublayer reads A.
  const A* SublayerGradient(const T* db, A* dsub, int64_t nd) {
    if (hidden_rate_ > 0) return dsub;
    if constexpr (std::is_same_v<T, A>) {
      return db;
    } else {
      ops_->Dropout(db, dsub, nd, 0.0f, Key(0));
      return dsub;
    }
  }

  void AllocateKept(int64_t n) {
    auto alloc_a = [&](int64_t count) {
      A* p = static_cast<A*>(ops_->AllocBytes(sizeof(A) * static_cast<size_t>(count)));
      allocations_.push_back(p);
      return p;
    };
    auto alloc_t = [&](int64_t count) {
      T* p = ops_->Alloc(count);
      allocations_.push_back(p);
      return p;
    };
    // Post-LN keeps the LayerNorm inputs (unless recomputed from the outputs); pre-LN keeps the
    // LayerNorm outputs, the sublayers' inputs (its LayerNorm inputs are the residual stream,
    // kept anyway).
    if (pre_ln_) {
      ln1_out_ = alloc_a(n * d_);
      h1_res_ = alloc_t(n * d_);
      ln2_out_ = alloc_a(n * d_);
    } else {
      if (!ln_from_output_) sum1_ = alloc_t(n * d_);
      h1_ = alloc_a(n * d_);
      if (!ln_from_output_) sum2_ = alloc_t(n * d_);
    }
    mean1_ = alloc_t(n);
    rstd1_ = alloc_t(n);
    mean2_ = alloc_t(n);
    rstd2_ = alloc_t(n);
    u_ = alloc_a(n * f_);
    if (!recompute_gelu_) g_ = alloc_a(n * f_);
  }

  DropoutKey Key(uint32_t site) const {
    DropoutKey k = base_;
    k.layer = static_cast<uint32_t>(index_);
    k.site = site;
    return k;
  }

  // w.sub [N, d] = W2 dropout(act(W1 in + b1)) + b2, keeping u (and the dropped activation
  // unless recomputed).
  void Ffn(const A* in, const Workspace& w) {
    const int N = B_ * S_;
    ops_->Linear(in, w1_, b1_, N, f_, d_, u_);
    A* g = recompute_gelu_ ? w.rest_a : g_;  // the workspace is free once attention is done
    ActivationWithDropout(g);
    ops_->Linear(g, w2_, b2_, N, d_, f_, w.sub);
  }

  // g [N, F] = dropout(act(u)), the FFN dropout's mask drawn at site 3.
  void ActivationWithDropout(A* g) {
    const int64_t n = static_cast<int64_t>(B_) * S_ * f_;
    ops_->ActivationForward(act_, u_, g, n);
    if (ffn_rate_ > 0) ops_->Dropout(g, g, n, ffn_rate_, Key(3));
  }

  // The FFN's backward for d loss / d sub = df, its input `in`: accumulates W1, b1, W2, b2
  // gradients and writes din = beta * din + d loss / d in (din: the residual stream's gradient,
  // T, post-LN; the LayerNorm output's, A, pre-LN). w.rest: [N, F] of workspace.
  template <typename D>
  void FfnBackward(const A* df, const A* in, D* din, T beta, const Workspace& w) {
    const int N = B_ * S_;
    // FFN output dense: y = g W2^T + b2. With recompute_gelu, g is recomputed into the
    // workspace that then receives dg.
    A* dg = w.rest_a;  // [N, F]
    const A* g = g_;
    if (recompute_gelu_) {
      ActivationWithDropout(dg);
      g = dg;
    }
    ops_->LinearBackwardWeights(df, g, N, d_, f_, dw2_, db2_);
    ops_->Gemm(Trans::kNo, Trans::kNo, N, f_, d_, T(1), df, d_, w2_, f_, T(0), dg, f_);
    const int64_t nf = static_cast<int64_t>(N) * f_;
    if (ffn_rate_ > 0) ops_->Dropout(dg, dg, nf, ffn_rate_, Key(3));  // the same mask and scale
    ops_->ActivationBackward(act_, u_, dg, dg, nf);
    // Intermediate dense: u = in W1^T + b1; d/d in = du W1.
    ops_->LinearBackwardWeights(dg, in, N, f_, d_, dw1_, db1_);
    ops_->Gemm(Trans::kNo, Trans::kNo, N, d_, f_, T(1), dg, f_, w1_, d_, beta, din, d_);
  }

  // Pre-LN: h1 = x + dropout(Attn(LN1(x))), out = h1 + dropout(FFN(LN2(h1))).
  void ForwardPreLn(const T* x, const int32_t* key_segments, bool causal, float attn_rate, T* out,
                    const Workspace& w) {
    const int N = B_ * S_;
    const int64_t nd = static_cast<int64_t>(N) * d_;
    ops_->LayerNormForward(x, ln1_g_, ln1_b_, N, d_, eps_, ln1_out_, mean1_, rstd1_);
    attn_.Forward(ap_, ln1_out_, B_, S_, key_segments, causal, attn_rate, Key(0), w.sub, w.rest);
    ops_->Dropout(w.sub, w.sub, nd, hidden_rate_, Key(1));
    ops_->Add(x, w.sub, h1_res_, nd);
    ops_->LayerNormForward(h1_res_, ln2_g_, ln2_b_, N, d_, eps_, ln2_out_, mean2_, rstd2_);
    Ffn(ln2_out_, w);
    ops_->Dropout(w.sub, w.sub, nd, hidden_rate_, Key(2));
    ops_->Add(h1_res_, w.sub, out, nd);
  }

  // Pre-LN backward: dout (d/d out) becomes d/d h1 in place, then a scratch for d/d LN1(x).
  void BackwardPreLn(const T* x, T* dout, T* dx, const Workspace& w) {
    const int N = B_ * S_;
    const int64_t nd = static_cast<int64_t>(N) * d_;
    A* dsub = w.dsub;
    // FFN sublayer: out = h1 + dropout(f). d/d LN2 output lands in dsub (df is consumed first).
    const A* df;
    if constexpr (std::is_same_v<T, A>) {
      df = dout;
      if (hidden_rate_ > 0) {
        ops_->Dropout(dout, dsub, nd, hidden_rate_, Key(2));
        df = dsub;
      }
    } else {  // the sublayer reads A: rate 0 converts
      ops_->Dropout(dout, dsub, nd, hidden_rate_, Key(2));
      df = dsub;
    }
    FfnBackward(df, ln2_out_, dsub, /*beta=*/T(0), w);
    ops_->LayerNormBackward(dsub, h1_res_, ln2_g_, mean2_, rstd2_, N, d_, dsub, d_ln2_g_, d_ln2_b_);
    ops_->Add(dout, dsub, dout, nd);  // d/d h1: skip path + through LN2
    // Attention sublayer: h1 = x + dropout(attn). dx starts as the skip path.
    ops_->CopyDevice(dx, dout, sizeof(T) * static_cast<size_t>(nd));
    ops_->Dropout(dout, dsub, nd, hidden_rate_, Key(1));  // rate 0 copies
    ops_->Fill(dout, nd, T(0));                           // receives d/d LN1(x)
    attn_.Backward(ap_, ag_, ln1_out_, dsub, dout, w.rest);
    ops_->LayerNormBackward(dout, x, ln1_g_, mean1_, rstd1_, N, d_, dout, d_ln1_g_, d_ln1_b_);
    ops_->Add(dx, dout, dx, nd);
  }

  Ops<T, A>* ops_;
  int index_, d_, f_;
  bool pre_ln_;
  Activation act_;
  bool recompute_gelu_;
  bool ln_from_output_;  // post-LN LayerNorm inputs recomputed in backward, not kept
  T eps_;
  FixedHeadAttention<T, A> attn_;
  AttentionParams<A> ap_;
  AttentionGrads<T> ag_;
  const A *w1_, *w2_, *b1_, *b2_;  // from the mirror, as the GEMMs read them
  T *ln1_g_, *ln1_b_, *ln2_g_, *ln2_b_;
  T *d_ln1_g_, *d_ln1_b_, *dw1_, *db1_, *dw2_, *db2_, *d_ln2_g_, *d_ln2_b_;
  std::vector<void*> allocations_;
  T *mean1_ = nullptr, *rstd1_ = nullptr, *mean2_ = nullptr, *rstd2_ = nullptr;
  A* u_ = nullptr;
  A* g_ = nullptr;  // activation output, unless recompute_gelu_
  // Post-LN: the LayerNorm inputs x + attention and h1 + FFN (unless ln_from_output_), and h1.
  T* sum1_ = nullptr;
  A* h1_ = nullptr;
  T* sum2_ = nullptr;
  // Pre-LN: the LayerNorm outputs LN1(x), LN2(h1) (the sublayers' inputs) and h1.
  A* ln1_out_ = nullptr;
  T* h1_res_ = nullptr;
  A* ln2_out_ = nullptr;
  int B_ = 0, S_ = 0;
  float hidden_rate_ = 0, ffn_rate_ = 0;
  DropoutKey base_;
};

namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckModel(const ModelConfig& m, const ModelLimits& limits,
                        const ModelOptions& options) {
  if (m.objective() != ModelConfig::BERT && m.objective() != ModelConfig::CAUSAL_LM) {
    return Invalid("model.objective", "must be BERT or CAUSAL_LM");
  }
  const std::pair<const char*, int> positive[] = {
      {"model.vocab_size", m.vocab_size()}, {"model.max_positions", m.max_positions()},
      {"model.num_layers", m.num_layers()}, {"model.d_model", m.d_model()},
      {"model.num_heads", m.num_heads()},   {"model.ffn_size", m.ffn_size()},
      {"max_batch", limits.max_batch},      {"max_seq", limits.max_seq}};
  for (const auto& [name, v] : positive) {
    if (v <= 0) return Invalid(name, absl::StrCat("must be > 0 (got ", v, ")"));
  }
  if (HeadSize(m) <= 0 || (m.head_size() == 0 && m.d_model() % m.num_heads() != 0)) {
    return Invalid("model.head_size", "must be > 0, or 0 with num_heads dividing d_model");
  }
  if (m.objective() == ModelConfig::BERT && m.type_vocab_size() <= 0) {
    return Invalid("model.type_vocab_size", "must be > 0 for BERT");
  }
  if (limits.max_seq > m.max_positions()) {
    return Invalid("max_seq", absl::StrCat(limits.max_seq, " exceeds model.max_positions ",
                                           m.max_positions()));
  }
  if (m.objective() == ModelConfig::BERT &&
      (limits.max_predictions < 0 || limits.max_predictions > limits.max_seq)) {
    return Invalid("max_predictions",
                   absl::StrCat(limits.max_predictions, " is outside [0, max_seq]"));
  }
  if (!(m.layer_norm_epsilon() > 0)) return Invalid("model.layer_norm_epsilon", "must be > 0");
  if (options.layernorm_from_output && m.norm() == ModelConfig::PRE_LN) {
    return Invalid("layernorm_from_output", "applies to POST_LN models only");
  }
  if (!(options.label_smoothing >= 0 && options.label_smoothing < 1)) {
    return Invalid("label_smoothing", absl::StrCat(options.label_smoothing, " is outside [0, 1)"));
  }
  return absl::OkStatus();
}

// tensor2tensor's timing signal (get_timing_signal_1d), [positions, d] row-major, in double:
// channel i < d/2 of position p is sin(p * exp(-i * log(1e4) / max(d/2 - 1, 1))), channel
// d/2 + i is the cos of the same angle, and an odd d leaves the last channel 0.
std::vector<double> TimingSignal(int positions, int d) {
  const int timescales = d / 2;
  const double increment = std::log(1e4) / std::max(timescales - 1, 1);
  std::vector<double> signal(static_cast<size_t>(positions) * d, 0.0);
  for (int p = 0; p < positions; ++p) {
    for (int i = 0; i < timescales; ++i) {
      const double angle = p * std::exp(-i * increment);
      signal[static_cast<size_t>(p) * d + i] = std::sin(angle);
      signal[static_cast<size_t>(p) * d + timescales + i] = std::cos(angle);
    }
  }
  return signal;
}

// A stored value as a number: bf16 widened (exactly) to float.
template <typename V>
double Widen(V v) {
  if constexpr (std::is_same_v<V, Bf16>) {
    return static_cast<float>(v);
  } else {
    return static_cast<double>(v);
  }
}

// Index of the largest of n values (the first on ties, as tf.argmax).
template <typename V>
int ArgMax(const V* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (Widen(v[i]) > Widen(v[best])) best = i;
  }
  return best;
}

}  // namespace

absl::StatusOr<AttentionPath> ParseAttentionPath(const std::string& name) {
  if (name == "auto") return AttentionPath::kAuto;
  if (name == "fused") return AttentionPath::kFused;
  if (name == "materialized") return AttentionPath::kMaterialized;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown attention path '", name, "': use auto, fused or materialized"));
}

ModelOptions ModelOptionsFromConfig(const TrainConfig& train) {
  ModelOptions o;
  absl::StatusOr<AttentionPath> path = ParseAttentionPath(train.attention());
  if (path.ok()) o.attention = *path;  // validated configs name a known path
  o.recompute_gelu = train.recompute_gelu();
  o.layernorm_from_output = train.layernorm_from_output();
  o.label_smoothing = train.label_smoothing();
  return o;
}

template <typename T, typename A>
absl::StatusOr<std::unique_ptr<Model<T, A>>> Model<T, A>::Create(const ModelConfig& model,
                                                                 Ops<T, A>* ops,
                                                                 const ModelLimits& limits,
                                                                 const ModelOptions& options,
                                                                 const TaskHead& head) {
  ExperimentConfig e;
  *e.mutable_model() = model;
  FillDefaults(e);  // the documented defaults of unset optional fields
  ModelLimits l = limits;
  if (e.model().objective() != ModelConfig::BERT) l.max_predictions = 0;
  absl::Status s = CheckModel(e.model(), l, options);
  if (!s.ok()) return s;
  if (head.kind != TaskHead::Kind::kNone && e.model().objective() != ModelConfig::BERT) {
    return Invalid("model.objective", "fine-tuning heads need a BERT model");
  }
  if (head.kind == TaskHead::Kind::kClassifier && head.num_labels < 2) {
    return Invalid("num_labels", absl::StrCat("a classifier needs at least 2 labels (got ",
                                              head.num_labels, ")"));
  }
  // Resolve kAuto: the layers see kFused or kMaterialized.
  ModelOptions resolved = options;
  const bool fused = options.attention == AttentionPath::kFused ||
                     (options.attention == AttentionPath::kAuto &&
                      ops->PrefersFusedAttention(HeadSize(e.model())));
  resolved.attention = fused ? AttentionPath::kFused : AttentionPath::kMaterialized;
  std::unique_ptr<Model<T, A>> m(new Model<T, A>(e.model(), ops, l, resolved, head));
  // An allocation that failed left a null buffer: refuse the model before anything touches it.
  if (absl::Status ops_status = ops->status(); !ops_status.ok()) {
    return absl::Status(
        ops_status.code(),
        absl::StrCat("cannot create the model (", m->layout().num_parameters(), " parameters, ",
                     m->ActivationBytes(), " bytes of activations and workspace for ", l.max_batch,
                     " x ", l.max_seq, " tokens): ", ops_status.message(),
                     "; lower the micro-batch size or the model size, or free memory"));
  }
  m->ops_->Fill(m->ones_,
                std::max<int64_t>(m->limits_.max_batch * m->limits_.max_seq, m->limits_.max_batch),
                T(1));
  return m;
}

template <typename T, typename A>
template <typename U>
U* Model<T, A>::Allocate(int64_t n) {
  U* p =
      static_cast<U*>(ops_->AllocBytes(sizeof(U) * static_cast<size_t>(std::max<int64_t>(n, 1))));
  allocations_.push_back(p);
  return p;
}

template <typename T, typename A>
int32_t* Model<T, A>::AllocateInt(int64_t n) {
  int32_t* p = ops_->AllocInt(std::max<int64_t>(n, 1));
  allocations_.push_back(p);
  return p;
}

template <typename T, typename A>
Model<T, A>::Model(const ModelConfig& model, Ops<T, A>* ops, const ModelLimits& limits,
                   const ModelOptions& options, const TaskHead& head)
    : config_(model),
      ops_(ops),
      limits_(limits),
      layout_(ParameterLayout::ForModel(model, head)),
      bert_(model.objective() == ModelConfig::BERT),
      pre_ln_(model.norm() == ModelConfig::PRE_LN),
      fused_attention_(options.attention == AttentionPath::kFused),
      act_(ActivationOf(model)),
      label_smoothing_(options.label_smoothing),
      d_(model.d_model()),
      V_(model.vocab_size()),
      Vp_(static_cast<int>(PaddedVocabSize(model))),
      eps_(static_cast<T>(model.layer_norm_epsilon())) {
  params_ = Allocate(layout_.total());
  grads_ = Allocate(layout_.total());
  if constexpr (std::is_same_v<T, A>) {
    mirror_ = params_;
  } else {
    mirror_ = Allocate<A>(layout_.total());
    mirrored_update_ = std::make_unique<MirroredUpdateOn<T, A>>(*ops_, params_, mirror_);
  }
  for (int l = 0; l < model.num_layers(); ++l) {
    layers_.push_back(std::make_unique<EncoderLayer<T, A>>(ops, model, l, layout_, params_, mirror_,
                                                           grads_, limits.max_batch, limits.max_seq,
                                                           options));
  }

  AllocateInputs();
  AllocateActivations();
}

template <typename T, typename A>
void Model<T, A>::AllocateInputs() {
  const int64_t B = limits_.max_batch, N = B * limits_.max_seq;
  const int64_t P = B * limits_.max_predictions;
  ids_ = AllocateInt(N);
  positions_ = AllocateInt(N);
  segments_ = AllocateInt(N);
  key_valid_ = AllocateInt(N);
  labels_ = AllocateInt(std::max(N, P));
  gather_rows_ = AllocateInt(P);
  cls_rows_ = AllocateInt(B);
  nsp_labels_ = AllocateInt(B);
  weights_ = Allocate(P);
  ones_ = Allocate(std::max(N, B));  // filled with ones by Create, once every allocation worked
  scalars_ = Allocate(4);

  if (config_.position() == ModelConfig::SINUSOIDAL) {
    const std::vector<double> signal = TimingSignal(config_.max_positions(), d_);
    const std::vector<T> cast(signal.begin(), signal.end());
    timing_signal_ = Allocate(static_cast<int64_t>(cast.size()));
    ops_->CopyToDevice(timing_signal_, cast.data(), sizeof(T) * cast.size());
  }
}

template <typename T, typename A>
void Model<T, A>::AllocateActivations() {
  const int64_t B = limits_.max_batch, N = B * limits_.max_seq;
  const int64_t P = B * limits_.max_predictions;
  const int64_t a = sizeof(A), t = sizeof(T);
  int64_t kept = 0;  // bytes
  // Post-LN: the embedding LayerNorm's input (T, the residual stream) and statistics; pre-LN:
  // the final LayerNorm's output (A) and statistics (its input is h_L).
  if (pre_ln_) {
    final_out_ = Allocate<A>(N * d_);
    final_mean_ = Allocate(N);
    final_rstd_ = Allocate(N);
  } else {
    emb_sum_ = Allocate(N * d_);
    emb_mean_ = Allocate(N);
    emb_rstd_ = Allocate(N);
  }
  kept += N * d_ * (pre_ln_ ? a : t) + 2 * N * t;
  // h_0 .. h_L: LayerNorm outputs (A) post-LN, the residual stream (T) pre-LN.
  for (int l = 0; l <= config_.num_layers(); ++l) {
    HiddenState<T, A> h;
    if (pre_ln_) {
      h.t = Allocate(N * d_);
    } else {
      h.a = Allocate<A>(N * d_);
    }
    if constexpr (std::is_same_v<T, A>) h.a = h.t = (pre_ln_ ? h.t : h.a);
    hidden_.push_back(h);
  }
  kept += (config_.num_layers() + 1) * N * d_ * (pre_ln_ ? t : a);
  for (const auto& layer : layers_) kept += layer->KeptBytes(N);
  const int64_t rows = bert_ ? P : N;
  logits_ = Allocate<A>(rows * Vp_);
  losses_ = Allocate(rows);
  kept += rows * Vp_ * a + rows * t;
  if (bert_) {
    mlm_in_ = Allocate<A>(P * d_);
    mlm_pre_ = Allocate<A>(P * d_);
    mlm_act_ = Allocate<A>(P * d_);
    mlm_mean_ = Allocate(P);
    mlm_rstd_ = Allocate(P);
    mlm_out_ = Allocate<A>(P * d_);
    cls_ = Allocate<A>(B * d_);
    pooled_ = Allocate<A>(B * d_);
    nsp_logits_ = Allocate<A>(2 * B);
    nsp_losses_ = Allocate(B);
    kept += (4 * P * d_ + 2 * B * d_ + 2 * B) * a + (2 * P + B) * t;
  }
  // Workspace: a layer's scratch (also the heads' two [rows, d] buffers), the two [N, d]
  // gradient buffers Backward alternates between (T), and the NSP logit gradient (A). Counted
  // in whole T elements, as allocated.
  const int64_t heads = HeadScratchOffset() + std::max(P, B) * d_ * a;
  const int64_t scratch =
      (std::max(EncoderLayer<T, A>::ScratchBytes(config_, limits_.max_batch, limits_.max_seq,
                                                 fused_attention_),
                heads) +
       t - 1) /
      t;
  scratch_ = Allocate(scratch);
  dh_[0] = Allocate(N * d_);
  dh_[1] = Allocate(N * d_);
  if (bert_) nsp_dlogits_ = Allocate<A>(2 * B);
  activation_bytes_ = kept + scratch * t + 2 * N * d_ * t + (bert_ ? 2 * B * a : 0);
}

template <typename T, typename A>
int64_t Model<T, A>::HeadScratchOffset() const {
  const int64_t rows = std::max(limits_.max_batch * limits_.max_predictions, limits_.max_batch);
  return AlignTensorBytes(rows * d_ * static_cast<int64_t>(sizeof(A)), sizeof(T));
}

template <typename T, typename A>
A* Model<T, A>::HeadScratch(int which) const {
  unsigned char* bytes = static_cast<unsigned char*>(scratch_);
  return reinterpret_cast<A*>(bytes + (which == 0 ? 0 : HeadScratchOffset()));
}

template <typename T, typename A>
Model<T, A>::~Model() {
  layers_.clear();
  for (void* p : allocations_) ops_->Free(p);
}

template <typename T, typename A>
const T* Model<T, A>::P(const std::string& name) const {
  return params_ + layout_.Get(name).offset;
}

template <typename T, typename A>
T* Model<T, A>::G(const std::string& name) {
  return grads_ + layout_.Get(name).offset;
}

template <typename T, typename A>
const A* Model<T, A>::W(const std::string& name) const {
  return mirror_ + layout_.Get(name).offset;
}

template <typename T, typename A>
absl::StatusOr<LossStats> Model<T, A>::Forward(const Batch& batch, bool training,
                                               const DropoutKey& base, bool count_correct) {
  absl::Status s = Enqueue(batch, training, base, count_correct);
  if (!s.ok()) return s;
  return ReadLossStatsOrError();
}

template <typename T, typename A>
absl::Status Model<T, A>::ForwardAsync(const Batch& batch, bool training, const DropoutKey& base) {
  return Enqueue(batch, training, base, /*count_correct=*/false);
}

template <typename T, typename A>
LossStats Model<T, A>::ReadLossStats() {
  absl::StatusOr<LossStats> stats = ReadLossStatsOrError();
  if (stats.ok()) return *stats;
  // The device failed: losses that read as NaN fail every finiteness check downstream.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  LossStats failed;
  failed.loss = failed.mlm_loss = failed.nsp_loss = failed.lm_loss = nan;
  failed.mlm_loss_sum = failed.lm_loss_sum = nan;
  return failed;
}

template <typename T, typename A>
absl::StatusOr<LossStats> Model<T, A>::ReadLossStatsOrError() {
  assert(stats_pending_ && "ReadLossStats needs a preceding Forward or ForwardAsync");
  stats_pending_ = false;
  LossStats stats = pending_;
  T host_scalars[2] = {T(0), T(0)};
  if (bert_) {
    const int B = B_;
    std::vector<A> nsp_logits(2 * B);
    ops_->CopyToHost(nsp_logits.data(), nsp_logits_, sizeof(A) * 2 * B);
    ops_->CopyToHost(host_scalars, scalars_, sizeof(T) * 2);
    for (int b = 0; b < B; ++b) {
      if (ArgMax(nsp_logits.data() + 2 * b, 2) == nsp_labels_host_[b]) ++stats.nsp_correct;
    }
    stats.mlm_loss_sum = static_cast<double>(host_scalars[0]);
    stats.mlm_loss = stats.mlm_loss_sum / (stats.mlm_weight_sum + 1e-5);
    stats.nsp_loss = static_cast<double>(host_scalars[1]) / B;
    stats.loss = stats.mlm_loss + stats.nsp_loss;
  } else {
    ops_->CopyToHost(host_scalars, scalars_, sizeof(T));
    stats.lm_loss_sum = static_cast<double>(host_scalars[0]);
    stats.lm_loss = stats.lm_tokens > 0 ? stats.lm_loss_sum / stats.lm_tokens : 0.0;
    stats.loss = stats.lm_loss;
  }
  // Every op of the step is done now (the copies synchronised): a failure anywhere in it (a
  // kernel fault, a failed copy) shows here, and the numbers above are not to be trusted.
  absl::Status device = ops_->status();
  if (!device.ok()) {
    return absl::Status(device.code(), absl::StrCat("reading the loss back: the backend failed: ",
                                                    device.message()));
  }
  return stats;
}

template <typename T, typename A>
absl::Status Model<T, A>::ForwardEncoder(const Batch& batch, bool training,
                                         const DropoutKey& base) {
  stats_pending_ = false;
  encoder_backward_ready_ = false;
  if (!bert_) {
    return absl::FailedPreconditionError(
        "ForwardEncoder needs a BERT model (the causal LM has no fine-tuning heads)");
  }
  absl::Status valid = ValidateEncoderInputs(config_, batch);
  if (!valid.ok()) return valid;
  absl::Status s = EnqueueEncoder(batch, training, base, /*M=*/0);
  if (!s.ok()) return s;
  encoder_backward_ready_ = training;
  return absl::OkStatus();
}

template <typename T, typename A>
absl::Status Model<T, A>::EnqueueEncoder(const Batch& batch, bool training, const DropoutKey& base,
                                         int M) {
  const int B = batch.batch_size, S = batch.seq_length;
  if (B > limits_.max_batch || S > limits_.max_seq || M > limits_.max_predictions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch of ", B, " x ", S, " with ", M, " predictions exceeds the model's limits ",
        limits_.max_batch, " x ", limits_.max_seq, " with ", limits_.max_predictions));
  }
  const int N = B * S;
  B_ = B;
  S_ = S;
  M_ = M;
  base_key_ = base;
  hidden_rate_ = training ? config_.hidden_dropout() : 0.0f;
  attention_rate_ = training ? config_.attention_dropout() : 0.0f;
  ffn_rate_ = training ? config_.ffn_dropout() : 0.0f;
  backward_ready_ = false;

  // Inputs to the device. Packed LM rows: positions and the input shift restart per sentence.
  const bool packed = !bert_ && !batch.targets_segmentation.empty();
  std::vector<int32_t> host(N);
  for (int i = 0; i < N; ++i) host[i] = i % S;
  ops_->CopyToDevice(positions_, packed ? batch.targets_position.data() : host.data(),
                     sizeof(int32_t) * N);
  attention_segments_ = nullptr;  // the LM's unpacked rows: one sentence each, padding at the end
  if (bert_) {
    ops_->CopyToDevice(ids_, batch.input_ids.data(), sizeof(int32_t) * N);
    ops_->CopyToDevice(segments_, batch.segment_ids.data(), sizeof(int32_t) * N);
    ops_->CopyToDevice(key_valid_, batch.input_mask.data(), sizeof(int32_t) * N);
    attention_segments_ = key_valid_;
  } else {
    for (int i = 0; i < N; ++i) {
      const bool starts = i % S == 0 || (packed && batch.targets_segmentation[i] !=
                                                       batch.targets_segmentation[i - 1]);
      host[i] = starts ? 0 : batch.targets[i - 1];
    }
    ops_->CopyToDevice(ids_, host.data(), sizeof(int32_t) * N);
    if (packed) {
      ops_->CopyToDevice(key_valid_, batch.targets_segmentation.data(), sizeof(int32_t) * N);
      attention_segments_ = key_valid_;
    }
  }

  EmbeddingsForward();
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l]->Forward(Hidden(static_cast<int>(l)), B, S, attention_segments_,
                        /*causal=*/!bert_, attention_rate_, hidden_rate_, ffn_rate_, base,
                        Hidden(static_cast<int>(l) + 1), scratch_);
  }

  if (pre_ln_) {
    ops_->LayerNormForward(hidden_.back().t, P(layout_.prefix() + "encoder.LayerNorm.weight"),
                           P(layout_.prefix() + "encoder.LayerNorm.bias"), N, d_, eps_, final_out_,
                           final_mean_, final_rstd_);
  }

  return absl::OkStatus();
}

template <typename T, typename A>
absl::Status Model<T, A>::Enqueue(const Batch& batch, bool training, const DropoutKey& base,
                                  bool count_correct) {
  stats_pending_ = false;
  encoder_backward_ready_ = false;
  absl::Status valid = ValidateBatch(config_, batch);
  if (!valid.ok()) return valid;
  absl::Status s = EnqueueEncoder(batch, training, base, bert_ ? batch.max_predictions : 0);
  if (!s.ok()) return s;

  LossStats stats;
  if (bert_) {
    ForwardBertHeads(batch, training, count_correct, stats);
  } else {
    ForwardLmHead(batch, training, count_correct, stats);
  }
  backward_ready_ = training;
  pending_ = stats;
  stats_pending_ = true;
  return absl::OkStatus();
}

template <typename T, typename A>
std::vector<T> Model<T, A>::AttentionInputToHost(int l) const {
  std::vector<A> stored(static_cast<size_t>(B_) * S_ * d_);
  ops_->CopyToHost(stored.data(), attention_input(l), sizeof(A) * stored.size());
  std::vector<T> out(stored.size());
  for (size_t i = 0; i < stored.size(); ++i) out[i] = static_cast<T>(Widen(stored[i]));
  return out;
}

template <typename T, typename A>
const A* Model<T, A>::attention_input(int l) const {
  return layers_.at(static_cast<size_t>(l))->AttentionInput(Hidden(l));
}

template <typename T, typename A>
const A* Model<T, A>::OutputBias() const {
  if (!HasOutputBias(config_)) return nullptr;
  return W(bert_ ? "cls.predictions.bias" : "lm.output.bias");
}

template <typename T, typename A>
T* Model<T, A>::OutputBiasGrad() {
  if (!HasOutputBias(config_)) return nullptr;
  return G(bert_ ? "cls.predictions.bias" : "lm.output.bias");
}

template <typename T, typename A>
const T* Model<T, A>::PositionTable() const {
  return timing_signal_ != nullptr ? timing_signal_
                                   : P(layout_.prefix() + "embeddings.position_embeddings.weight");
}

template <typename T, typename A>
void Model<T, A>::EmbeddingsForward() {
  const std::string& p = layout_.prefix();
  DropoutKey k = base_key_;
  k.layer = kEmbeddingDropoutLayer;
  k.site = 0;
  // Post-LN sums into the LayerNorm's input; pre-LN straight into h_0.
  T* sum = pre_ln_ ? hidden_[0].t : emb_sum_;
  const T word_scale = config_.scale_embeddings() ? static_cast<T>(std::sqrt(d_)) : T(1);
  const int32_t* segments = bert_ ? segments_ : nullptr;
  const T* types = bert_ ? P("bert.embeddings.token_type_embeddings.weight") : nullptr;
  const T* gamma = pre_ln_ ? nullptr : P(p + "embeddings.LayerNorm.weight");
  const T* beta = pre_ln_ ? nullptr : P(p + "embeddings.LayerNorm.bias");
  const T* word = P(p + "embeddings.word_embeddings.weight");
  if constexpr (std::is_same_v<T, A>) {  // the op-by-op sequence
    EmbeddingLayerNormBySteps(*ops_, ids_, word, word_scale, positions_, PositionTable(), segments,
                              types, B_ * S_, d_, gamma, beta, eps_, hidden_rate_, k, sum,
                              hidden_[0].a, emb_mean_, emb_rstd_);
  } else {  // one op (one pass on a GPU)
    ops_->EmbeddingLayerNormForward(ids_, word, word_scale, positions_, PositionTable(), segments,
                                    types, B_ * S_, d_, gamma, beta, eps_, hidden_rate_, k, sum,
                                    hidden_[0].a, emb_mean_, emb_rstd_);
  }
}

template <typename T, typename A>
void Model<T, A>::EmbeddingsBackward(T* dh) {
  const int N = B_ * S_;
  const int64_t nd = static_cast<int64_t>(N) * d_;
  const std::string& p = layout_.prefix();
  if (hidden_rate_ > 0) {
    DropoutKey k = base_key_;
    k.layer = kEmbeddingDropoutLayer;
    k.site = 0;
    ops_->Dropout(dh, dh, nd, hidden_rate_, k);
  }
  if (!pre_ln_) {
    ops_->LayerNormBackward(dh, emb_sum_, P(p + "embeddings.LayerNorm.weight"), emb_mean_,
                            emb_rstd_, N, d_, dh, G(p + "embeddings.LayerNorm.weight"),
                            G(p + "embeddings.LayerNorm.bias"));
  }
  if (timing_signal_ == nullptr) {
    ops_->EmbeddingBackward(positions_, dh, N, d_, G(p + "embeddings.position_embeddings.weight"));
  }
  if (bert_) {
    ops_->EmbeddingBackward(segments_, dh, N, d_,
                            G("bert.embeddings.token_type_embeddings.weight"));
  }
  // The token table last: its rows get sqrt(d) * dh when scaled (dh is not needed after).
  if (config_.scale_embeddings()) ops_->Scale(dh, nd, static_cast<T>(std::sqrt(d_)));
  ops_->EmbeddingBackward(ids_, dh, N, d_, G(p + "embeddings.word_embeddings.weight"));
}

template <typename T, typename A>
void Model<T, A>::ForwardBertHeads(const Batch& batch, bool training, bool count_correct,
                                   LossStats& stats) {
  const int B = B_, S = S_, M = M_, Pn = B * M;
  const A* h = encoder_output();
  const A* decoder = config_.tie_output_embedding() ? W("bert.embeddings.word_embeddings.weight")
                                                    : W("cls.predictions.decoder.weight");

  // Stage the head inputs: flat rows of the masked positions, labels (-1 on padding slots, so
  // they contribute nothing), weights, [CLS] rows and NSP labels.
  std::vector<int32_t> rows(Pn), labels(Pn), cls(B);
  std::vector<T> weights(Pn);
  double weight_sum = 0;
  for (int i = 0; i < Pn; ++i) {
    const int b = i / std::max(M, 1);
    rows[i] = b * S + batch.masked_lm_positions[i];
    const float w = batch.masked_lm_weights[i];
    weights[i] = static_cast<T>(w);
    labels[i] = w > 0 ? batch.masked_lm_ids[i] : -1;
    weight_sum += w;
    stats.mlm_count += w > 0 ? 1 : 0;
  }
  for (int b = 0; b < B; ++b) cls[b] = b * S;
  stats.mlm_weight_sum = weight_sum;
  stats.nsp_count = B;

  // MLM: transform and decoder at the masked positions only.
  if (Pn > 0) {
    ops_->CopyToDevice(gather_rows_, rows.data(), sizeof(int32_t) * Pn);
    ops_->CopyToDevice(labels_, labels.data(), sizeof(int32_t) * Pn);
    ops_->CopyToDevice(weights_, weights.data(), sizeof(T) * Pn);
    ops_->GatherRows(h, gather_rows_, Pn, d_, mlm_in_);
    ops_->Linear(mlm_in_, W("cls.predictions.transform.dense.weight"),
                 W("cls.predictions.transform.dense.bias"), Pn, d_, d_, mlm_pre_);
    ops_->ActivationForward(act_, mlm_pre_, mlm_act_, static_cast<int64_t>(Pn) * d_);
    ops_->LayerNormForward(mlm_act_, P("cls.predictions.transform.LayerNorm.weight"),
                           P("cls.predictions.transform.LayerNorm.bias"), Pn, d_, eps_, mlm_out_,
                           mlm_mean_, mlm_rstd_);
    // Logits over the padded vocabulary [Pn, Vp]; only the first V columns are classes.
    ops_->Linear(mlm_out_, decoder, OutputBias(), Pn, Vp_, d_, logits_);
    if (count_correct) {
      std::vector<A> host_logits(static_cast<size_t>(Pn) * Vp_);
      ops_->CopyToHost(host_logits.data(), logits_, sizeof(A) * host_logits.size());
      stats.mlm_correct = 0;
      for (int i = 0; i < Pn; ++i) {
        if (labels[i] >= 0 &&
            ArgMax(host_logits.data() + static_cast<size_t>(i) * Vp_, V_) == labels[i]) {
          ++stats.mlm_correct;
        }
      }
    }
    // Google BERT: sum(w * loss) / (sum(w) + 1e-5); the gradient lands in the logits buffer.
    const T mlm_scale = static_cast<T>(1.0 / (weight_sum + 1e-5));
    ops_->LabelSmoothedCrossEntropy(logits_, labels_, weights_, Pn, V_, Vp_, Smoothing(training),
                                    losses_, training ? logits_ : nullptr, mlm_scale);
    ops_->Dot(weights_, losses_, Pn, scalars_);
  } else {
    ops_->Fill(scalars_, 1, T(0));
  }

  // NSP on the pooled [CLS] token.
  ops_->CopyToDevice(cls_rows_, cls.data(), sizeof(int32_t) * B);
  ops_->CopyToDevice(nsp_labels_, batch.next_sentence_labels.data(), sizeof(int32_t) * B);
  ops_->GatherRows(h, cls_rows_, B, d_, cls_);
  ops_->Linear(cls_, W("bert.pooler.dense.weight"), W("bert.pooler.dense.bias"), B, d_, d_,
               pooled_);
  ops_->TanhForward(pooled_, pooled_, static_cast<int64_t>(B) * d_);
  ops_->Linear(pooled_, W("cls.seq_relationship.weight"), W("cls.seq_relationship.bias"), B, 2, d_,
               nsp_logits_);
  ops_->SoftmaxCrossEntropy(nsp_logits_, nsp_labels_, nullptr, B, 2, nsp_losses_,
                            training ? nsp_dlogits_ : nullptr, static_cast<T>(1.0 / B));
  ops_->Dot(nsp_losses_, ones_, B, scalars_ + 1);
  // The losses and NSP accuracy are read back by ReadLossStats.
  nsp_labels_host_ = batch.next_sentence_labels;
}

template <typename T, typename A>
void Model<T, A>::ForwardLmHead(const Batch& batch, bool training, bool count_correct,
                                LossStats& stats) {
  const int N = B_ * S_;
  const A* decoder = config_.tie_output_embedding() ? W("lm.embeddings.word_embeddings.weight")
                                                    : W("lm.output.weight");
  std::vector<int32_t> labels(N);
  for (int i = 0; i < N; ++i) {
    labels[i] = batch.targets[i] != 0 ? batch.targets[i] : -1;
    stats.lm_tokens += batch.targets[i] != 0 ? 1 : 0;
  }
  ops_->CopyToDevice(labels_, labels.data(), sizeof(int32_t) * N);
  // Logits over the padded vocabulary [N, Vp]; only the first V columns are classes.
  ops_->Linear(encoder_output(), decoder, OutputBias(), N, Vp_, d_, logits_);
  if (count_correct) {
    std::vector<A> host_logits(static_cast<size_t>(N) * Vp_);
    ops_->CopyToHost(host_logits.data(), logits_, sizeof(A) * host_logits.size());
    stats.lm_correct = 0;
    for (int i = 0; i < N; ++i) {
      if (labels[i] >= 0 &&
          ArgMax(host_logits.data() + static_cast<size_t>(i) * Vp_, V_) == labels[i]) {
        ++stats.lm_correct;
      }
    }
  }
  const T scale = stats.lm_tokens > 0 ? static_cast<T>(1.0 / stats.lm_tokens) : T(0);
  ops_->LabelSmoothedCrossEntropy(logits_, labels_, nullptr, N, V_, Vp_, Smoothing(training),
                                  losses_, training ? logits_ : nullptr, scale);
  ops_->Dot(losses_, ones_, N, scalars_);  // read back by ReadLossStats
}

template <typename T, typename A>
void Model<T, A>::Backward(T loss_scale, const BackwardHook& hook) {
  assert(backward_ready_ && "Backward needs a preceding Forward with training = true");
  backward_ready_ = false;
  T* dh = dh_[0];
  if (bert_) {
    BackwardBertHeads(loss_scale, dh);
  } else {
    BackwardLmHead(loss_scale, dh);
  }
  BackwardThroughEncoder(dh, hook);
}

template <typename T, typename A>
void Model<T, A>::BackwardEncoder(const BackwardHook& hook) {
  assert(encoder_backward_ready_ &&
         "BackwardEncoder needs a preceding ForwardEncoder with training = true");
  encoder_backward_ready_ = false;
  BackwardThroughEncoder(dh_[0], hook);
}

template <typename T, typename A>
void Model<T, A>::BackwardThroughEncoder(T* dh, const BackwardHook& hook) {
  const int B = B_, S = S_, N = B * S;
  if (pre_ln_) {  // the final LayerNorm: d/d h_L in place
    const std::string& p = layout_.prefix();
    ops_->LayerNormBackward(dh, hidden_.back().t, P(p + "encoder.LayerNorm.weight"), final_mean_,
                            final_rstd_, N, d_, dh, G(p + "encoder.LayerNorm.weight"),
                            G(p + "encoder.LayerNorm.bias"));
  }
  if (hook) hook(static_cast<int>(layers_.size()));
  for (int l = static_cast<int>(layers_.size()) - 1; l >= 0; --l) {
    T* dx = dh == dh_[0] ? dh_[1] : dh_[0];
    layers_[l]->Backward(Hidden(l), Hidden(l + 1), dh, dx, scratch_);
    dh = dx;
    if (hook) hook(l);
  }
  EmbeddingsBackward(dh);
  if (hook) hook(-1);
}

template <typename T, typename A>
void Model<T, A>::BackwardBertHeads(T loss_scale, T* dhidden) {
  const int B = B_, Pn = B_ * M_, N = B_ * S_;
  ops_->Fill(dhidden, static_cast<int64_t>(N) * d_, T(0));
  A* s1 = HeadScratch(0);
  A* s2 = HeadScratch(1);
  const bool tied = config_.tie_output_embedding();
  const A* decoder =
      tied ? W("bert.embeddings.word_embeddings.weight") : W("cls.predictions.decoder.weight");
  T* ddecoder =
      tied ? G("bert.embeddings.word_embeddings.weight") : G("cls.predictions.decoder.weight");

  if (Pn > 0) {
    A* dlogits = logits_;  // the cross-entropy left the gradient here
    // The padded columns' gradient is 0, so the padded decoder rows and bias stay 0.
    if (loss_scale != T(1)) ops_->Scale(dlogits, static_cast<int64_t>(Pn) * Vp_, loss_scale);
    ops_->LinearBackwardWeights(dlogits, mlm_out_, Pn, Vp_, d_, ddecoder, OutputBiasGrad());
    ops_->Gemm(Trans::kNo, Trans::kNo, Pn, d_, Vp_, T(1), dlogits, Vp_, decoder, d_, T(0), s1, d_);
    ops_->LayerNormBackward(s1, mlm_act_, P("cls.predictions.transform.LayerNorm.weight"),
                            mlm_mean_, mlm_rstd_, Pn, d_, s1,
                            G("cls.predictions.transform.LayerNorm.weight"),
                            G("cls.predictions.transform.LayerNorm.bias"));
    ops_->ActivationBackward(act_, mlm_pre_, s1, s1, static_cast<int64_t>(Pn) * d_);
    ops_->LinearBackwardWeights(s1, mlm_in_, Pn, d_, d_,
                                G("cls.predictions.transform.dense.weight"),
                                G("cls.predictions.transform.dense.bias"));
    ops_->Gemm(Trans::kNo, Trans::kNo, Pn, d_, d_, T(1), s1, d_,
               W("cls.predictions.transform.dense.weight"), d_, T(0), s2, d_);
    ops_->ScatterAddRows(s2, gather_rows_, Pn, d_, dhidden);
  }

  A* dnsp = nsp_dlogits_;
  if (loss_scale != T(1)) ops_->Scale(dnsp, 2 * B, loss_scale);
  ops_->LinearBackwardWeights(dnsp, pooled_, B, 2, d_, G("cls.seq_relationship.weight"),
                              G("cls.seq_relationship.bias"));
  ops_->Gemm(Trans::kNo, Trans::kNo, B, d_, 2, T(1), dnsp, 2, W("cls.seq_relationship.weight"), d_,
             T(0), s1, d_);
  ops_->TanhBackward(pooled_, s1, s1, static_cast<int64_t>(B) * d_);
  ops_->LinearBackwardWeights(s1, cls_, B, d_, d_, G("bert.pooler.dense.weight"),
                              G("bert.pooler.dense.bias"));
  ops_->Gemm(Trans::kNo, Trans::kNo, B, d_, d_, T(1), s1, d_, W("bert.pooler.dense.weight"), d_,
             T(0), s2, d_);
  ops_->ScatterAddRows(s2, cls_rows_, B, d_, dhidden);
}

template <typename T, typename A>
void Model<T, A>::BackwardLmHead(T loss_scale, T* dhidden) {
  const int N = B_ * S_;
  const bool tied = config_.tie_output_embedding();
  const A* decoder = tied ? W("lm.embeddings.word_embeddings.weight") : W("lm.output.weight");
  T* ddecoder = tied ? G("lm.embeddings.word_embeddings.weight") : G("lm.output.weight");
  A* dlogits = logits_;
  if (loss_scale != T(1)) ops_->Scale(dlogits, static_cast<int64_t>(N) * Vp_, loss_scale);
  ops_->LinearBackwardWeights(dlogits, encoder_output(), N, Vp_, d_, ddecoder, OutputBiasGrad());
  ops_->Gemm(Trans::kNo, Trans::kNo, N, d_, Vp_, T(1), dlogits, Vp_, decoder, d_, T(0), dhidden,
             d_);
}

template <typename T, typename A>
void Model<T, A>::ZeroGrads() {
  ops_->Fill(grads_, layout_.total(), T(0));
}

template <typename T, typename A>
void Model<T, A>::InitParameters(uint64_t seed) {
  std::vector<double> w = InitialParameters(layout_, config_, seed);
  std::vector<T> cast(w.begin(), w.end());
  CopyParametersToDevice(cast.data());
}

template <typename T, typename A>
void Model<T, A>::CopyParametersToHost(T* dst) const {
  ops_->CopyToHost(dst, params_, sizeof(T) * static_cast<size_t>(layout_.total()));
}

template <typename T, typename A>
void Model<T, A>::CopyParametersToDevice(const T* src) {
  ops_->CopyToDevice(params_, src, sizeof(T) * static_cast<size_t>(layout_.total()));
  ParametersUpdated();
}

template <typename T, typename A>
void Model<T, A>::ParametersUpdated() {
  if constexpr (!std::is_same_v<T, A>) ops_->Convert(params_, mirror_, layout_.total());
}

template <typename T, typename A>
void Model<T, A>::CopyGradientsToHost(T* dst) const {
  ops_->CopyToHost(dst, grads_, sizeof(T) * static_cast<size_t>(layout_.total()));
}

template <typename T, typename A>
std::vector<T> Model<T, A>::GetParameters() const {
  std::vector<T> v(static_cast<size_t>(layout_.total()));
  CopyParametersToHost(v.data());
  return v;
}

template <typename T, typename A>
std::vector<T> Model<T, A>::GetGradients() const {
  std::vector<T> v(static_cast<size_t>(layout_.total()));
  CopyGradientsToHost(v.data());
  return v;
}

template <typename T, typename A>
void Model<T, A>::SetParameters(const std::vector<T>& values) {
  assert(static_cast<int64_t>(values.size()) == layout_.total());
  CopyParametersToDevice(values.data());
}

template class Model<float>;
template class Model<double>;
template class Model<float, Bf16>;

}  // namespace headroom
