#include "https_wire.h"

#include <doctest/doctest.h>

using namespace gm::exporter;
using namespace std::chrono_literals;

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

TEST_CASE("the reply keeps its first bytes only, and a flood is refused past the limit") {
  BoundedBody b(4, 10);
  CHECK(b.Append("ab", 2));
  CHECK(b.Append("cdef", 4));
  CHECK(b.kept() == "abcd");
  CHECK(b.Append("ghij", 4));  // exactly the limit
  CHECK_FALSE(b.Append("k", 1));
  CHECK(b.total() == 11);
  CHECK(b.kept() == "abcd");
}

TEST_CASE(
    "a failed exchange says which step failed, and escapes what libcurl quotes from the peer") {
  Failure f;
  f.host = "localhost";
  f.peer = "localhost:8443";
  f.timeout = 1500ms;
  f.kind = Failure::Kind::kTimeout;
  f.stage = Stage::kResolve;
  CHECK(Describe(f) == "cannot resolve localhost: no answer within 1500 ms");
  f.stage = Stage::kConnect;
  CHECK(Describe(f) == "connect to localhost:8443: no answer within 1500 ms");
  f.stage = Stage::kTlsHandshake;
  CHECK(Describe(f) == "TLS handshake with localhost:8443: no answer within 1500 ms");
  f.stage = Stage::kExchange;
  CHECK(Describe(f) == "no response from localhost:8443 within 1500 ms");
  f.kind = Failure::Kind::kCertificate;
  // A certificate's subject name is the peer's text.
  f.detail =
      "SSL: certificate subject name (evil\n2026 info forged) does not match target host name";
  CHECK(Describe(f) ==
        "TLS handshake with localhost:8443: server certificate rejected: SSL: certificate subject "
        "name (evil\\n2026 info forged) does not match target host name");
  f.kind = Failure::Kind::kResolve;
  f.detail = "Could not resolve host: localhost";
  CHECK(Describe(f) == "cannot resolve localhost: Could not resolve host: localhost");
  f.kind = Failure::Kind::kTooLarge;
  f.limit = 65536;
  CHECK(Describe(f) == "response from localhost:8443 larger than 65536 bytes");
  f.kind = Failure::Kind::kOther;
  f.detail = "Failure when receiving data from the peer";
  CHECK(Describe(f) == "POST to localhost:8443 failed: Failure when receiving data from the peer");
}
