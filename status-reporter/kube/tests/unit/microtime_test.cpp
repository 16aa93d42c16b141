#include "gm/kube/microtime.h"

#include <doctest/doctest.h>

using gm::kube::FormatMicroTime;
using gm::kube::ParseMicroTime;
using std::chrono::microseconds;
using std::chrono::system_clock;

TEST_CASE("MicroTime is RFC 3339 in UTC with six fractional digits") {
  CHECK(FormatMicroTime(system_clock::time_point(microseconds(123456))) ==
        "1970-01-01T00:00:00.123456Z");
  CHECK(FormatMicroTime(system_clock::time_point()) == "1970-01-01T00:00:00.000000Z");
  // 2024-02-29T23:59:59.999999Z, a leap day.
  CHECK(FormatMicroTime(system_clock::time_point(microseconds(1709251199999999LL))) ==
        "2024-02-29T23:59:59.999999Z");
  // Nanoseconds are cut, not rounded up into the next second.
  CHECK(FormatMicroTime(system_clock::time_point(std::chrono::nanoseconds(1999999999LL))) ==
        "1970-01-01T00:00:01.999999Z");
}

TEST_CASE("MicroTime parses what the server writes, offsets and fractions included") {
  const auto t = system_clock::now();
  const auto parsed = ParseMicroTime(FormatMicroTime(t));
  REQUIRE(parsed);
  CHECK(std::chrono::duration_cast<microseconds>(t.time_since_epoch()) ==
        std::chrono::duration_cast<microseconds>(parsed->time_since_epoch()));

  CHECK(ParseMicroTime("2024-05-01T14:00:00.5+02:00") ==
        ParseMicroTime("2024-05-01T12:00:00.500000Z"));
  CHECK(ParseMicroTime("2024-05-01T06:30:00-05:30") == ParseMicroTime("2024-05-01T12:00:00Z"));
  CHECK(FormatMicroTime(*ParseMicroTime("2024-05-01t12:00:00.123456789z")) ==
        "2024-05-01T12:00:00.123456Z");
  CHECK(FormatMicroTime(*ParseMicroTime("1969-12-31T23:59:59.5Z")) ==
        "1969-12-31T23:59:59.500000Z");
}

TEST_CASE("MicroTime refuses malformed and impossible times") {
  for (const char* bad :
       {"", "2024-05-01", "2024-05-01 12:00:00Z", "2024-05-01T12:00:00", "2024-05-01T12:00:00.Z",
        "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
        "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z", "2024-05-01T12:00:60Z",
        "2024-05-01T12:00:00Zjunk", "2024-05-01T12:00:00+0200", "2024-05-01T12:00:00.1234567890Z",
        "20x4-05-01T12:00:00Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseMicroTime(bad));
  }
}
