// The messages of a failed backend during training; see backend_status.h.
#include "trainer/backend_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace headroom {

absl::Status CheckBackend(const Ops<float>& ops, absl::string_view what, int64_t step) {
  const absl::Status s = ops.status();
  if (s.ok()) return s;
  return absl::Status(
      s.code(), absl::StrCat(step > 0 ? absl::StrCat("step ", step, ": ") : std::string(), what,
                             ": the backend failed: ", s.message(), kStoppedAfterBackendFailure));
}

absl::Status BackendFailureAtStep(const absl::Status& failure, int64_t step) {
  return absl::Status(failure.code(), absl::StrCat("step ", step, ": ", failure.message(),
                                                   kStoppedAfterBackendFailure));
}

}  // namespace headroom
