// Status helpers shared by the engine and the server: the two propagation macros and
// a guard that turns C++ exceptions into absl::Status at the engine boundary.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define INGOT_CONCAT_INNER_(a, b) a##b
#define INGOT_CONCAT_(a, b) INGOT_CONCAT_INNER_(a, b)

// Returns from the calling function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status _ingot_status = (expr);             \
    if (!_ingot_status.ok()) return _ingot_status;     \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr())` binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(INGOT_CONCAT_(_ingot_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

namespace ingot {

// Runs `fn` (returning absl::Status or absl::StatusOr<T>) and converts anything thrown
// into a Status, so no exception crosses into the server.
template <typename Fn>
auto CatchExceptions(std::string_view what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string(what) + ": " + e.what());
  }
}

}  // namespace ingot
