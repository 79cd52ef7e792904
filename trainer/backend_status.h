// What training does with a failed backend (Ops::status(): a CUDA error, a failed allocation,
// an injected failure in tests), shared by `headroom train` (trainer/trainer.cc) and `headroom
// finetune` (finetune/finetune.cc): the status is checked wherever the host has waited for the
// device (the loss read, the gradient reduction, the optimizer step, the checkpoint's copies,
// the set-up), and a failure stops the run with one line naming the step and what was being
// done, so that nothing computed after it is logged, applied or saved.
//
// Example:
//   HR_RETURN_IF_ERROR(CheckBackend(*ops, "the optimizer step", step + 1));
//   // "step 7: the optimizer step: the backend failed: <Ops::status()'s message>; training
//   //  stopped, nothing computed after the failure was saved"
#ifndef HEADROOM_TRAINER_BACKEND_STATUS_H_
#define HEADROOM_TRAINER_BACKEND_STATUS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kernels/ops.h"

namespace headroom {

// The end of every message of a backend failure.
inline constexpr char kStoppedAfterBackendFailure[] =
    "; training stopped, nothing computed after the failure was saved";

// OK when ops.status() is; otherwise its code with the message "step N: <what>: the backend
// failed: <its message>; training stopped, ..." ("step N: " left out when `step` is 0: the
// set-up).
[[nodiscard]] absl::Status CheckBackend(const Ops<float>& ops, absl::string_view what,
                                        int64_t step);

// A backend failure that a call already reported (`failure`, not OK: e.g. the loss read of
// Model::ReadLossStatsOrError) as the error of step `step`: its code, the message "step N:
// <its message>; training stopped, ...".
[[nodiscard]] absl::Status BackendFailureAtStep(const absl::Status& failure, int64_t step);

}  // namespace headroom

#endif  // HEADROOM_TRAINER_BACKEND_STATUS_H_
