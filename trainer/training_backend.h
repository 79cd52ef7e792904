// TrainingBackend: the ops a training or fine-tuning run computes on, for its device and
// `train.precision`, shared by `headroom train`, `headroom finetune` and `headroom bench`.
//
//  - ops(): the backend itself (MakeOps), seen through the test wrapper when one is given. The
//    optimizer, the gradient reduction and every check run on it: fp32 master weights,
//    gradients and moments.
//  - model_ops(): what the model runs on. With train.precision=bf16 on the CPU, ops() seen
//    through Bf16ActivationOps (kernels/bf16_activation_ops.h): the CPU twin of bf16 activation
//    storage. Otherwise ops() itself (on CUDA, precision=bf16 multiplies in bf16 with fp32
//    storage, MakeOps's matmul_precision).
//
// Example:
//   HR_ASSIGN_OR_RETURN(backend_, TrainingBackend::Create(DeviceKind::kCpu, config.train()));
//   model = Model<float>::Create(config.model(), backend_->model_ops(), limits).value();
//   Optimizer<float> optimizer(*backend_->ops(), model->layout(), ...);
#ifndef HEADROOM_TRAINER_TRAINING_BACKEND_H_
#define HEADROOM_TRAINER_TRAINING_BACKEND_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "config/config.pb.h"
#include "kernels/ops.h"

namespace headroom {

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
  // The backend MakeOps made, unwrapped (e.g. for CUDA-only queries).
  Ops<float>* backend() const { return backend_.get(); }

 private:
  TrainingBackend() = default;

  std::unique_ptr<Ops<float>> backend_;  // MakeOps's
  std::unique_ptr<Ops<float>> wrapper_;  // the test wrapper, around backend_
  std::unique_ptr<Ops<float>> twin_;     // Bf16ActivationOps around ops_, or null
  Ops<float>* ops_ = nullptr;            // wrapper_ or backend_
  Ops<float>* model_ops_ = nullptr;      // twin_ or ops_
};

}  // namespace headroom

#endif  // HEADROOM_TRAINER_TRAINING_BACKEND_H_
