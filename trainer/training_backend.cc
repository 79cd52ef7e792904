// TrainingBackend (see training_backend.h).
#include "trainer/training_backend.h"

#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cpu_bf16_ops.h"

namespace headroom {

bool UsesBf16Activations(const TrainConfig& train, DeviceKind device) {
  if (train.precision() != "bf16") return false;
  if (device == DeviceKind::kCpu) return true;
  const char* cuda_bf16 = std::getenv("HEADROOM_CUDA_BF16_ACTIVATIONS");
  return cuda_bf16 != nullptr && std::string(cuda_bf16) == "1";
}

absl::StatusOr<std::unique_ptr<TrainingBackend>> TrainingBackend::Create(DeviceKind device,
                                                                         const TrainConfig& train,
                                                                         const WrapOps& wrap_ops) {
  std::unique_ptr<TrainingBackend> b(new TrainingBackend());
  HR_ASSIGN_OR_RETURN(b->backend_, MakeOps(device, {train.precision()}));
  if (wrap_ops) b->wrapper_ = wrap_ops(b->backend_.get());
  b->ops_ = b->wrapper_ != nullptr ? b->wrapper_.get() : b->backend_.get();
  b->model_ops_ = b->ops_;
  if (train.precision() == "bf16" && device == DeviceKind::kCpu) {
    HR_ASSIGN_OR_RETURN(std::unique_ptr<CpuBf16Ops> bf16,
                        CpuBf16Ops::Create(b->ops_, {.fp32_residual = train.fp32_residual()}));
    b->bf16_ = std::move(bf16);
    b->model_ops_ = b->bf16_.get();
  }
  if (device == DeviceKind::kCuda && b->wrapper_ == nullptr && UsesBf16Activations(train, device)) {
    b->cuda_bf16_ = dynamic_cast<Ops<float, Bf16>*>(b->backend_.get());
  }
  return b;
}

absl::StatusOr<std::unique_ptr<TrainableModel<float>>> TrainingBackend::CreateModel(
    const ModelConfig& model, const ModelLimits& limits, const ModelOptions& options) const {
  using Bf16Model = Model<float, Bf16>;
  // The CUDA bf16 LayerNorm kernels take rows of whole 16-byte packs, at most 2048 wide
  // (kernels/cuda/launch.h): refused here, before a step fails on the device.
  if (cuda_bf16_ != nullptr && (model.d_model() % 8 != 0 || model.d_model() > 2048)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.d_model: ", model.d_model(),
        " is not a multiple of 8 up to 2048, which bf16 activations on CUDA need "
        "(HEADROOM_CUDA_BF16_ACTIVATIONS=1); unset it to train with fp32 activations"));
  }
  if (bf16_ops() != nullptr) {
    HR_ASSIGN_OR_RETURN(std::unique_ptr<Bf16Model> m,
                        Bf16Model::Create(model, bf16_ops(), limits, options));
    return std::unique_ptr<TrainableModel<float>>(std::move(m));
  }
  HR_ASSIGN_OR_RETURN(std::unique_ptr<Model<float>> m,
                      Model<float>::Create(model, model_ops_, limits, options));
  return std::unique_ptr<TrainableModel<float>>(std::move(m));
}

}  // namespace headroom
