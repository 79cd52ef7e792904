// The op set: every computation the model and the optimizer need, on raw device buffers.
//
// `Ops<T>` is implemented once per backend: `CpuOps<float>` and `CpuOps<double>`
// (kernels/cpu/, OpenBLAS for matrix products; double for finite-difference gradient checks) and
// `CudaOps`, an Ops<float> (kernels/cuda/, cuBLASLt and own kernels; also an Ops<float, Bf16>,
// kernels/mixed_ops.h, for bf16 activations). The model
// (model/transformer.h) is written once against this interface. An `Ops` object is the
// execution context: it owns the stream (CUDA) or thread pool (CPU) and library handles, and
// every op is enqueued on it in call order; results are visible to later ops on the same object.
// Host-side reads need CopyToHost (which synchronises).
//
// Conventions, for every op unless it says otherwise:
//  - Pointers are device pointers of this backend (host memory for the CPU backend), allocated
//    with Alloc/AllocInt. Tensors are dense row-major; `rows x cols` means cols is contiguous.
//  - Activation outputs overwrite; parameter gradients (dgamma, dbeta, dbias, dtable, ...)
//    ACCUMULATE (+=), so gradients of shared parameters (the tied embedding) add up and the
//    trainer zeroes the gradient buffer once per optimizer step.
//  - Outputs may alias inputs only where the comment says so.
//  - Token ids, labels and indices are int32. A label < 0 means "no target" (ignored).
//
// Example (CPU):
//   CpuOps<float> ops;
//   float* x = ops.Alloc(rows * cols);
//   ops.GeluForward(x, x_out, rows * cols);
#ifndef HEADROOM_KERNELS_OPS_H_
#define HEADROOM_KERNELS_OPS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace headroom {

enum class DeviceKind { kCpu, kCuda };

enum class Trans { kNo, kYes };

// The pointwise activations of the feed-forward sublayer (ModelConfig.activation):
//   kGelu      x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
//   kGeluTanh  0.5 x (1 + tanh(u)), u = sqrt(2 / pi) (x + 0.044715 x^3) (Google BERT's gelu)
//   kRelu      max(x, 0), with derivative 1 for x > 0 and 0 otherwise (also at 0, as TF)
enum class Activation { kGelu, kGeluTanh, kRelu };

// Identifies one dropout site; with the element index it determines the mask completely
// (Philox-4x32-10, see kernels/philox.h), so CPU and GPU draw identical masks and backward
// recomputes the mask instead of storing it.
struct DropoutKey {
  uint64_t seed = 0;   // run seed
  uint64_t step = 0;   // optimizer step (and micro-batch), so each step draws fresh masks
  uint32_t layer = 0;  // transformer layer; embeddings and heads use distinct values
  uint32_t site = 0;   // which dropout within the layer (attention probs, attention out, ffn out)
};

// Hyper-parameters of one optimizer update (trainer/ fills them per step and tensor range).
struct OptimizerStep {
  float lr = 0;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-6f;
  float weight_decay = 0;        // decoupled: w -= lr * weight_decay * w (0 for LayerNorm/bias)
  bool bias_correction = false;  // divide m, v by (1 - beta^step); Google BERT's Adam has none
  int64_t step = 1;              // 1-based optimizer step, for bias correction
  float grad_scale = 1;          // gradients are multiplied by this first (clipping, averaging)
};

// Ops<T> (= Ops<T, T>) is the op set below. Ops<T, A> with A != T (kernels/mixed_ops.h) adds,
// for a model whose activations are stored as A (bf16), overloads of the activation ops taking
// A-typed buffers.
template <typename T, typename A = T>
class Ops;

template <typename T>
class Ops<T, T> {
 public:
  virtual ~Ops() = default;
  virtual DeviceKind device() const = 0;

  // ---- Errors ---------------------------------------------------------------------------
  // Ops return void, so a failure is recorded instead: status() is OK, or the FIRST failure
  // since construction, which stays (later ones are usually its consequences). CPU: an
  // allocation that failed ("cannot allocate N bytes ..."). CUDA: any failed CUDA/cuBLAS call,
  // including a failed cudaMalloc; asynchronous kernel faults appear only after the next
  // synchronising call (CopyToHost, Synchronize), so check it after one. Callers check it at
  // their synchronising points (model creation, reading the loss, the optimizer step, a
  // checkpoint), and nothing computed after a failure may be trusted. The default (OK) is for
  // wrappers; a wrapper forwards its inner backend's status.
  [[nodiscard]] virtual absl::Status status() const { return absl::OkStatus(); }

  // ---- Memory and transfers -------------------------------------------------------------
  // Allocations are zero-initialised; Free accepts nullptr. A failed allocation returns nullptr
  // and records the failure in status() (it never aborts the process).
  virtual void* AllocBytes(size_t bytes) = 0;
  virtual void Free(void* p) = 0;
  T* Alloc(int64_t n) { return static_cast<T*>(AllocBytes(sizeof(T) * static_cast<size_t>(n))); }
  int32_t* AllocInt(int64_t n) {
    return static_cast<int32_t*>(AllocBytes(sizeof(int32_t) * static_cast<size_t>(n)));
  }
  // Host -> device (asynchronous on CUDA with respect to the host only after the source is
  // consumed: the host buffer may be reused when the call returns).
  virtual void CopyToDevice(void* dst, const void* src, size_t bytes) = 0;
  // Device -> host; waits for all earlier ops.
  virtual void CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  // Device -> device.
  virtual void CopyDevice(void* dst, const void* src, size_t bytes) = 0;
  // Waits until all enqueued work is done.
  virtual void Synchronize() = 0;
  // Bytes in use on the device, for the trainer's memory report: on CUDA, total - free from
  // cudaMemGetInfo (this process's buffers, library workspaces and the CUDA context; since
  // nothing is allocated inside a step, the value after a step is the run's peak). -1 where
  // the backend's memory is host memory (CPU: the trainer reports the process's RSS instead).
  virtual int64_t DeviceMemoryInUse() { return -1; }
  // The largest total of live AllocBytes allocations so far (what PyTorch's
  // max_memory_allocated counts: buffers only, no context or library workspaces); -1 where the
  // backend does not track it (CPU).
  virtual int64_t PeakAllocatedBytes() const { return -1; }

  // ---- Elementwise ----------------------------------------------------------------------
  virtual void Fill(T* x, int64_t n, T value) = 0;
  // x *= alpha.
  virtual void Scale(T* x, int64_t n, T alpha) = 0;
  // out = a + b. `out` may alias `a` or `b` (residual add).
  virtual void Add(const T* a, const T* b, T* out, int64_t n) = 0;
  // y += alpha * x.
  virtual void Axpy(T alpha, const T* x, T* y, int64_t n) = 0;

  // ---- Matrix products ------------------------------------------------------------------
  // C[M,N] = alpha * op(A) * op(B) + beta * C, row-major. op(A) is M x K: A is M x K (lda >= K)
  // for kNo, K x M (lda >= M) for kYes; likewise op(B) is K x N. beta == 0 ignores C's contents.
  virtual void Gemm(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A, int lda,
                    const T* B, int ldb, T beta, T* C, int ldc) = 0;
  // `batch` independent Gemms; matrix i uses A + i*stride_a, B + i*stride_b, C + i*stride_c.
  virtual void GemmStridedBatched(Trans ta, Trans tb, int M, int N, int K, T alpha, const T* A,
                                  int lda, int64_t stride_a, const T* B, int ldb, int64_t stride_b,
                                  T beta, T* C, int ldc, int64_t stride_c, int batch) = 0;

  // y [rows, out] = x [rows, in] w^T + bias: a linear layer, with the weight w [out, in] as
  // stored (model/parameter_layout.h) and bias [out] (nullptr: none). The default is Gemm then
  // AddBias; CUDA adds the bias in cuBLASLt's GEMM epilogue instead, saving a pass over y.
  virtual void Linear(const T* x, const T* w, const T* bias, int rows, int out, int in, T* y) {
    Gemm(Trans::kNo, Trans::kYes, rows, out, in, T(1), x, in, w, in, T(0), y, out);
    if (bias != nullptr) AddBias(y, bias, rows, out);
  }

  // The parameter gradients of Linear: dw [out, in] += dy^T x and dbias [out] += column sums
  // of dy (dbias may be nullptr), for dy [rows, out] and x [rows, in]. The default is Gemm then
  // BiasBackward; CUDA takes the bias gradient from the weight-gradient GEMM's epilogue
  // (cuBLASLt BGRADB, the same read of dy) where an algorithm offers it.
  virtual void LinearBackwardWeights(const T* dy, const T* x, int rows, int out, int in, T* dw,
                                     T* dbias) {
    Gemm(Trans::kYes, Trans::kNo, out, in, rows, T(1), dy, out, x, in, T(1), dw, in);
    if (dbias != nullptr) BiasBackward(dy, rows, out, dbias);
  }

  // x[r, c] += bias[c] for a rows x cols matrix.
  virtual void AddBias(T* x, const T* bias, int64_t rows, int cols) = 0;
  // dbias[c] += sum_r dy[r, c].
  virtual void BiasBackward(const T* dy, int64_t rows, int cols, T* dbias) = 0;

  // y[b, h, s, :] = x[b, s, h, :] for x of shape [B, S, H, D] (splits heads). With
  // inverse = true, the reverse: y[b, s, h, :] = x[b, h, s, :] (merges heads).
  virtual void PermuteHeads(const T* x, T* y, int B, int S, int H, int D, bool inverse) = 0;

  // ---- Normalisation and activations ----------------------------------------------------
  // Per row of x [rows, cols]: y = (x - mean) * rstd * gamma + beta with
  // rstd = 1/sqrt(var + eps) (biased variance). Saves mean and rstd [rows] for backward.
  virtual void LayerNormForward(const T* x, const T* gamma, const T* beta, int64_t rows, int cols,
                                T eps, T* y, T* mean, T* rstd) = 0;
  // dx (overwritten) from dy; dgamma, dbeta accumulate. `dx` may alias `dy`.
  virtual void LayerNormBackward(const T* dy, const T* x, const T* gamma, const T* mean,
                                 const T* rstd, int64_t rows, int cols, T* dx, T* dgamma,
                                 T* dbeta) = 0;

  // The LayerNorm input recomputed from its output: x = (y - beta) / gamma / rstd + mean per
  // row, with the mean and rstd LayerNormForward saved. Lets backward drop the kept input
  // (apex's "memory-efficient" LayerNorm: ModelOptions::layernorm_from_output). Exact up to
  // rounding where |gamma| is not tiny; gamma == 0 gives x = mean +- inf (no information left).
  // `x` may not alias `y`.
  virtual void LayerNormInputFromOutput(const T* y, const T* gamma, const T* beta, const T* mean,
                                        const T* rstd, int64_t rows, int cols, T* x) = 0;

  // The post-LN block's "add & norm": sum = x + dropout(sub) (Dropout's mask and scale under
  // `key`; rate 0 adds sub itself), then y = LayerNorm(sum), mean and rstd as LayerNormForward;
  // sum is what LayerNormBackward needs later. The default is Dropout into sum, Add and
  // LayerNormForward; CUDA does all of it in one pass per row, with the same bits. sum and y
  // may not alias x or sub.
  virtual void ResidualLayerNormForward(const T* x, const T* sub, float rate, const DropoutKey& key,
                                        const T* gamma, const T* beta, int64_t rows, int cols,
                                        T eps, T* sum, T* y, T* mean, T* rstd) {
    const int64_t n = rows * cols;
    Dropout(sub, sum, n, rate, key);
    Add(x, sum, sum, n);
    LayerNormForward(sum, gamma, beta, rows, cols, eps, y, mean, rstd);
  }
  // Its backward: dsum = LayerNormBackward(dy) (dsum may alias dy; dgamma, dbeta accumulate)
  // and, when rate > 0, dsub = dropout(dsum) with the same key (rate 0: dsub is not written and
  // the caller uses dsum for both paths).
  virtual void ResidualLayerNormBackward(const T* dy, const T* sum, const T* gamma, const T* mean,
                                         const T* rstd, int64_t rows, int cols, float rate,
                                         const DropoutKey& key, T* dsum, T* dsub, T* dgamma,
                                         T* dbeta) {
    LayerNormBackward(dy, sum, gamma, mean, rstd, rows, cols, dsum, dgamma, dbeta);
    if (rate > 0) Dropout(dsum, dsub, rows * cols, rate, key);
  }

  // GELU, erf form: y = x * 0.5 * (1 + erf(x / sqrt(2))). `y` may alias `x`.
  virtual void GeluForward(const T* x, T* y, int64_t n) = 0;
  // dx = dy * gelu'(x). `dx` may alias `dy`.
  virtual void GeluBackward(const T* x, const T* dy, T* dx, int64_t n) = 0;
  // y = act(x), for any Activation. `y` may alias `x`.
  virtual void ActivationForward(Activation act, const T* x, T* y, int64_t n) = 0;
  // dx = dy * act'(x). `dx` may alias `dy`.
  virtual void ActivationBackward(Activation act, const T* x, const T* dy, T* dx, int64_t n) = 0;
  // y = tanh(x) (BERT's pooler). `y` may alias `x`.
  virtual void TanhForward(const T* x, T* y, int64_t n) = 0;
  // dx = dy * (1 - y^2), from the forward output y. `dx` may alias `dy`.
  virtual void TanhBackward(const T* y, const T* dy, T* dx, int64_t n) = 0;

  // ---- Attention softmax ----------------------------------------------------------------
  // The attention mask. `segments` [B * Sk] (nullptr: every key is usable) gives each token of
  // sequence b a segment id: 0 is padding, and tokens with equal non-zero ids belong to one
  // segment (one sentence of a packed row; BERT's input_mask is the one-segment case). Key k is
  // visible to query q of sequence b when
  //   seg_k != 0  and  (seg_q == 0  or  seg_k == seg_q)  and  not (causal and k > q),
  // with seg_k = segments[b * Sk + k] and seg_q = segments[b * Sk + q] (self-attention, Sq == Sk;
  // with Sq != Sk queries have no segment, seg_q = 0). So real tokens attend within their
  // segment, padding queries (whose outputs no loss reads) attend to every non-padding key as
  // in BERT, and a packed row of sentences computes what one row per sentence would.
  //
  // For scores [B, H, Sq, Sk]: probs = softmax over the visible keys k of (scale * scores); the
  // others get probability exactly 0. A row with no visible key gets all-zero probabilities.
  // `probs` may alias `scores`.
  virtual void SoftmaxForward(const T* scores, T* probs, int B, int H, int Sq, int Sk, T scale,
                              const int32_t* segments, bool causal) = 0;
  // dscores = scale * probs * (dprobs - sum_k probs * dprobs). `dscores` may alias `dprobs`.
  virtual void SoftmaxBackward(const T* probs, const T* dprobs, T* dscores, int64_t rows, int Sk,
                               T scale) = 0;

  // ---- Fused attention --------------------------------------------------------------------
  // Scaled dot-product attention of H heads of size D over B sequences of S tokens, computed
  // without materialising the [S, S] probabilities of a head (flash-attention style): the same
  // function as PermuteHeads + Q K^T + SoftmaxForward + Dropout + P V + PermuteHeads back, in the
  // token-major layout the projections write: element (b, s, h, j) of q, k, v, out (and dout,
  // dq, dk, dv) is at ((b * S + s) * H + h) * D + j, so no head permutes are needed. The mask
  // (`segments`, causal) and scale are SoftmaxForward's; the dropout mask is Dropout's over the [B,
  // H, S, S] probabilities (element ((b * H + h) * S + q) * S + k, with `key`), so both paths draw
  // the same mask. lse [B, H, S] receives per query log(sum over unmasked keys of exp(scale *
  // q.k)), or +inf where every key is masked (that query's output is 0). `out` may not alias q, k,
  // v.
  virtual void AttentionForward(const T* q, const T* k, const T* v, int B, int S, int H, int D,
                                T scale, const int32_t* segments, bool causal, float dropout_rate,
                                const DropoutKey& key, T* out, T* lse) = 0;
  // Gradients through AttentionForward: given the forward's q, k, v, out and lse and
  // dout = d loss / d out, overwrites dq, dk, dv (same layout). The probabilities are recomputed
  // from q, k and lse. `delta` is scratch of B * H * S elements (it receives, per query,
  // sum_j dout * out, which equals sum_k p * dp with or without dropout).
  virtual void AttentionBackward(const T* q, const T* k, const T* v, const T* out, const T* dout,
                                 const T* lse, int B, int S, int H, int D, T scale,
                                 const int32_t* segments, bool causal, float dropout_rate,
                                 const DropoutKey& key, T* dq, T* dk, T* dv, T* delta) = 0;
  // Whether the model should use the fused attention ops for heads of `head_size` rather than
  // the materialised path. CUDA in bf16 mode does for the head sizes its kernel has (its
  // products are bf16 with fp32 accumulation, whatever the GEMM precision, so the fp32 parity
  // mode keeps the exact path); the CPU does not, because its per-head GEMMs are faster than
  // recomputing the probabilities in backward (CpuOps implements the ops as the reference twin).
  // The fused ops themselves work on every backend for any head size the backend supports.
  virtual bool PrefersFusedAttention(int head_size) const {
    (void)head_size;
    return false;
  }
  // Bytes of device scratch the fused AttentionBackward takes for these sizes beyond its
  // arguments (CUDA: the stored dS where S <= 512); the memory estimate counts them. 0 here.
  virtual int64_t AttentionBackwardScratchBytes(int B, int S, int H, int D) const {
    (void)B, (void)S, (void)H, (void)D;
    return 0;
  }

  // ---- Dropout --------------------------------------------------------------------------
  // y[i] = x[i] * keep(i) / (1 - rate), keep(i) drawn from Philox(key, i) with P(keep) = 1-rate.
  // The same call on the gradient (same key, n) is the backward. rate == 0 copies. `y` may
  // alias `x`.
  virtual void Dropout(const T* x, T* y, int64_t n, float rate, const DropoutKey& key) = 0;

  // ---- Embeddings and row gathers -------------------------------------------------------
  // out[i, :] = table[ids[i], :] (accumulate: out[i, :] += ...), for n ids, rows of width d.
  virtual void EmbeddingForward(const int32_t* ids, const T* table, int64_t n, int d, T* out,
                                bool accumulate) = 0;
  // dtable[ids[i], :] += dout[i, :]. Deterministic: rows with the same id are summed in
  // increasing i order on every backend.
  virtual void EmbeddingBackward(const int32_t* ids, const T* dout, int64_t n, int d,
                                 T* dtable) = 0;
  // dst[i, :] = src[idx[i], :] for i < m (masked-position gather).
  virtual void GatherRows(const T* src, const int32_t* idx, int64_t m, int d, T* dst) = 0;
  // dst[idx[i], :] += src[i, :] (backward of GatherRows; deterministic as EmbeddingBackward).
  virtual void ScatterAddRows(const T* src, const int32_t* idx, int64_t m, int d, T* dst) = 0;

  // ---- Loss -----------------------------------------------------------------------------
  // Softmax cross-entropy of each row of logits [rows, V] against labels[rows]:
  // losses[r] = logsumexp(logits[r]) - logits[r, labels[r]] (0 where labels[r] < 0).
  // When dlogits != nullptr also writes the gradient of sum_r grad_scale * w[r] * losses[r]:
  // dlogits[r] = grad_scale * w[r] * (softmax(logits[r]) - onehot(labels[r])), with w[r] = 1
  // when weights == nullptr and 0 where labels[r] < 0. `dlogits` may alias `logits` (no
  // probabilities are stored).
  virtual void SoftmaxCrossEntropy(const T* logits, const int32_t* labels, const T* weights,
                                   int64_t rows, int V, T* losses, T* dlogits, T grad_scale) = 0;
  // SoftmaxCrossEntropy against tensor2tensor's label-smoothed target (smoothing_cross_entropy):
  // with eps = label_smoothing in [0, 1), c = 1 - eps and u = eps / (V - 1), the target q puts
  // c on labels[r] and u on every other class, and
  //   losses[r] = -sum_v q_v log softmax(logits[r])_v - H(q),  H(q) = -c log c - eps log u,
  // the cross-entropy minus its smallest value (t2t subtracts the same "normalizing" constant;
  // it adds 1e-20 inside log u, which changes nothing at float precision); 0 where labels[r] < 0.
  // The gradient written to dlogits (when non-null) is grad_scale * w[r] * (softmax - q).
  // eps = 0 is SoftmaxCrossEntropy exactly (H = 0). V must be >= 2 when eps > 0.
  // Rows of logits (and dlogits) are ld >= V elements apart: the model's decoder pads the
  // vocabulary (model/parameter_layout.h), and columns V .. ld-1 are no class: excluded from the
  // softmax and the smoothing (probability exactly 0), their dlogits written as exactly 0.
  // ld == V is the unpadded case.
  virtual void LabelSmoothedCrossEntropy(const T* logits, const int32_t* labels, const T* weights,
                                         int64_t rows, int V, int ld, T label_smoothing, T* losses,
                                         T* dlogits, T grad_scale) = 0;

  // ---- Reductions -----------------------------------------------------------------------
  // *out = sum_i a[i] * b[i] (out is a device scalar; accumulated in double on the CPU, in
  // fp32 with a tree reduction on the GPU). Dot(x, x) is the sum of squares for the grad norm.
  virtual void Dot(const T* a, const T* b, int64_t n, T* out) = 0;

  // ---- Optimizers (fp32 master weights and moments, updated in place) ---------------------
  // AdamW over n elements: g' = grad_scale * g; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
  // u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w; w -= lr * u, where m_hat, v_hat are
  // m, v divided by (1 - b^step) when bias_correction, else m, v themselves.
  virtual void AdamW(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s) = 0;
  // LAMB over ONE tensor of n elements: u as in AdamW, then w -= lr * r * u with trust ratio
  // r = ||w|| / ||u|| (r = 1 when either norm is 0). `scratch` holds n elements.
  virtual void Lamb(T* w, const T* g, T* m, T* v, int64_t n, const OptimizerStep& s,
                    T* scratch) = 0;
};

// How MakeOps configures a backend.
struct OpsOptions {
  // Precision of the matrix products: "fp32" (exact fp32), "tf32" (TF32 tensor cores) or "bf16"
  // (bf16 inputs, fp32 accumulation: the config's `train.precision`). Empty: the backend's
  // default (fp32). The CPU backend always computes fp32 products and accepts every value; on
  // CUDA the environment variable HEADROOM_CUDA_GEMM_PRECISION, when set, overrides this (for
  // checks such as scripts/gpu-train-parity).
  std::string matmul_precision;
};

// The float backends available on this machine: always the CPU; CUDA when built with it and a
// GPU is usable. For kCuda otherwise, CudaStatus()'s error (Unavailable: "no CUDA driver",
// "built without CUDA", ...; Internal: a driver that fails); InvalidArgument for an unknown
// precision.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Ops<float>>> MakeOps(DeviceKind device,
                                                                  const OpsOptions& options = {});

// Whether a CUDA GPU can be used, for callers that must tell "there is no GPU here" from "the GPU
// here fails" (tests skip on the first and fail on the second; tests/cuda_skip.h):
//  - OK: MakeOps(kCuda) can work;
//  - Unavailable, with the reason: no GPU is present (built without CUDA; no driver library,
//    i.e. dlopen("libcuda.so.1") fails, as on machines without a GPU where the runtime answers
//    cudaErrorInsufficientDriver; or the driver reports no device);
//  - Internal, with the CUDA error: a driver is present but CUDA fails anyway (a driver older
//    than the runtime, a broken installation).
// Decided once per process.
[[nodiscard]] absl::Status CudaStatus();

// CudaStatus().ok(); when not, `reason` (if non-null) gets its message.
bool CudaAvailable(std::string* reason = nullptr);

// Memory of the current CUDA device (cudaMemGetInfo), for the memory check before a model is
// allocated (trainer/memory_budget.h). CudaStatus()'s error where there is no usable GPU;
// Internal when the query fails.
struct CudaMemory {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};
[[nodiscard]] absl::StatusOr<CudaMemory> CudaMemoryInfo();

}  // namespace headroom

#endif  // HEADROOM_KERNELS_OPS_H_
