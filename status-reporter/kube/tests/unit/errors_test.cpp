#include "gm/kube/errors.h"

#include <doctest/doctest.h>

#include <string>

using namespace gm::kube;

namespace {

// Which class ThrowApiError picks for `code`.
template <typename E>
bool Throws(int code) {
  Status s;
  s.code = code;
  try {
    ThrowApiError(s);
  } catch (const E&) {
    return true;
  } catch (...) {
  }
  return false;
}

}  // namespace

TEST_CASE("a Status body becomes code, reason, message and retryAfterSeconds") {
  const Status s =
      ParseStatus(404, R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
      "message":"pods \"web\" not found","reason":"NotFound","details":{"name":"web","kind":"pods"},"code":404})");
  CHECK(s.code == 404);
  CHECK(s.reason == "NotFound");
  CHECK(s.message == "pods \"web\" not found");
  CHECK_FALSE(s.retry_after_seconds);

  const Status busy = ParseStatus(
      429,
      R"({"kind":"Status","status":"Failure","message":"Too many requests, please try again later.",
      "reason":"TooManyRequests","details":{"retryAfterSeconds":3},"code":429})");
  CHECK(busy.reason == "TooManyRequests");
  REQUIRE(busy.retry_after_seconds);
  CHECK(*busy.retry_after_seconds == 3);
}

TEST_CASE("a body that is not a Status still gives a usable error") {
  const Status proxy = ParseStatus(502, "<html>Bad Gateway</html>");
  CHECK(proxy.code == 502);
  CHECK(proxy.reason == "Unknown");
  CHECK(proxy.message ==
        "the server responded with the status code 502 but did not return more information: "
        "<html>Bad Gateway</html>");
  const Status empty = ParseStatus(403, "");
  CHECK(empty.reason == "Forbidden");
  CHECK(empty.message ==
        "the server responded with the status code 403 but did not return more information");
  // JSON, but not a Status: the code decides.
  CHECK(ParseStatus(409, R"({"kind":"Pod"})").reason == "Conflict");
  // A long page is cut: the message stays readable.
  CHECK(ParseStatus(500, std::string(5000, 'x')).message.size() < 400);
}

TEST_CASE("a watch ERROR event's Status carries its own code") {
  const auto object = nlohmann::json::parse(
      R"json({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
      "message":"too old resource version: 5 (9)","reason":"Expired","code":410})json");
  const Status s = StatusFromObject(object, 500);
  CHECK(s.code == 410);
  CHECK(s.reason == "Expired");
  CHECK_THROWS_AS(ThrowApiError(s), Gone);
  CHECK(StatusFromObject(nlohmann::json::object(), 500).reason == "InternalError");
  CHECK(StatusFromObject("not an object", 500).code == 500);
}

TEST_CASE("ThrowApiError picks the class by code, what() names code, reason and message") {
  CHECK(Throws<TransportError>(0));
  CHECK(Throws<Unauthorized>(401));
  CHECK(Throws<Forbidden>(403));
  CHECK(Throws<NotFound>(404));
  CHECK(Throws<Conflict>(409));
  CHECK(Throws<Gone>(410));
  CHECK(Throws<Invalid>(422));
  CHECK(Throws<TooManyRequests>(429));
  CHECK(Throws<ServerError>(500));
  CHECK(Throws<ServerError>(503));
  CHECK(Throws<ApiError>(400));
  CHECK_FALSE(Throws<ServerError>(400));
  CHECK_FALSE(Throws<NotFound>(410));

  const ApiError e(ParseStatus(
      409,
      R"({"kind":"Status","reason":"AlreadyExists","message":"pods \"a\" already exists","code":409})"));
  CHECK(std::string(e.what()) == "409 AlreadyExists: pods \"a\" already exists");
  Status transport;
  transport.reason = "TransportError";
  transport.message = "GET /api: Connection refused";
  CHECK(std::string(ApiError(transport).what()) == "transport error: GET /api: Connection refused");
}
