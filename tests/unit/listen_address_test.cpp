#include "gm/listen_address.h"

#include <doctest/doctest.h>

#include <stdexcept>

using gm::ListenAddress;
using gm::ParseListenAddress;

TEST_CASE("listen address: wildcard, IPv4, bracketed IPv6 and names") {
  CHECK(ParseListenAddress(":9477") == ListenAddress{"", 9477});
  CHECK(ParseListenAddress("127.0.0.1:80") == ListenAddress{"127.0.0.1", 80});
  CHECK(ParseListenAddress("[::1]:9") == ListenAddress{"::1", 9});
  CHECK(ParseListenAddress("[::]:8443") == ListenAddress{"::", 8443});
  CHECK(ParseListenAddress("localhost:0") == ListenAddress{"localhost", 0});
}

TEST_CASE("listen address: refusals say what is wrong") {
  CHECK_THROWS_WITH_AS(ParseListenAddress("9477"), doctest::Contains("no ':port'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("host:http"), doctest::Contains("invalid port"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("host:"), doctest::Contains("invalid port"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("host:70000"), doctest::Contains("above 65535"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("host:-1"), doctest::Contains("invalid port"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("::1:80"), doctest::Contains("without brackets"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("[::1:80"), doctest::Contains("unclosed"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("[::1]80"), doctest::Contains("no ':port'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ParseListenAddress("[]:80"), doctest::Contains("empty"),
                       std::invalid_argument);
}

TEST_CASE("listen address: formatted for logs with brackets around IPv6") {
  CHECK(gm::FormatListenAddress({"", 9477}) == "[::]:9477");
  CHECK(gm::FormatListenAddress({"::1", 9}) == "[::1]:9");
  CHECK(gm::FormatListenAddress({"10.0.0.1", 80}) == "10.0.0.1:80");
}
