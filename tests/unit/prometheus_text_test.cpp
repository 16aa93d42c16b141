#include "gm/prometheus_text.h"

#include <doctest/doctest.h>

#include <string>

namespace {

std::string Label(std::string_view v) {
  std::string out;
  gm::AppendLabelValue(out, v);
  return out;
}

std::string Help(std::string_view v) {
  std::string out;
  gm::AppendHelpText(out, v);
  return out;
}

}  // namespace

TEST_CASE("a label value escapes backslash, double quote and line feed, nothing else") {
  CHECK(Label("vm-1") == "vm-1");
  CHECK(Label(R"(node "a"\b)") == R"(node \"a\"\\b)");
  CHECK(Label("two\nlines") == R"(two\nlines)");
  CHECK(Label("tab\there") == "tab\there");
  CHECK(Label("") == "");
}

TEST_CASE("HELP text escapes backslash and line feed but keeps double quotes") {
  CHECK(Help(R"(say "hi"\now)") == R"(say "hi"\\now)");
  CHECK(Help("a\nb") == R"(a\nb)");
}
