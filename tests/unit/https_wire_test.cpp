#include "https_wire.h"

#include <doctest/doctest.h>

using namespace gm::exporter;
using State = HttpResponseParser::State;

TEST_CASE("reporter URLs: host, port and target, and anything but plain https is refused") {
  std::string error;
  auto u = ParseHttpsUrl("https://gm-status-reporter.gm.svc/v1/reports", error);
  REQUIRE(u);
  CHECK(u->host == "gm-status-reporter.gm.svc");
  CHECK(u->port == 443);
  CHECK(u->target == "/v1/reports");
  CHECK(u->HostHeader() == "gm-status-reporter.gm.svc");

  u = ParseHttpsUrl("HTTPS://Reporter.Example:8443?x=1#frag", error);
  REQUIRE(u);
  CHECK(u->host == "reporter.example");
  CHECK(u->port == 8443);
  CHECK(u->target == "/?x=1");
  CHECK(u->HostHeader() == "reporter.example:8443");

  u = ParseHttpsUrl("https://[fd00::1]:9443/r", error);
  REQUIRE(u);
  CHECK(u->host == "fd00::1");
  CHECK(u->HostHeader() == "[fd00::1]:9443");
  CHECK(IsIpLiteral(u->host));
  CHECK(IsIpLiteral("127.0.0.1"));
  CHECK_FALSE(IsIpLiteral("localhost"));

  for (const char* bad :
       {"http://reporter/v1", "reporter:443/v1", "https://", "https:///v1", "https://u:p@host/",
        "https://host:/", "https://host:0/", "https://host:65536/", "https://host:8x/",
        "https://[fd00::1/", "https://[nothost]:1/", "https://host/a b", "https://host/\r\nX: y"}) {
    CAPTURE(bad);
    error.clear();
    CHECK_FALSE(ParseHttpsUrl(bad, error));
    CHECK(error.find("invalid URL") == 0);
  }
}

TEST_CASE("a Content-Length response, fed one byte at a time") {
  const std::string raw =
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
      "11\r\n\r\n{\"ok\":true}";
  HttpResponseParser p;
  for (size_t i = 0; i + 1 < raw.size(); ++i) CHECK(p.Feed(&raw[i], 1) == State::kIncomplete);
  CHECK(p.Feed(&raw.back(), 1) == State::kComplete);
  CHECK(p.status() == 201);
  CHECK(p.body() == "{\"ok\":true}");
}

TEST_CASE("chunked bodies, with extensions and trailers, and interim 100 Continue") {
  const std::string raw =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 403 Forbidden\r\ntransfer-encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
      "GARBAGE AFTER THE END";
  HttpResponseParser p;
  CHECK(p.Feed(raw.data(), raw.size()) == State::kComplete);
  CHECK(p.status() == 403);
  CHECK(p.body() == "hello, world");

  HttpResponseParser split;  // the same, cut in awkward places
  for (size_t i = 0; i < raw.size(); i += 3)
    split.Feed(raw.data() + i, std::min<size_t>(3, raw.size() - i));
  CHECK(split.state() == State::kComplete);
  CHECK(split.body() == "hello, world");
}

TEST_CASE(
    "a body without length ends at close; 204 has none; only the start of a long body is kept") {
  HttpResponseParser p;
  const std::string raw = "HTTP/1.0 200 OK\nServer: x\n\npartial body";  // bare LF tolerated
  CHECK(p.Feed(raw.data(), raw.size()) == State::kIncomplete);
  CHECK(p.Finish() == State::kComplete);
  CHECK(p.status() == 200);
  CHECK(p.body() == "partial body");

  HttpResponseParser empty;
  const std::string no_content = "HTTP/1.1 204 No Content\r\n\r\n";
  CHECK(empty.Feed(no_content.data(), no_content.size()) == State::kComplete);

  HttpResponseParser small(4);
  const std::string big =
      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10\r\n\r\n0123456789";
  CHECK(small.Feed(big.data(), big.size()) == State::kComplete);
  CHECK(small.body() == "0123");
}

TEST_CASE("malformed or cut-short responses are errors that say why") {
  const auto parse = [](const std::string& raw, bool close) {
    HttpResponseParser p;
    p.Feed(raw.data(), raw.size());
    if (close) p.Finish();
    return p;
  };
  CHECK(parse("", true).error() == "connection closed without a response");
  CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true).error() ==
        "connection closed before the response was complete");
  CHECK(parse("SSH-2.0-OpenSSH\r\n\r\n", false).error().find("malformed status line") == 0);
  CHECK(parse("HTTP/1.1 2000 OK\r\n\r\n", false).error().find("malformed status line") == 0);
  CHECK(parse("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false).error().find("malformed header") == 0);
  CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false)
            .error()
            .find("invalid Content-Length") == 0);
  CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).error() ==
        "conflicting Content-Length headers");
  CHECK(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false)
            .error()
            .find("unsupported") == 0);
  CHECK(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false)
            .error()
            .find("invalid chunk size") == 0);
  CHECK(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX", false).error() ==
        "chunk data not followed by CRLF");
  CHECK(parse("HTTP/1.1 200 OK\r\nX: " + std::string(20000, 'a'), false).error() ==
        "response head larger than 16 KiB");
}
