#include "exposition.h"

#include <doctest/doctest.h>

using namespace gm::exporter;
using namespace std::chrono_literals;

namespace {
bool Has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

DomainView View(const char* ns, const char* name, std::optional<LoadAverage> load, Reason reason) {
  DomainView v;
  v.domain = std::string(ns) + "_" + name;
  v.identity = {ns, name};
  v.load = load;
  v.reason = reason;
  if (load) v.sample_wall_time = std::chrono::system_clock::time_point{} + 1700000000s;
  return v;
}
}  // namespace

TEST_CASE("load gauges carry namespace, name and node, and only for domains with a fresh sample") {
  SelfMetrics self("9.0.0");
  const auto text = RenderMetrics({View("prod", "db", LoadAverage{1.5, 0.75, 0.25}, Reason::kOk),
                                   View("dev", "web", std::nullopt, Reason::kCommandNotFound)},
                                  "node-1", 120s, {}, self);
  CHECK(Has(text,
            "kubevirt_vmi_guest_load_1m{namespace=\"prod\",name=\"db\",node=\"node-1\"} 1.5\n"));
  CHECK(Has(text,
            "kubevirt_vmi_guest_load_5m{namespace=\"prod\",name=\"db\",node=\"node-1\"} 0.75\n"));
  CHECK(Has(text,
            "kubevirt_vmi_guest_load_15m{namespace=\"prod\",name=\"db\",node=\"node-1\"} 0.25\n"));
  CHECK_FALSE(Has(text, "kubevirt_vmi_guest_load_1m{namespace=\"dev\""));
  CHECK(Has(text,
            "guest_exporter_guest_load_status{namespace=\"dev\",name=\"web\",node=\"node-1\","
            "reason=\"command_not_found\"} 1\n"));
  CHECK(Has(text,
            "guest_exporter_guest_load_status{namespace=\"prod\",name=\"db\",node=\"node-1\","
            "reason=\"ok\"} 1\n"));
  CHECK(Has(text,
            "guest_exporter_last_sample_timestamp_seconds{namespace=\"prod\",name=\"db\",node="
            "\"node-1\"} 1700000000\n"));
  CHECK(text.back() == '\n');
}

TEST_CASE("HELP says how often values are sampled") {
  SelfMetrics self("9.0.0");
  const auto text =
      RenderMetrics({View("a", "b", LoadAverage{1, 1, 1}, Reason::kOk)}, "n", 120s, {}, self);
  CHECK(Has(text,
            "# HELP kubevirt_vmi_guest_load_1m Guest load average over 1 minute, in runnable "
            "threads; sampled "
            "from the guest agent every 120s"));
  CHECK(Has(text, "# TYPE kubevirt_vmi_guest_load_1m gauge\n"));
}

TEST_CASE("with no domains there are no load families, but self-metrics remain") {
  SelfMetrics self("9.0.0");
  self.CountPoll(Reason::kAgentTimeout);
  self.libvirt_up.Set(1);
  const auto text = RenderMetrics({}, "n", 120s, {}, self);
  CHECK_FALSE(Has(text, "kubevirt_vmi_guest_load"));
  CHECK(Has(text, "guest_exporter_libvirt_up 1\n"));
  CHECK(Has(text, "guest_exporter_polls_total{result=\"agent_timeout\"} 1\n"));
  CHECK(Has(text, "guest_exporter_polls_total{result=\"ok\"} 0\n"));
  CHECK(Has(text, "guest_exporter_build_info{libvirt_version=\"9.0.0\","));
}

TEST_CASE("label values are escaped") {
  SelfMetrics self("9.0.0");
  const auto text = RenderMetrics({View("", "we\"ird\\name", LoadAverage{1, 1, 1}, Reason::kOk)},
                                  "n", 1s, {}, self);
  CHECK(Has(text, R"(name="we\"ird\\name")"));
}

TEST_CASE("live allocation always, ratios only where the pod's requests allow") {
  SelfMetrics self("9.0.0");
  auto v = View("prod", "db", std::nullopt, Reason::kAgentDisconnected);
  v.info.vcpus = 2;
  v.info.memory_kib = 6ULL * 1024 * 1024;  // 6Gi
  std::string text = RenderMetrics({v}, "n", 120s, {}, self);
  CHECK(Has(text, "guest_exporter_guest_vcpus{namespace=\"prod\",name=\"db\",node=\"n\"} 2\n"));
  CHECK(Has(
      text,
      "guest_exporter_guest_memory_bytes{namespace=\"prod\",name=\"db\",node=\"n\"} 6442450944\n"));
  CHECK_FALSE(Has(text, "kubevirt_vmi_cpu_allocation_ratio"));
  CHECK_FALSE(Has(text, "kubevirt_vmi_memory_overcommit_ratio"));

  gm::RatioInputs requests;
  requests.compute_cpu_request = 0.2;
  requests.vmi_memory_request = 4.0 * 1024 * 1024 * 1024;
  text = RenderMetrics({v}, "n", 120s, requests, self);
  CHECK(Has(text,
            "kubevirt_vmi_cpu_allocation_ratio{namespace=\"prod\",name=\"db\",node=\"n\"} 10\n"));
  CHECK(
      Has(text,
          "kubevirt_vmi_memory_overcommit_ratio{namespace=\"prod\",name=\"db\",node=\"n\"} 1.5\n"));
}

TEST_CASE("what the HTTP listeners refused or cut is shown per listener that is on") {
  SelfMetrics self("9.0.0");
  HttpListenerStats unix_stats;
  unix_stats.listener = "unix";
  unix_stats.request_timeouts = 2;
  HttpListenerStats tcp_stats;
  tcp_stats.listener = "tcp";
  tcp_stats.refused = 7;
  tcp_stats.accept_pauses = 1;
  tcp_stats.idle_timeouts = 3;
  const auto text = RenderMetrics({}, "n", 120s, {}, self, {unix_stats, tcp_stats});
  CHECK(Has(text, "# TYPE guest_exporter_http_connections_refused_total counter\n"));
  CHECK(Has(text, "guest_exporter_http_connections_refused_total{listener=\"tcp\"} 7\n"));
  CHECK(Has(text, "guest_exporter_http_connections_refused_total{listener=\"unix\"} 0\n"));
  CHECK(Has(text, "guest_exporter_http_accept_pauses_total{listener=\"tcp\"} 1\n"));
  CHECK(
      Has(text,
          "guest_exporter_http_connections_timed_out_total{listener=\"unix\",timeout=\"request\"} "
          "2\n"));
  CHECK(Has(
      text,
      "guest_exporter_http_connections_timed_out_total{listener=\"tcp\",timeout=\"idle\"} 3\n"));

  // TCP off: no tcp series; no listeners at all: no families.
  const auto unix_only = RenderMetrics({}, "n", 120s, {}, self, {unix_stats});
  CHECK_FALSE(Has(unix_only, "listener=\"tcp\""));
  CHECK_FALSE(Has(RenderMetrics({}, "n", 120s, {}, self), "guest_exporter_http_"));
}

TEST_CASE("a line feed in a label value is escaped and cannot start a new sample") {
  SelfMetrics self("9.0.0");
  const auto text = RenderMetrics(
      {View("ns", "a\nevil_metric 1", LoadAverage{1, 1, 1}, Reason::kOk)}, "n", 1s, {}, self);
  CHECK(Has(text, R"(name="a\nevil_metric 1")"));
  CHECK_FALSE(Has(text, "\nevil_metric"));
}

TEST_CASE("the poll-duration histogram has cumulative buckets, +Inf, sum and count") {
  SelfMetrics self("9.0.0");
  self.poll_duration.Observe(0.003);
  self.poll_duration.Observe(2);
  self.poll_duration.Observe(100);  // beyond the last bound: only +Inf counts it
  const auto text = RenderMetrics({}, "n", 120s, {}, self);
  CHECK(Has(text, "# TYPE guest_exporter_poll_duration_seconds histogram\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_bucket{le=\"0.001\"} 0\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_bucket{le=\"0.005\"} 1\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_bucket{le=\"1\"} 1\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_bucket{le=\"5\"} 2\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_bucket{le=\"30\"} 2\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_sum 102.003\n"));
  CHECK(Has(text, "guest_exporter_poll_duration_seconds_count 3\n"));
}

TEST_CASE("counters and gauges of the exporter itself, each family once") {
  SelfMetrics self("9.0.0");
  self.libvirt_connects_ok.Increment();
  self.libvirt_connects_failed.Increment();
  self.libvirt_connects_failed.Increment();
  self.reports_ok.Increment();
  const auto text = RenderMetrics({}, "n", 120s, {}, self);
  CHECK(Has(text, "guest_exporter_libvirt_connects_total{result=\"ok\"} 1\n"));
  CHECK(Has(text, "guest_exporter_libvirt_connects_total{result=\"error\"} 2\n"));
  CHECK(Has(text, "guest_exporter_reports_total{result=\"ok\"} 1\n"));
  CHECK(Has(text, "guest_exporter_reports_total{result=\"error\"} 0\n"));
  size_t types = 0;
  for (size_t at = 0;
       (at = text.find("# TYPE guest_exporter_libvirt_connects_total ", at)) != std::string::npos;
       ++at)
    ++types;
  CHECK(types == 1);
}
