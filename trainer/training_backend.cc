// TrainingBackend (see training_backend.h).
#include "trainer/training_backend.h"

#include <utility>

#include "base/status_macros.h"
#include "kernels/bf16_activation_ops.h"

namespace headroom {

absl::StatusOr<std::unique_ptr<TrainingBackend>> TrainingBackend::Create(DeviceKind device,
                                                                         const TrainConfig& train,
                                                                         const WrapOps& wrap_ops) {
  std::unique_ptr<TrainingBackend> b(new TrainingBackend());
  HR_ASSIGN_OR_RETURN(b->backend_, MakeOps(device, {train.precision()}));
  if (wrap_ops) b->wrapper_ = wrap_ops(b->backend_.get());
  b->ops_ = b->wrapper_ != nullptr ? b->wrapper_.get() : b->backend_.get();
  b->model_ops_ = b->ops_;
  if (train.precision() == "bf16" && device == DeviceKind::kCpu) {
    HR_ASSIGN_OR_RETURN(
        std::unique_ptr<Bf16ActivationOps> twin,
        Bf16ActivationOps::Create(b->ops_, {.fp32_residual = train.fp32_residual()}));
    b->twin_ = std::move(twin);
    b->model_ops_ = b->twin_.get();
  }
  return b;
}

}  // namespace headroom
