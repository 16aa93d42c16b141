// status-reporter's pure decisions: which facts it keeps, what it writes, how
// long it believes a report and a token (whose report it accepts:
// report_check_test.cpp).

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "facts.h"
#include "metrics.h"
#include "plan.h"
#include "report_check.h"
#include "report_store.h"
#include "reporter_fixtures.h"
#include "token_cache.h"

using namespace gm::reporter;
using nlohmann::json;
using namespace reporter_fixtures;
using namespace std::chrono_literals;

TEST_CASE("facts keep only what the reporter needs") {
  const auto pod = PodFromJson(kPod);
  CHECK(pod.uid == "pod-uid-1");
  CHECK(pod.node == "node-1");
  CHECK(pod.vmi_name == "vm-1");
  CHECK(pod.is_launcher);
  CHECK_FALSE(pod.deleting);
  CHECK_FALSE(pod.cpu_ratio_annotation);
  const auto vmi = VmiFromJson(kVmi);
  CHECK(vmi.node_name == "node-1");
  CHECK(vmi.active_pods.at("pod-uid-1") == "node-1");
  CHECK_FALSE(vmi.status_cpu_ratio);
  CHECK_THROWS_WITH_AS(PodFromJson(json::parse(R"({"metadata":{"name":"x"}})")),
                       doctest::Contains("without metadata"), std::invalid_argument);
  CHECK_THROWS_AS(VmiFromJson(json::parse("[]")), std::invalid_argument);
}

TEST_CASE("pod patch: annotations written once, then nothing; a vanished ratio is removed") {
  auto pod = PodFromJson(kPod);
  auto r = Report1();
  auto patch = PodPatch(pod, r);
  REQUIRE(patch);
  CHECK(*patch == json::parse(R"({"metadata":{"annotations":{
      "guestmetrics.kubevirt.io/cpu-allocation-ratio":"10.0",
      "guestmetrics.kubevirt.io/memory-overcommit-ratio":"1.5"}}})"));
  pod.cpu_ratio_annotation = "10.0";
  pod.memory_ratio_annotation = "1.5";
  CHECK_FALSE(PodPatch(pod, r));
  r.memory_overcommit_ratio.reset();
  patch = PodPatch(pod, r);
  REQUIRE(patch);
  CHECK(
      *patch ==
      json::parse(
          R"({"metadata":{"annotations":{"guestmetrics.kubevirt.io/memory-overcommit-ratio":null}}})"));
}

TEST_CASE("VMI status patch carries VEP 156's fields, rounded, and only when they differ") {
  auto vmi = VmiFromJson(kVmi);
  auto r = Report1();
  r.memory_overcommit_ratio = 4.0 / 3.0;
  auto patch = VmiStatusPatch(vmi, r);
  REQUIRE(patch);
  CHECK((*patch)["status"]["currentCPUTopology"]["cpuAllocationRatio"] == 10.0);
  CHECK((*patch)["status"]["memory"]["memoryOvercommitRatio"] == 1.333);
  vmi.status_cpu_ratio = 10.0;
  vmi.status_memory_ratio = 1.333;
  CHECK_FALSE(VmiStatusPatch(vmi, r));
  CHECK(VmiAnnotationPatch(vmi, r));  // annotation mode is tracked separately
  CHECK(std::string(VmiRatioModeName(VmiRatioMode::kAnnotations)) == "annotations");
}

TEST_CASE("report store: new facts need a write, repeats do not; old reports vanish") {
  ReportStore store(300s);
  const auto t0 = Clock::time_point{} + 1000s;
  auto r = Report1();
  r.load = gm::ReportLoad{1, 1, 1, 100};
  CHECK(store.Put("team-a/vm-1", {r, "node-1", t0}) == PutResult::kChanged);
  CHECK(store.Put("team-a/vm-1", {r, "node-1", t0 + 120s}) == PutResult::kUnchanged);  // heartbeat
  r.pod_uid = "pod-uid-2";
  CHECK(store.Put("team-a/vm-1", {r, "node-2", t0 + 130s}) == PutResult::kChanged);  // migrated
  const auto stored = *store.Get("team-a/vm-1");
  CHECK(store.LoadFresh(stored, t0 + 300s));  // sampled at t0+30s
  CHECK_FALSE(store.LoadFresh(stored, t0 + 331s));
  const auto fresh_at = [&store](Clock::time_point t) {
    return store.WithFresh(t, [](const auto& fresh) { return fresh.size(); });
  };
  CHECK(fresh_at(t0 + 430s) == 1);
  CHECK(fresh_at(t0 + 431s) == 0);
  CHECK(store.size() == 0);
}

TEST_CASE(
    "report store keeps the newest report of a pod: an older one replayed after it changes "
    "nothing") {
  ReportStore store(300s);
  const auto t0 = Clock::time_point{} + 1000s;
  const std::string key = "team-a/vm-1";
  auto report = [](uint64_t start_ms, uint64_t seq, double cpu_ratio,
                   const char* pod_uid = "pod-uid-1") {
    auto r = Report1();
    r.pod_uid = pod_uid;
    r.cpu_allocation_ratio = cpu_ratio;
    r.order = gm::ReportOrder{start_ms, seq};
    return r;
  };
  const uint64_t start = 1764644400000;
  CHECK(store.Put(key, {report(start, 1, 10.0), "node-1", t0}) == PutResult::kChanged);
  CHECK(store.Put(key, {report(start, 2, 8.0), "node-1", t0 + 1s}) ==
        PutResult::kChanged);  // hotplug
  // The bug of issue 10: report 1 arriving late (a replay, a slow proxy)
  // overwrote report 2 and put the old ratio back.
  CHECK(store.Put(key, {report(start, 1, 10.0), "node-1", t0 + 2s}) == PutResult::kStale);
  CHECK(store.Get(key)->report.cpu_allocation_ratio == 8.0);
  CHECK(store.Get(key)->received == t0 + 1s);
  CHECK(store.Put(key, {report(start, 2, 8.0), "node-1", t0 + 3s}) ==
        PutResult::kStale);  // the same one again
  // An unordered report (older sidecar format) cannot replace an ordered one of the same pod.
  auto unordered = report(start, 9, 10.0);
  unordered.order.reset();
  CHECK(store.Put(key, {unordered, "node-1", t0 + 4s}) == PutResult::kStale);
  // The sidecar restarted: its sequence starts again, from a later start.
  CHECK(store.Put(key, {report(start + 60000, 1, 10.0), "node-1", t0 + 61s}) ==
        PutResult::kChanged);
  CHECK(store.Put(key, {report(start, 3, 8.0), "node-1", t0 + 62s}) ==
        PutResult::kStale);  // the old process
  // Another pod (a migration target, already checked to be the active pod) is
  // never compared with the old pod's reports.
  CHECK(store.Put(key, {report(start - 5000, 1, 4.0, "pod-uid-2"), "node-2", t0 + 70s}) ==
        PutResult::kChanged);
  CHECK(store.Get(key)->report.pod_uid == "pod-uid-2");
  // A stored report older than the freshness bound no longer blocks: a sidecar
  // restarted after the node's clock stepped back is accepted once the old
  // report has expired.
  CHECK(store.Put(key, {report(start - 9000, 1, 4.0, "pod-uid-2"), "node-2", t0 + 370s}) ==
        PutResult::kStale);
  CHECK(store.Put(key, {report(start - 9000, 1, 4.0, "pod-uid-2"), "node-2", t0 + 371s}) ==
        PutResult::kUnchanged);
  // Unordered reports of an unordered pod: the last one wins, as before.
  ReportStore legacy(300s);
  CHECK(legacy.Put(key, {unordered, "node-1", t0}) == PutResult::kChanged);
  unordered.cpu_allocation_ratio = 5.0;
  CHECK(legacy.Put(key, {unordered, "node-1", t0 + 1s}) == PutResult::kChanged);
}

TEST_CASE("tokens are cached until their exp, never longer than the cap") {
  // header.payload.signature with payload {"exp":2000000000}
  const std::string token = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDB9.sig";
  REQUIRE(JwtExpiry(token));
  CHECK(JwtExpiry(token)->time_since_epoch() == std::chrono::seconds(2000000000));
  CHECK_FALSE(JwtExpiry("not-a-jwt"));
  CHECK_FALSE(JwtExpiry("a.!!!.c"));

  TokenCache cache(600s);
  const auto near_exp =
      std::chrono::system_clock::time_point(std::chrono::seconds(2000000000 - 60));
  cache.Put(token, kWho, near_exp);
  CHECK(cache.Get(token, near_exp + 59s));
  CHECK_FALSE(cache.Get(token, near_exp + 60s));  // expired with the token
  CHECK_FALSE(cache.Get("other", near_exp));

  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1000));
  cache.Put("opaque-token", kWho, now);
  CHECK(cache.Get("opaque-token", now + 599s)->pod_uid == "pod-uid-1");
  CHECK_FALSE(cache.Get("opaque-token", now + 600s));
}

TEST_CASE(
    "reporter /metrics: load and ratios of fresh reports with the pod's node, and its own health") {
  ReporterMetrics self;
  ReportStore store(300s);
  const auto t0 = Clock::time_point{} + 1000s;
  auto r = Report1();
  r.load = gm::ReportLoad{2.5, 2, 1.5, 10};
  store.Put("team-a/vm-1", {r, "node-7", t0});
  auto r2 = Report1();
  r2.vmi_name = "vm-2";
  r2.cpu_allocation_ratio.reset();
  store.Put("team-a/vm-2", {r2, "node-8", t0});
  self.CountReport("accepted");
  self.CountApiRequest("PATCH", 200);
  self.SetVmiRatioMode(VmiRatioMode::kAnnotations);

  auto text = RenderReporterMetrics(store, t0 + 1s, true, self);
  const auto has = [&](const std::string& s) { return text.find(s) != std::string::npos; };
  CHECK(
      has("kubevirt_vmi_guest_load_1m{namespace=\"team-a\",name=\"vm-1\",node=\"node-7\"} 2.5\n"));
  CHECK_FALSE(has(
      "kubevirt_vmi_guest_load_1m{namespace=\"team-a\",name=\"vm-2\""));  // no load in its report
  CHECK(
      has("kubevirt_vmi_cpu_allocation_ratio{namespace=\"team-a\",name=\"vm-1\",node=\"node-7\"} "
          "10\n"));
  CHECK_FALSE(has("kubevirt_vmi_cpu_allocation_ratio{namespace=\"team-a\",name=\"vm-2\""));
  CHECK(
      has("kubevirt_vmi_memory_overcommit_ratio{namespace=\"team-a\",name=\"vm-2\",node=\"node-8\"}"
          " 1.5\n"));
  CHECK(has("status_reporter_reports_total{result=\"accepted\"} 1\n"));
  CHECK(has("status_reporter_reports_total{result=\"not_active_pod\"} 0\n"));
  CHECK(has("status_reporter_api_requests_total{code=\"200\",verb=\"PATCH\"} 1\n"));
  CHECK(has("status_reporter_vmi_ratio_mode{mode=\"annotations\"} 1\n"));
  CHECK(has("status_reporter_vmi_ratio_mode{mode=\"status\"} 0\n"));

  text = RenderReporterMetrics(store, t0 + 1s, false, self);
  CHECK(text.find("kubevirt_vmi_guest_load_1m") == std::string::npos);  // switched off
  CHECK(text.find("kubevirt_vmi_cpu_allocation_ratio") != std::string::npos);
}
