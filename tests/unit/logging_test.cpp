#include "gm/logging.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <thread>

#include "gm/errno_text.h"

TEST_CASE("JSON escaping of log messages") {
  CHECK(gm::JsonEscape("plain") == "plain");
  CHECK(gm::JsonEscape("a \"q\" \\ b") == "a \\\"q\\\" \\\\ b");
  CHECK(gm::JsonEscape("line1\nline2\t\x01") == "line1\\nline2\\t\\u0001");
}

TEST_CASE("unknown log settings are refused with the accepted values") {
  CHECK_THROWS_WITH_AS(gm::SetupLogging("xml", "info"), doctest::Contains("want text or json"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(gm::SetupLogging("text", "loud"),
                       doctest::Contains("unknown log level 'loud'"), std::invalid_argument);
}

TEST_CASE(
    "peer text is escaped before it is logged: no forged lines, no terminal escapes, bounded") {
  using gm::EscapeForLog;
  CHECK(EscapeForLog("") == "");
  CHECK(EscapeForLog("pod is not the VMI's active pod") == "pod is not the VMI's active pod");
  // A newline would start a forged log line; CR, tab and NUL are escaped too.
  CHECK(EscapeForLog("denied\n2026-12-02T03:00:00.000Z info report accepted") ==
        "denied\\n2026-12-02T03:00:00.000Z info report accepted");
  CHECK(EscapeForLog(std::string("a\rb\tc\0d", 7)) == "a\\rb\\tc\\x00d");
  // ANSI escape sequences (colour, cursor movement, title setting) and DEL.
  CHECK(EscapeForLog("\x1b[31mred\x1b[0m \x1b]0;title\x07 \x7f") ==
        "\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07 \\x7f");
  // A literal backslash is doubled, so a peer cannot write "\n" that reads like our escape.
  CHECK(EscapeForLog("C:\\n") == "C:\\\\n");
  // Valid UTF-8 stays readable; invalid bytes, overlong forms, surrogates and
  // cut-short sequences are shown as bytes.
  CHECK(EscapeForLog("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(EscapeForLog("\xff\xfe") == "\\xff\\xfe");
  CHECK(EscapeForLog("\xc0\xaf") == "\\xc0\\xaf");
  CHECK(EscapeForLog("\xed\xa0\x80") == "\\xed\\xa0\\x80");
  CHECK(EscapeForLog("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(EscapeForLog("ok\xe2\x82") == "ok\\xe2\\x82");
  // Unicode controls that break or reorder lines: C1 (NEL), line/paragraph
  // separators, bidirectional overrides.
  CHECK(EscapeForLog("a\xc2\x85"
                     "b") == "a\\u0085b");
  // NOLINTNEXTLINE(misc-misleading-bidirectional): a bidi override is the input under test
  CHECK(EscapeForLog("\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x80\xae|\xe2\x81\xa6") ==
        "\\u2028|\\u2029|\\u202e|\\u2066");
  // Bounded: a flood is cut at max_bytes of input, saying how much was left out.
  CHECK(EscapeForLog(std::string(1000, 'x'), 256) == std::string(256, 'x') + "...(744 more bytes)");
  CHECK(EscapeForLog(std::string(300, 'x')) == std::string(256, 'x') + "...(44 more bytes)");
  // A multi-byte character is never split by the bound.
  CHECK(EscapeForLog("ab\xc3\xa9", 3) == "ab...(2 more bytes)");
  CHECK(EscapeForLog(std::string(5, '\n'), 3) == "\\n\\n\\n...(2 more bytes)");
}

TEST_CASE("ErrnoText names an errno value as strerror does, from any thread") {
  CHECK(gm::ErrnoText(ECONNREFUSED) == "Connection refused");
  std::string other;
  std::thread t([&] { other = gm::ErrnoText(ENOENT); });
  t.join();
  CHECK(other == "No such file or directory");
  CHECK(gm::ErrnoText(-12345).find("Unknown error") != std::string::npos);
}
