// Status helpers.
#include "quantkit/status.h"

namespace quantkit {

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_;
}

Status InvalidArgument(std::string message) { return {StatusCode::kInvalidArgument, std::move(message)}; }
Status NotFound(std::string message) { return {StatusCode::kNotFound, std::move(message)}; }
Status Unimplemented(std::string message) { return {StatusCode::kUnimplemented, std::move(message)}; }
Status ResourceExhausted(std::string message) {
  return {StatusCode::kResourceExhausted, std::move(message)};
}
Status Internal(std::string message) { return {StatusCode::kInternal, std::move(message)}; }

}  // namespace quantkit
