// The memory a training run's model needs, by kind, computed without allocating anything: from
// the model's own accounting (the activation and workspace formula in transformer.h's file
// comment, FixedHeadAttention's in attention.h), for the check before a run allocates
// (trainer/memory_budget.h). ActivationElements reproduces Model::ActivationElements() exactly
// (tests/model/memory_estimate_test.cc holds the two equal on BERT and LM shapes, both attention
// paths and every recompute option; tests/trainer/memory_budget_test.cc holds the whole
// estimate within 2% of the heap bytes the CPU model and optimizer really allocate).
//
// Example:
//   CpuOps<float> ops;
//   MemoryEstimate need = EstimateTrainingMemory(config.model(), limits,
//                                                ModelOptionsFromConfig(config.train()), ops,
//                                                config.train().optimizer());
//   // need.total() bytes on the backend's memory (host RAM for the CPU)
#ifndef HEADROOM_MODEL_MEMORY_ESTIMATE_H_
#define HEADROOM_MODEL_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>

#include "config/config.pb.h"
#include "kernels/ops.h"
#include "model/transformer.h"

namespace headroom {

// Bytes on the backend's memory, per kind (float elements of 4 bytes, int32 ids of 4).
struct MemoryEstimate {
  int64_t parameters = 0;   // the flat parameter buffer
  int64_t gradients = 0;    // the flat gradient buffer
  int64_t optimizer = 0;    // AdamW/LAMB moments m and v (and LAMB's per-tensor scratch)
  int64_t activations = 0;  // kept from Forward for Backward (transformer.h's list)
  int64_t workspace = 0;    // the shared scratch, Backward's [N, d] buffers, the batch's ids, the
                            // backend's attention scratch
  int64_t total() const { return parameters + gradients + optimizer + activations + workspace; }
  // "parameters 1.20 GiB, gradients 1.20 GiB, optimizer state 2.40 GiB, activations ...".
  std::string ToString() const;
};

// Elements of activations a Model created with these arguments keeps (its
// ActivationElements(): kept activations + workspace), with the attention path and the CPU's
// kept dropped probabilities given (`fused_attention`: the layers' path after kAuto is
// resolved; `keep_dropped_probs`: CPU backend and attention dropout > 0).
int64_t ActivationElements(const ModelConfig& model, const ModelLimits& limits,
                           const ModelOptions& options, bool fused_attention,
                           bool keep_dropped_probs);

// Bytes of activations and workspace a Model<float, A> keeps (its ActivationBytes()), A bf16 with
// `bf16_activations`, else float (then ActivationElements * 4).
int64_t ActivationBytes(const ModelConfig& model, const ModelLimits& limits,
                        const ModelOptions& options, bool fused_attention, bool keep_dropped_probs,
                        bool bf16_activations);

// The whole estimate for a Model<float> (Model<float, Bf16> with `bf16_activations`: its typed
// buffers and the bf16 weight mirror) on `ops` (which resolves kAuto and says whether the dropped
// probabilities are kept) and an Optimizer<float> of `optimizer`'s type: two moments, plus LAMB's
// scratch of the largest tensor. `model` need not have its defaults filled in.
MemoryEstimate EstimateTrainingMemory(const ModelConfig& model, const ModelLimits& limits,
                                      const ModelOptions& options, const Ops<float>& ops,
                                      const OptimizerConfig& optimizer,
                                      bool bf16_activations = false);

}  // namespace headroom

#endif  // HEADROOM_MODEL_MEMORY_ESTIMATE_H_
