#include "gm/kube/client.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

#include "detail/curl_transfer.h"

using namespace gm::kube;
using std::chrono::seconds;

TEST_CASE("Retry-After: whole non-negative seconds only") {
  CHECK(ParseRetryAfter("1") == seconds(1));
  CHECK(ParseRetryAfter(" 10 ") == seconds(10));
  CHECK(ParseRetryAfter("0") == seconds(0));
  CHECK_FALSE(ParseRetryAfter(""));
  CHECK_FALSE(ParseRetryAfter("-1"));
  CHECK_FALSE(ParseRetryAfter("1.5"));
  CHECK_FALSE(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"));
  CHECK_FALSE(ParseRetryAfter("99999999999999999999"));
}

TEST_CASE("Warning headers: the API server's 299 form, lists, dates, and malformed values") {
  using V = std::vector<std::string>;
  CHECK(ParseWarningHeader(R"(299 - "unknown field \"status.memory.memoryOvercommitRatio\"")") ==
        V{R"(unknown field "status.memory.memoryOvercommitRatio")"});
  CHECK(ParseWarningHeader(
            R"(299 - "first", 299 kube-apiserver "second" "Wed, 21 Oct 2015 07:28:00 GMT")") ==
        V{"first", "second"});
  CHECK(ParseWarningHeader("not a warning") == V{"not a warning"});
  CHECK(ParseWarningHeader(R"(299 - "unterminated)") == V{R"(299 - "unterminated)"});
  CHECK(ParseWarningHeader("").empty());
}

TEST_CASE("query values are percent-encoded") {
  CHECK(detail::UrlEncode("app in (a,b),tier!=db") == "app%20in%20%28a%2Cb%29%2Ctier%21%3Ddb");
  CHECK(detail::UrlEncode("metadata.name=x/y&z") == "metadata.name%3Dx%2Fy%26z");
  CHECK(detail::UrlEncode("A-z_0.9~") == "A-z_0.9~");
  CHECK(detail::UrlEncode("\xC3\xA9") == "%C3%A9");
}

TEST_CASE("a client refuses an unusable config and bad requests before any I/O") {
  Config c;
  CHECK_THROWS_AS(Client{c}, std::invalid_argument);  // no server
  c.server = "k8s:6443";
  CHECK_THROWS_AS(Client{c}, std::invalid_argument);
  c.server = "https://127.0.0.1:9";
  c.ca_file = "/nonexistent/ca.crt";
  CHECK_THROWS_AS(Client{c}, std::invalid_argument);
  c.ca_file.clear();
  c.token_file = "/nonexistent/token";
  CHECK_THROWS_AS(Client{c}, std::invalid_argument);
  c.token_file.clear();

  Client client(c);
  RequestSpec spec;
  spec.verb = "HEAD";
  spec.path = "/api";
  CHECK_THROWS_AS(client.Request(spec), std::invalid_argument);
  spec.verb = "GET";
  spec.path = "api/v1";
  CHECK_THROWS_AS(client.Request(spec), std::invalid_argument);
}

TEST_CASE("a stopped client cancels requests without sending them") {
  Config c;
  c.server = "https://127.0.0.1:9";
  int attempts = 0;
  ClientOptions options;
  options.observer = [&](const std::string&, int, double) { ++attempts; };
  Client client(c, options);
  client.Stop();
  CHECK_THROWS_AS(client.Get("/api/v1/pods"), Cancelled);
  CHECK(attempts == 0);

  std::atomic<bool> stop{true};
  Client other(c);
  RequestSpec spec;
  spec.path = "/api";
  spec.stop = &stop;
  CHECK_THROWS_AS(other.Request(spec), Cancelled);
}
