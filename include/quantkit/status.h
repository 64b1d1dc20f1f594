// Status and StatusOr: how library code reports errors. No exceptions cross the public API.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace quantkit {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // bad model, bad data, bad option: the user's input is wrong (CLI exit 2)
  kNotFound,          // a file, tensor or op that should exist does not (CLI exit 2)
  kUnimplemented,     // valid input that quantkit does not support yet (CLI exit 2)
  kResourceExhausted, // a configured limit (memory) would be exceeded (CLI exit 2)
  kInternal,          // a bug in quantkit (CLI exit 1)
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Prefixes context (a node, a file) so the final message names where it went wrong.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status InvalidArgument(std::string message);
Status NotFound(std::string message);
Status Unimplemented(std::string message);
Status ResourceExhausted(std::string message);
Status Internal(std::string message);

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design
  StatusOr(T value) : value_(std::move(value)) {}           // NOLINT: implicit by design
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace quantkit

#define QK_CONCAT_INNER(a, b) a##b
#define QK_CONCAT(a, b) QK_CONCAT_INNER(a, b)

#define QK_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::quantkit::Status qk_status_ = (expr);      \
    if (!qk_status_.ok()) return qk_status_;     \
  } while (0)

#define QK_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

#define QK_ASSIGN_OR_RETURN(lhs, expr) \
  QK_ASSIGN_OR_RETURN_IMPL(QK_CONCAT(qk_statusor_, __LINE__), lhs, expr)

// Returns InvalidArgument with a formatted message when cond is false.
#define QK_CHECK_ARG(cond, ...)                                          \
  do {                                                                   \
    if (!(cond)) return ::quantkit::InvalidArgument(fmt::format(__VA_ARGS__)); \
  } while (0)
