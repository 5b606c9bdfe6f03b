// Small helpers for absl::Status / absl::StatusOr propagation. Debian's Abseil
// (20220623) ships neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN.
#ifndef HOIST_COMMON_STATUS_MACROS_H_
#define HOIST_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HOIST_CONCAT_INNER_(a, b) a##b
#define HOIST_CONCAT_(a, b) HOIST_CONCAT_INNER_(a, b)

// Returns from the current function with `expr`'s status if it is not OK.
#define HOIST_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status hoist_status_ = (expr);         \
    if (!hoist_status_.ok()) return hoist_status_; \
  } while (0)

// `HOIST_ASSIGN_OR_RETURN(auto x, Foo());` assigns Foo()'s value to x, or
// returns its status from the current function. `lhs` is a declaration
// (`auto x`, `std::string s`) or an lvalue (`m.field`); `expr` is evaluated
// once. One use per line: the temporary is named after __LINE__.
#define HOIST_ASSIGN_OR_RETURN(lhs, expr)                                     \
  HOIST_ASSIGN_OR_RETURN_IMPL_(HOIST_CONCAT_(hoist_statusor_, __LINE__), lhs, \
                               expr)
// bugprone-macro-parentheses is off here: `statusor` is the name being
// declared and `lhs` may be a declaration, and neither may be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define HOIST_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
// NOLINTEND(bugprone-macro-parentheses)

namespace hoist {

// Prefixes `status`'s message with `context` ("context: message"), keeping its
// code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace hoist

#endif  // HOIST_COMMON_STATUS_MACROS_H_
