#pragma once
// Typed errors for Kubernetes API answers, built from metav1.Status bodies.

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gm::kube {

/// The parts of a metav1.Status that callers act on.
struct Status {
  int code = 0;        ///< HTTP status; 0 when no answer came (transport error)
  std::string reason;  ///< StatusReason: "NotFound", "AlreadyExists", "Conflict", "Expired", ...
  std::string message;
  std::optional<int> retry_after_seconds;  ///< details.retryAfterSeconds
};

/// The Status of an error answer. A body that is not a Status (a proxy's HTML
/// page, an empty body) still gives the code, a reason derived from it and
/// the start of the body as the message.
Status ParseStatus(int http_code, std::string_view body);

/// The Status carried by a watch ERROR event; `fallback_code` when the
/// object has no usable code.
Status StatusFromObject(const nlohmann::json& object, int fallback_code);

/// A failed request. what() reads like "404 NotFound: pods \"x\" not found".
class ApiError : public std::runtime_error {
 public:
  explicit ApiError(Status status);
  int code() const noexcept { return status_.code; }
  const std::string& reason() const noexcept { return status_.reason; }
  const std::string& message() const noexcept { return status_.message; }
  const Status& status() const noexcept { return status_; }

 private:
  Status status_;
};

// One class per answer a caller handles differently; catch ApiError for the rest.
class Unauthorized : public ApiError {
  using ApiError::ApiError;
};  // 401
class Forbidden : public ApiError {
  using ApiError::ApiError;
};  // 403
class NotFound : public ApiError {
  using ApiError::ApiError;
};  // 404
class Conflict : public ApiError {
  using ApiError::ApiError;
};  // 409: Conflict or AlreadyExists
class Gone : public ApiError {
  using ApiError::ApiError;
};  // 410: Expired, relist
class Invalid : public ApiError {
  using ApiError::ApiError;
};  // 422
class TooManyRequests : public ApiError {
  using ApiError::ApiError;
};  // 429 after the retries
class ServerError : public ApiError {
  using ApiError::ApiError;
};  // 5xx after the retries
/// No HTTP answer: connection failure, TLS failure, timeout, dropped stream.
class TransportError : public ApiError {
  using ApiError::ApiError;
};
/// The request was abandoned because a stop flag was raised.
class Cancelled : public TransportError {
  using TransportError::TransportError;
};

/// Throws the ApiError subclass that matches `status.code`.
[[noreturn]] void ThrowApiError(Status status);

}  // namespace gm::kube
