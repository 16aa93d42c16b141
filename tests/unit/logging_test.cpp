#include <doctest/doctest.h>

#include <stdexcept>

#include "gm/logging.h"

TEST_CASE("JSON escaping of log messages") {
  CHECK(gm::JsonEscape("plain") == "plain");
  CHECK(gm::JsonEscape("a \"q\" \\ b") == "a \\\"q\\\" \\\\ b");
  CHECK(gm::JsonEscape("line1\nline2\t\x01") == "line1\\nline2\\t\\u0001");
}

TEST_CASE("unknown log settings are refused with the accepted values") {
  CHECK_THROWS_WITH_AS(gm::SetupLogging("xml", "info"), doctest::Contains("want text or json"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(gm::SetupLogging("text", "loud"), doctest::Contains("unknown log level 'loud'"),
                       std::invalid_argument);
}
