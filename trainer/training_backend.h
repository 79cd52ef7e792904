// TrainingBackend: the ops a training or fine-tuning run computes on, for its device and
// `train.precision`, shared by `headroom train`, `headroom finetune` and `headroom bench`.
//
//  - ops(): the backend itself (MakeOps), seen through the test wrapper when one is given. The
//    optimizer, the gradient reduction and every check run on it: fp32 master weights,
//    gradients and moments.
//  - model_ops(): what an fp32-storage model (Model<float>) runs on. With train.precision=bf16
//    on the CPU, ops() seen through the bf16 twin's rounding (CpuBf16Ops, whose float ops are
//    Bf16ActivationOps's, kernels/bf16_activation_ops.h). Otherwise ops() itself (on CUDA,
//    precision=bf16 multiplies in bf16 with fp32 storage, MakeOps's matmul_precision).
//  - bf16_ops(): with train.precision=bf16 on the CPU, the same CpuBf16Ops as Ops<float, Bf16>,
//    for a model that stores its activations in bf16 (Model<float, Bf16>). On CUDA the backend
//    itself (CudaOps implements Ops<float, Bf16>) when HEADROOM_CUDA_BF16_ACTIVATIONS=1 is set
//    and no test wrapper is given: that path has not run on a GPU yet
//    (model_transformer_cuda_test's *Bf16Storage* tests check it against the CPU's), so it is asked
//    for, not the default. Null otherwise.
//  - CreateModel: the model `headroom train` trains: Model<float, Bf16> on bf16_ops() where
//    there is one, Model<float> on model_ops() otherwise. On the CPU both compute the same bits
//    (the second on the twin's rounding); the first holds its activations in about half the
//    memory. On CUDA the fp32-storage model rounds no activation (only the GEMMs' inputs).
//
// Example:
//   HR_ASSIGN_OR_RETURN(backend_, TrainingBackend::Create(DeviceKind::kCpu, config.train()));
//   model = backend_->CreateModel(config.model(), limits, options).value();
//   Optimizer<float> optimizer(*backend_->ops(), model->layout(), ...);
#ifndef HEADROOM_TRAINER_TRAINING_BACKEND_H_
#define HEADROOM_TRAINER_TRAINING_BACKEND_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "base/bf16.h"
#include "config/config.pb.h"
#include "kernels/mixed_ops.h"
#include "kernels/ops.h"
#include "model/transformer.h"

namespace headroom {

// Whether `train` on `device` trains with bf16 activation storage (Model<float, Bf16>): on the
// CPU whenever train.precision is "bf16"; on CUDA when HEADROOM_CUDA_BF16_ACTIVATIONS=1 too
// (see bf16_ops() below). The memory estimates count the model that way.
bool UsesBf16Activations(const TrainConfig& train, DeviceKind device);

// Tests only: wraps a backend (e.g. in a FailingOps, kernels/failing_ops.h); the wrapper
// forwards to `backend`, which outlives it.
using WrapOps = std::function<std::unique_ptr<Ops<float>>(Ops<float>* backend)>;

class TrainingBackend {
 public:
  // MakeOps's errors (no usable GPU, an unknown precision).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TrainingBackend>> Create(
      DeviceKind device, const TrainConfig& train, const WrapOps& wrap_ops = nullptr);

  Ops<float>* ops() const { return ops_; }
  Ops<float>* model_ops() const { return model_ops_; }
  Ops<float, Bf16>* bf16_ops() const { return bf16_ != nullptr ? bf16_.get() : cuda_bf16_; }
  // The model on bf16_ops() or model_ops() (see above); Model::Create's errors.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<TrainableModel<float>>> CreateModel(
      const ModelConfig& model, const ModelLimits& limits, const ModelOptions& options) const;
  // The backend MakeOps made, unwrapped (e.g. for CUDA-only queries).
  Ops<float>* backend() const { return backend_.get(); }

 private:
  TrainingBackend() = default;

  std::unique_ptr<Ops<float>> backend_;     // MakeOps's
  std::unique_ptr<Ops<float>> wrapper_;     // the test wrapper, around backend_
  std::unique_ptr<Ops<float, Bf16>> bf16_;  // CpuBf16Ops around ops_, or null
  Ops<float, Bf16>* cuda_bf16_ = nullptr;   // backend_ itself (CUDA, when asked for), or null
  Ops<float>* ops_ = nullptr;               // wrapper_ or backend_
  Ops<float>* model_ops_ = nullptr;         // bf16_ or ops_
};

}  // namespace headroom

#endif  // HEADROOM_TRAINER_TRAINING_BACKEND_H_
