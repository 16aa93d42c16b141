#include "guest_load.h"

#include <doctest/doctest.h>

#include <limits>
#include <set>

using namespace gm::exporter;

namespace {
std::vector<TypedParam> Params(double a, double b, double c) {
  return {{"load.1m", a}, {"load.5m", b}, {"load.15m", c}};
}
}  // namespace

TEST_CASE("guest info: three doubles give a sample") {
  const auto r = ParseGuestInfoLoad(Params(0.21, 0.37, 0.39));
  REQUIRE(r.load);
  CHECK(r.reason == Reason::kOk);
  CHECK(r.load->load1m == doctest::Approx(0.21));
  CHECK(r.load->load5m == doctest::Approx(0.37));
  CHECK(r.load->load15m == doctest::Approx(0.39));
}

TEST_CASE("guest info: other info types around the load keys are ignored") {
  std::vector<TypedParam> p{{"hostname", std::string("vm1")},
                            {"load.1m", 1.5},
                            {"user.count", 2u},
                            {"load.5m", 1.0},
                            {"load.15m", 0.5}};
  const auto r = ParseGuestInfoLoad(p);
  REQUIRE(r.load);
  CHECK(r.load->load1m == doctest::Approx(1.5));
}

TEST_CASE("guest info: no load keys means the agent gave no load") {
  const auto r = ParseGuestInfoLoad({});
  CHECK_FALSE(r.load);
  CHECK(r.reason == Reason::kCommandNotFound);
}

TEST_CASE("guest info: a missing key, a wrong type, NaN, negative or huge values are bad replies") {
  CHECK(ParseGuestInfoLoad({{"load.1m", 1.0}, {"load.15m", 1.0}}).reason == Reason::kBadReply);
  CHECK(ParseGuestInfoLoad({{"load.1m", 1.0}, {"load.5m", 1ll}, {"load.15m", 1.0}}).reason ==
        Reason::kBadReply);
  CHECK(ParseGuestInfoLoad({{"load.1m", std::string("1.0")}, {"load.5m", 1.0}, {"load.15m", 1.0}})
            .reason == Reason::kBadReply);
  CHECK(ParseGuestInfoLoad(Params(std::numeric_limits<double>::quiet_NaN(), 1, 1)).reason ==
        Reason::kBadReply);
  CHECK(ParseGuestInfoLoad(Params(1, std::numeric_limits<double>::infinity(), 1)).reason ==
        Reason::kBadReply);
  CHECK(ParseGuestInfoLoad(Params(1, 1, -0.5)).reason == Reason::kBadReply);
  CHECK(ParseGuestInfoLoad(Params(1e12, 1, 1)).reason == Reason::kBadReply);
  const auto detail = ParseGuestInfoLoad(Params(1, 1, -0.5)).detail;
  CHECK(detail.find("load.15m") != std::string::npos);
  CHECK(detail.find("negative") != std::string::npos);
}

TEST_CASE("guest info: zero and large-but-possible loads are kept") {
  CHECK(ParseGuestInfoLoad(Params(0, 0, 0)).reason == Reason::kOk);
  CHECK(ParseGuestInfoLoad(Params(5000, 4000, 3000)).load->load1m == doctest::Approx(5000));
}

TEST_CASE("agent reply: the guest-get-load return object gives a sample") {
  const auto r = ParseAgentLoadReply(R"({"return":{"load1m":2.5,"load5m":1.25,"load15m":0}})");
  REQUIRE(r.load);
  CHECK(r.load->load1m == doctest::Approx(2.5));
  CHECK(r.load->load5m == doctest::Approx(1.25));
  CHECK(r.load->load15m == doctest::Approx(0));
  // Integers are numbers too: an agent may print 0 rather than 0.0.
  CHECK(ParseAgentLoadReply(R"({"return":{"load1m":3,"load5m":2,"load15m":1}})").reason ==
        Reason::kOk);
}

TEST_CASE("agent reply: CommandNotFound is a normal state, other errors are bad replies") {
  const auto nf = ParseAgentLoadReply(
      R"({"error":{"class":"CommandNotFound","desc":"The command guest-get-load has not been found"}})");
  CHECK(nf.reason == Reason::kCommandNotFound);
  CHECK(ParseAgentLoadReply(R"({"error":{"class":"GenericError","desc":"x"}})").reason ==
        Reason::kBadReply);
}

TEST_CASE(
    "agent reply: garbage, wrong shapes, wrong types and bad values are refused with a reason") {
  struct Case {
    const char* json;
    const char* detail;
  };
  for (const Case& c :
       {Case{"", "not JSON"}, Case{"{\"return\":", "not JSON"},
        Case{"[1,2,3]", "not a JSON object"}, Case{"{}", "no \"return\""},
        Case{R"({"return":[1]})", "no \"return\""},
        Case{R"({"return":{"load1m":1,"load5m":1}})", "load15m is missing"},
        Case{R"({"return":{"load1m":"1","load5m":1,"load15m":1}})", "load1m is not a number"},
        Case{R"({"return":{"load1m":null,"load5m":1,"load15m":1}})", "load1m is not a number"},
        Case{R"({"return":{"load1m":-1,"load5m":1,"load15m":1}})", "negative"},
        Case{R"({"return":{"load1m":1e999,"load5m":1,"load15m":1}})", "not JSON"},
        Case{R"({"return":{"load1m":1,"load5m":99999999,"load15m":1}})", "implausibly large"}}) {
    const std::string json = c.json;
    CAPTURE(json);
    const auto r = ParseAgentLoadReply(c.json);
    CHECK_FALSE(r.load);
    CHECK(r.reason == Reason::kBadReply);
    CHECK(r.detail.find(c.detail) != std::string::npos);
  }
}

TEST_CASE("every reason has a distinct label value") {
  std::set<std::string_view> names;
  for (int i = 0; i <= static_cast<int>(Reason::kStale); ++i)
    names.insert(ReasonName(static_cast<Reason>(i)));
  CHECK(names.size() == static_cast<size_t>(Reason::kStale) + 1);
  CHECK(ReasonName(Reason::kCommandNotFound) == "command_not_found");
}
