#include "gm/kube/errors.h"

#include <utility>

namespace gm::kube {
namespace {

// What client-go reports when the body is not a Status (newUnstructuredResponseError).
std::string ReasonForCode(int code) {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "Unknown";
  }
}

std::string Describe(const Status& s) {
  if (s.code == 0) return "transport error: " + s.message;
  return std::to_string(s.code) + " " + s.reason + ": " + s.message;
}

std::string StringField(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Status StatusFromObject(const nlohmann::json& object, int fallback_code) {
  Status s;
  s.code = fallback_code;
  if (!object.is_object()) {
    s.reason = ReasonForCode(fallback_code);
    s.message = "the server sent an error without a Status";
    return s;
  }
  auto code = object.find("code");
  if (code != object.end() && code->is_number_integer() && code->get<int>() > 0) {
    s.code = code->get<int>();
  }
  s.reason = StringField(object, "reason");
  if (s.reason.empty()) s.reason = ReasonForCode(s.code);
  s.message = StringField(object, "message");
  auto details = object.find("details");
  if (details != object.end() && details->is_object()) {
    auto ra = details->find("retryAfterSeconds");
    if (ra != details->end() && ra->is_number_integer() && ra->get<int>() >= 0) {
      s.retry_after_seconds = ra->get<int>();
    }
  }
  return s;
}

Status ParseStatus(int http_code, std::string_view body) {
  auto parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && StringField(parsed, "kind") == "Status") {
    Status s = StatusFromObject(parsed, http_code);
    s.code = http_code;  // the transport's code is authoritative for a plain answer
    return s;
  }
  Status s;
  s.code = http_code;
  s.reason = ReasonForCode(http_code);
  s.message = "the server responded with the status code " + std::to_string(http_code) +
              " but did not return more information";
  if (!body.empty()) {
    constexpr std::size_t kMaxQuoted = 200;  // enough to recognise a proxy's error page
    s.message += ": " + std::string(body.substr(0, kMaxQuoted));
  }
  return s;
}

ApiError::ApiError(Status status)
    : std::runtime_error(Describe(status)), status_(std::move(status)) {}

void ThrowApiError(Status status) {
  const int code = status.code;
  switch (code) {
    case 0:
      throw TransportError(std::move(status));
    case 401:
      throw Unauthorized(std::move(status));
    case 403:
      throw Forbidden(std::move(status));
    case 404:
      throw NotFound(std::move(status));
    case 409:
      throw Conflict(std::move(status));
    case 410:
      throw Gone(std::move(status));
    case 422:
      throw Invalid(std::move(status));
    case 429:
      throw TooManyRequests(std::move(status));
    default:
      break;
  }
  if (code >= 500 && code <= 599) throw ServerError(std::move(status));
  throw ApiError(std::move(status));
}

}  // namespace gm::kube
