#include "report_intake.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "fake_facts.h"

using namespace gm::reporter;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

class FakeReviewer final : public TokenReviewer {
 public:
  std::map<std::string, ReviewResult> answers;
  int calls = 0;
  bool api_down = false;
  ReviewResult Review(const std::string& token) override {
    ++calls;
    if (api_down) return {true, false, {}, "HTTP 503"};
    const auto it = answers.find(token);
    return it != answers.end() ? it->second
                               : ReviewResult{false, false, {}, "invalid bearer token"};
  }
};

using FakeFacts = gm::reporter::testing::MapFacts;

struct Setup {
  FakeReviewer reviewer;
  TokenCache tokens;
  FakeFacts facts;
  ReportStore store{300s};
  ReporterMetrics metrics;
  std::vector<std::string> queued;
  bool leader = true;
  Ingestion ingestion{[this] { return leader; },
                      reviewer,
                      tokens,
                      facts,
                      store,
                      [this](const std::string& k) { queued.push_back(k); },
                      metrics};
  Setup() {
    PodFacts pod{"team-a", "launcher-1", "pod-uid-1", "node-1", "vm-1", true, false, {}, {}};
    VmiFacts vmi;
    vmi.namespace_ = "team-a";
    vmi.name = "vm-1";
    vmi.uid = "vmi-uid";
    vmi.node_name = "node-1";
    vmi.active_pods = {{"pod-uid-1", "node-1"}};
    facts.pods["team-a/launcher-1"] = pod;
    facts.vmis["team-a/vm-1"] = vmi;
    reviewer.answers["good"] = {false, true, {"team-a", "default", "launcher-1", "pod-uid-1"}, ""};
  }
  static std::string Body(std::optional<gm::ReportOrder> order = std::nullopt,
                          double cpu_ratio = 10.0) {
    gm::Report r;
    r.namespace_ = "team-a";
    r.vmi_name = "vm-1";
    r.pod_name = "launcher-1";
    r.pod_uid = "pod-uid-1";
    r.node = "claimed-node";
    r.vcpus = 2;
    r.load_reason = "ok";
    r.load = gm::ReportLoad{1, 1, 1, 0};
    r.cpu_allocation_ratio = cpu_ratio;
    r.order = order;
    return gm::EncodeReport(r);
  }
};

std::string Result(const Reply& r) { return json::parse(r.body).value("result", ""); }

}  // namespace

TEST_CASE("TokenReview: request and response shapes") {
  const auto req = TokenReviewRequest("tok", "guest-metrics");
  CHECK(req["apiVersion"] == "authentication.k8s.io/v1");
  CHECK(req["spec"]["audiences"] == json::array({"guest-metrics"}));
  const auto ok =
      ParseTokenReview(json::parse(R"({"status":{"authenticated":true,"audiences":["guest-metrics"],
      "user":{"username":"system:serviceaccount:team-a:default","uid":"u",
              "extra":{"authentication.kubernetes.io/pod-name":["launcher-1"],
                       "authentication.kubernetes.io/pod-uid":["pod-uid-1"]}}}})"));
  CHECK(ok.authenticated);
  CHECK(ok.who.namespace_ == "team-a");
  CHECK(ok.who.service_account == "default");
  CHECK(ok.who.pod_name == "launcher-1");
  CHECK(ok.who.pod_uid == "pod-uid-1");
  const auto wrong_aud = ParseTokenReview(json::parse(
      R"({"status":{"authenticated":false,"error":"[invalid bearer token, token audiences [\"x\"] is invalid for the target audiences [\"guest-metrics\"]]"}})"));
  CHECK_FALSE(wrong_aud.authenticated);
  CHECK(wrong_aud.error.find("audiences") != std::string::npos);
  CHECK_FALSE(ParseTokenReview(
                  json::parse(R"({"status":{"authenticated":true,"user":{"username":"alice"}}})"))
                  .authenticated);
  CHECK_FALSE(ParseTokenReview(json::parse("[]")).authenticated);
}

TEST_CASE(
    "an accepted report is stored with the API's node and queued; its token is reviewed once") {
  Setup s;
  auto reply = s.ingestion.Handle("Bearer good", Setup::Body());
  CHECK(reply.status == 202);
  CHECK(Result(reply) == "accepted");
  REQUIRE(s.queued == std::vector<std::string>{"team-a/vm-1"});
  CHECK(s.store.Get("team-a/vm-1")->node == "node-1");
  reply = s.ingestion.Handle("Bearer good", Setup::Body());
  CHECK(reply.status == 202);
  CHECK(s.reviewer.calls == 1);  // cached
}

TEST_CASE("refusals change nothing") {
  Setup s;
  CHECK(s.ingestion.Handle("", Setup::Body()).status == 401);
  CHECK(s.ingestion.Handle("Basic abc", Setup::Body()).status == 401);
  CHECK(Result(s.ingestion.Handle("Bearer forged", Setup::Body())) == "unauthenticated");
  auto bad = s.ingestion.Handle("Bearer good", R"({"kind":"GuestReport"})");
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["message"] == "apiVersion is missing");
  s.facts.vmis["team-a/vm-1"].active_pods = {{"pod-uid-9", "node-1"}};
  CHECK(s.ingestion.Handle("Bearer good", Setup::Body()).status == 409);
  s.reviewer.api_down = true;
  CHECK(Result(s.ingestion.Handle("Bearer other", Setup::Body())) == "tokenreview_failed");
  s.leader = false;
  CHECK(s.ingestion.Handle("Bearer good", Setup::Body()).status == 503);
  CHECK(s.queued.empty());
  CHECK(s.store.size() == 0);
}

TEST_CASE("an older report after a newer one is answered 409 stale_report and changes nothing") {
  Setup s;
  CHECK(s.ingestion.Handle("Bearer good", Setup::Body(gm::ReportOrder{1764644400000, 7}, 8.0))
            .status == 202);
  REQUIRE(s.queued.size() == 1);
  const auto reply =
      s.ingestion.Handle("Bearer good", Setup::Body(gm::ReportOrder{1764644400000, 6}, 10.0));
  CHECK(reply.status == 409);
  CHECK(Result(reply) == "stale_report");
  CHECK(json::parse(reply.body)["message"] ==
        "report 6 of the sidecar started at 1764644400000 ms is not newer than report 7 of the "
        "sidecar "
        "started at 1764644400000 ms, already accepted for pod team-a/launcher-1; ignored");
  CHECK(s.store.Get("team-a/vm-1")->report.cpu_allocation_ratio == 8.0);
  CHECK(s.queued.size() == 1);
  CHECK(s.ingestion.Handle("Bearer good", Setup::Body(gm::ReportOrder{1764644400000, 8}, 10.0))
            .status == 202);
  CHECK(s.store.Get("team-a/vm-1")->report.cpu_allocation_ratio == 10.0);
  CHECK(s.queued.size() == 2);
}

TEST_CASE(
    "a non-finite or subnormal number is answered 400 naming the field, and changes nothing") {
  Setup s;
  std::string body = Setup::Body();
  const auto at = body.find("\"cpuAllocationRatio\":10.0");
  REQUIRE(at != std::string::npos);
  body.replace(at, 25, "\"cpuAllocationRatio\":1e-320");
  const auto reply = s.ingestion.Handle("Bearer good", body);
  CHECK(reply.status == 400);
  CHECK(Result(reply) == "bad_report");
  CHECK(json::parse(reply.body)["message"] ==
        "cpuAllocationRatio is 1e-320, out of range [0.001, 10000]");
  CHECK(s.store.size() == 0);
  CHECK(s.queued.empty());
}

TEST_CASE("a refusal quoting the peer's text is logged on one line, escaped") {
  Setup s;
  // The API server's TokenReview names the pod; a crafted name must not forge log lines.
  s.reviewer.answers["crafted"] = {
      false,
      true,
      {"team-a", "default", "launcher-1\n2026-12-02 info report accepted\x1b[2K", "pod-uid-1"},
      ""};
  std::ostringstream out;
  const auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_level(spdlog::level::debug);
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
  const auto reply = s.ingestion.Handle("Bearer crafted", Setup::Body());
  spdlog::set_default_logger(previous);
  CHECK(reply.status == 403);
  const std::string logged = out.str();
  CHECK(logged.find("report refused (token_mismatch)") == 0);
  CHECK(logged.find('\n') == logged.size() - 1);  // one line
  CHECK(logged.find('\x1b') == std::string::npos);
  CHECK(logged.find("launcher-1\\n2026-12-02 info report accepted\\x1b[2K") != std::string::npos);
}
