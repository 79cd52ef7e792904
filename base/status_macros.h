// Status propagation macros.
//
// Debian's Abseil (20220623) has neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN, so they are
// defined once here. Both evaluate their argument exactly once.
//
// Example:
//   absl::StatusOr<Config> Load(const std::string& path) {
//     HR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     HR_RETURN_IF_ERROR(Validate(text));
//     ...
//   }
#ifndef HEADROOM_BASE_STATUS_MACROS_H_
#define HEADROOM_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status of `expr` from the enclosing function if it is not OK.
#define HR_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status hr_status_ = (expr);      \
    if (!hr_status_.ok()) return hr_status_; \
  } while (0)

#define HR_STATUS_CONCAT_INNER_(a, b) a##b
#define HR_STATUS_CONCAT_(a, b) HR_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status if not OK, otherwise moves the
// value into `lhs`, which may be a declaration (`auto x`) or an existing variable.
#define HR_ASSIGN_OR_RETURN(lhs, expr) \
  HR_ASSIGN_OR_RETURN_IMPL_(HR_STATUS_CONCAT_(hr_statusor_, __LINE__), lhs, expr)
#define HR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // HEADROOM_BASE_STATUS_MACROS_H_
