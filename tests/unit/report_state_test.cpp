// Report states: every running VMI in exactly one, from literal facts and times.

#include "report_state.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "metrics.h"

using namespace gm::reporter;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const WallClock::time_point kInstall = *ParseApiTime("2026-01-01T10:00:00Z");
const WallClock::time_point kNow = kInstall + 24h;

PodFacts Pod(bool sidecar, WallClock::time_point created) {
  PodFacts p;
  p.namespace_ = "team-a";
  p.name = "virt-launcher-vm-1-abcde";
  p.uid = "pod-uid-1";
  p.node = "node-1";
  p.vmi_name = "vm-1";
  p.is_launcher = true;
  p.has_sidecar = sidecar;
  p.created = created;
  return p;
}

InjectionFacts Installed() {
  InjectionFacts i;
  i.webhook_installed = true;
  i.webhook_created = kInstall;
  return i;
}

std::string Show(const VmiReportState& s) {
  return std::string(StateName(s.state)) + "/" + s.reason;
}

}  // namespace

TEST_CASE("facts: the sidecar, the opt-out label and the creation time of a launcher pod") {
  const json pod = json::parse(R"({
    "metadata": {"name": "virt-launcher-vm-1-abcde", "namespace": "team-a", "uid": "u",
                 "creationTimestamp": "2026-01-01T10:00:05Z",
                 "labels": {"kubevirt.io": "virt-launcher", "guestmetrics.kubevirt.io/inject": "false"},
                 "annotations": {"kubevirt.io/domain": "vm-1"}},
    "spec": {"containers": [{"name": "compute"}],
             "initContainers": [{"name": "guest-exporter", "restartPolicy": "Always"}]}})");
  const PodFacts f = PodFromJson(pod);
  CHECK(f.has_sidecar);
  CHECK(f.opted_out);
  REQUIRE(f.created);
  CHECK(*f.created - kInstall == 5s);

  json plain = pod;
  plain["spec"]["initContainers"][0].erase("restartPolicy");  // an init container that ends
  plain["metadata"]["labels"].erase("guestmetrics.kubevirt.io/inject");
  plain["metadata"]["creationTimestamp"] = "yesterday";
  const PodFacts g = PodFromJson(plain);
  CHECK_FALSE(g.has_sidecar);
  CHECK_FALSE(g.opted_out);
  CHECK_FALSE(g.created);

  const json vmi = json::parse(R"({"metadata": {"name": "vm-1", "namespace": "team-a", "uid": "v"},
                                   "status": {"phase": "Running"}})");
  CHECK(IsRunning(VmiFromJson(vmi)));
}

TEST_CASE("API times: metav1.Time, with a fraction or an offset; nonsense is refused") {
  CHECK(ParseApiTime("2026-01-01T10:00:00.5Z") == kInstall);
  CHECK(ParseApiTime("2026-01-01T12:00:00+02:00") == kInstall);
  CHECK(ParseApiTime("2026-01-01T09:30:00-00:30") == kInstall);
  for (const char* bad :
       {"", "2026-01-01", "2026-01-01T10:00:00", "2026-13-01T10:00:00Z", "2026-01-01T10:00:00Zjunk",
        "2026-01-01T10:00:00.Z", "2026-01-01 10:00:00Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseApiTime(bad));
  }
}

TEST_CASE("an injected pod reports, starts, or is silent, counted in its sidecar's intervals") {
  const SilenceBound bound{120s, 3};
  const InjectionFacts inj = Installed();
  const PodFacts old_pod = Pod(true, kNow - 1h);

  CHECK(Show(ReportStateOf(&old_pod, LastReport{"pod-uid-1", kNow - 100s, {}}, inj, bound, kNow)) ==
        "reporting/report_accepted");
  // 3 × 120 s is the bound: at it still reporting, past it silent.
  CHECK(Show(ReportStateOf(&old_pod, LastReport{"pod-uid-1", kNow - 360s, {}}, inj, bound, kNow)) ==
        "reporting/report_accepted");
  CHECK(Show(ReportStateOf(&old_pod, LastReport{"pod-uid-1", kNow - 361s, {}}, inj, bound, kNow)) ==
        "silent/stopped_reporting");
  // The sidecar said it reports every 600 s: 20 minutes of quiet is normal for it.
  CHECK(Show(ReportStateOf(&old_pod, LastReport{"pod-uid-1", kNow - 20min, 600s}, inj, bound,
                           kNow)) == "reporting/report_accepted");
  CHECK(Show(ReportStateOf(&old_pod, std::nullopt, inj, bound, kNow)) == "silent/never_reported");
  // Its last word was that libvirt is down: that is why it went quiet.
  CHECK(Show(ReportStateOf(&old_pod, LastReport{"pod-uid-1", kNow - 1h, {}, false}, inj, bound,
                           kNow)) == "silent/libvirt_down");
  // The last report came from the pod before a migration: this pod never reported.
  CHECK(Show(ReportStateOf(&old_pod, LastReport{"old-pod", kNow - 10s, {}}, inj, bound, kNow)) ==
        "silent/never_reported");

  const PodFacts new_pod = Pod(true, kNow - 5min);
  CHECK(Show(ReportStateOf(&new_pod, std::nullopt, inj, bound, kNow)) ==
        "starting/awaiting_first_report");
  const PodFacts older = Pod(true, kNow - 7min);
  CHECK(Show(ReportStateOf(&older, std::nullopt, inj, bound, kNow)) == "silent/never_reported");
  // A bound of 1 interval is stricter.
  CHECK(Show(ReportStateOf(&new_pod, std::nullopt, inj, {120s, 1}, kNow)) ==
        "silent/never_reported");
}

TEST_CASE("a pod without the sidecar says why: the owner's choice first, then the cluster's") {
  const SilenceBound bound;
  PodFacts pod = Pod(false, kNow - 1h);
  InjectionFacts inj = Installed();
  CHECK(Show(ReportStateOf(&pod, std::nullopt, inj, bound, kNow)) ==
        "not_injected/webhook_skipped");

  inj.native_sidecars = false;
  CHECK(Show(ReportStateOf(&pod, std::nullopt, inj, bound, kNow)) ==
        "not_injected/no_native_sidecars");

  const PodFacts before = Pod(false, kInstall - 1s);
  CHECK(Show(ReportStateOf(&before, std::nullopt, inj, bound, kNow)) ==
        "not_injected/pod_predates_install");
  const PodFacts same_second = Pod(false, kInstall);
  CHECK(Show(ReportStateOf(&same_second, std::nullopt, Installed(), bound, kNow)) ==
        "not_injected/webhook_skipped");

  InjectionFacts off;
  off.webhook_installed = false;
  CHECK(Show(ReportStateOf(&pod, std::nullopt, off, bound, kNow)) == "not_injected/injection_off");
  CHECK(Show(ReportStateOf(&pod, std::nullopt, InjectionFacts{}, bound, kNow)) ==
        "not_injected/injection_unknown");

  off.opted_out_namespaces = {"team-a"};
  CHECK(Show(ReportStateOf(&pod, std::nullopt, off, bound, kNow)) ==
        "not_injected/namespace_opted_out");
  pod.opted_out = true;
  CHECK(Show(ReportStateOf(&pod, std::nullopt, off, bound, kNow)) == "not_injected/opted_out");

  CHECK(Show(ReportStateOf(nullptr, std::nullopt, Installed(), bound, kNow)) ==
        "not_injected/no_launcher_pod");
  // Reports from the pod prove a sidecar its spec does not show (added by hand).
  CHECK(Show(ReportStateOf(&pod, LastReport{"pod-uid-1", kNow - 10s, {}}, inj, bound, kNow)) ==
        "reporting/report_accepted");
  CHECK(Show(ReportStateOf(&pod, LastReport{"pod-uid-1", kNow - 1h, {}}, inj, bound, kNow)) ==
        "not_injected/opted_out");
  // A reason outside the published list would be a series no alert or panel knows.
  for (const PodFacts* p : std::vector<const PodFacts*>{&pod, &before}) {
    const auto s = ReportStateOf(p, std::nullopt, inj, bound, kNow);
    bool listed = false;
    for (const auto& [state, reason] : kReportStateReasons)
      listed |= state == s.state && std::string(reason) == s.reason;
    CHECK(listed);
  }
}

TEST_CASE("every running VMI gets exactly one row, from its active pod") {
  auto vmi = [](const std::string& name, const std::string& phase, const std::string& pod_uid) {
    VmiFacts v;
    v.namespace_ = "team-a";
    v.name = name;
    v.uid = name + "-uid";
    v.phase = phase;
    v.node_name = "node-1";
    if (!pod_uid.empty()) v.active_pods[pod_uid] = "node-1";
    return v;
  };
  PodFacts source = Pod(true, kNow - 2h);  // a migration's source: not active any more
  source.uid = "src";
  source.node = "node-0";
  PodFacts target = Pod(true, kNow - 1min);
  target.uid = "dst";
  PodFacts other = Pod(false, kNow - 1h);
  other.vmi_name = "vm-2";
  other.uid = "p2";
  std::vector<std::pair<std::string, VmiFacts>> vmis;
  for (const auto& v : {vmi("vm-1", "Running", "dst"), vmi("vm-2", "Running", "p2"),
                        vmi("vm-3", "Running", ""), vmi("vm-4", "Scheduling", "")})
    vmis.emplace_back(Key(v.namespace_, v.name), v);
  std::vector<std::pair<std::string, PodFacts>> pods;
  for (const auto& p : {source, target, other}) pods.emplace_back(Key(p.namespace_, p.name), p);
  const auto rows = ReportStates(
      vmis, pods,
      [](const std::string& key) -> std::optional<LastReport> {
        if (key == "team-a/vm-1") return LastReport{"src", kNow - 30s, {}};
        return std::nullopt;
      },
      Installed(), SilenceBound{}, kNow);
  REQUIRE(rows.size() == 3);  // vm-4 is not running
  CHECK(rows[0].name == "vm-1");
  CHECK(rows[0].node == "node-1");
  CHECK(Show(rows[0].state) == "starting/awaiting_first_report");  // the source's report is not its
  CHECK(Show(rows[1].state) == "not_injected/webhook_skipped");
  CHECK(Show(rows[2].state) == "not_injected/no_launcher_pod");
}

TEST_CASE("the store's last accepted report outlives its freshness and dates the silence") {
  ReportStore store(300s);
  const auto t = Clock::time_point{} + 100000s;
  gm::Report r;
  r.namespace_ = "team-a";
  r.vmi_name = "vm-1";
  r.pod_uid = "pod-uid-1";
  r.health = gm::ReportHealth{true, 600, 0, ""};
  REQUIRE(store.Put("team-a/vm-1", {r, "node-1", t}) == PutResult::kChanged);
  CHECK(store.WithFresh(
      t + 400s, [](const auto& fresh) { return fresh.empty(); }));  // its load and ratios are gone
  std::map<std::string, VmiFacts> vmis;
  VmiFacts& vmi = vmis["team-a/vm-1"];
  vmi.namespace_ = "team-a";
  vmi.name = "vm-1";
  vmi.phase = "Running";
  vmi.active_pods["pod-uid-1"] = "";
  const std::map<std::string, PodFacts> pods{{"team-a/p", Pod(true, kNow - 2h)}};
  const auto at = [&](Clock::duration after) {
    return Show(CurrentReportStates(vmis, pods, store, Installed(), SilenceBound{}, t + after,
                                    kNow + after)[0]
                    .state);
  };
  CHECK(at(400s) == "reporting/report_accepted");  // 3 × its own 600 s
  CHECK(at(1801s) == "silent/stopped_reporting");
  store.Erase("team-a/vm-1");  // the VMI is gone
  CHECK_FALSE(store.LastAccepted("team-a/vm-1"));
}

TEST_CASE("/metrics: one state row per running VMI, counts per state, and the sidecars' health") {
  ReportStore store(300s);
  const auto t = Clock::time_point{} + 100000s;
  gm::Report r;
  r.namespace_ = "team-a";
  r.vmi_name = "vm-1";
  r.pod_uid = "pod-uid-1";
  r.load_reason = "agent_disconnected";
  r.health = gm::ReportHealth{false, 120, 4, "http_503"};
  store.Put("team-a/vm-1", {r, "node-7", t});
  gm::Report old = r;  // a sidecar from before the health field
  old.vmi_name = "vm-2";
  old.health.reset();
  old.load_reason = "ok";
  store.Put("team-a/vm-2", {old, "node-8", t});

  const std::vector<VmiStateRow> rows{
      {"team-a", "vm-1", "node-7", {ReportState::kReporting, "report_accepted"}},
      {"team-a", "vm-3", "node-8", {ReportState::kSilent, "never_reported"}},
      {"team-b", "vm-4", "node-8", {ReportState::kSilent, "never_reported"}},
  };
  ReporterMetrics self;
  const std::string text = RenderReporterMetrics(store, t + 1s, true, self, true, &rows);
  const auto has = [&](const std::string& s) { return text.find(s) != std::string::npos; };
  CHECK(
      has("status_reporter_vmi_report_state{namespace=\"team-a\",name=\"vm-1\",node=\"node-7\","
          "state=\"reporting\",reason=\"report_accepted\"} 1\n"));
  CHECK(
      has("status_reporter_vmi_report_state{namespace=\"team-b\",name=\"vm-4\",node=\"node-8\","
          "state=\"silent\",reason=\"never_reported\"} 1\n"));
  CHECK(has("status_reporter_vmis{state=\"silent\",reason=\"never_reported\"} 2\n"));
  CHECK(has("status_reporter_vmis{state=\"reporting\",reason=\"report_accepted\"} 1\n"));
  CHECK(has("status_reporter_vmis{state=\"not_injected\",reason=\"opted_out\"} 0\n"));
  CHECK(
      has("status_reporter_sidecar_libvirt_up{namespace=\"team-a\",name=\"vm-1\","
          "node=\"node-7\"} 0\n"));
  CHECK(
      has("status_reporter_sidecar_report_failures{namespace=\"team-a\",name=\"vm-1\","
          "node=\"node-7\",error=\"http_503\"} 4\n"));
  CHECK(
      has("status_reporter_sidecar_guest_load_status{namespace=\"team-a\",name=\"vm-1\","
          "node=\"node-7\",reason=\"agent_disconnected\"} 1\n"));
  CHECK(
      has("status_reporter_sidecar_guest_load_status{namespace=\"team-a\",name=\"vm-2\","
          "node=\"node-8\",reason=\"ok\"} 1\n"));
  // The old sidecar said nothing about libvirt or its failures: no made-up values.
  CHECK_FALSE(has("status_reporter_sidecar_libvirt_up{namespace=\"team-a\",name=\"vm-2\""));
  CHECK_FALSE(has("status_reporter_sidecar_report_failures{namespace=\"team-a\",name=\"vm-2\""));

  // A standby knows no reports: no states and no counts, rather than zeros.
  const std::string standby = RenderReporterMetrics(store, t + 1s, true, self);
  CHECK(standby.find("status_reporter_vmis") == std::string::npos);
  CHECK(standby.find("status_reporter_vmi_report_state") == std::string::npos);
  // A leader with no running VMI says 0 for every state.
  const std::vector<VmiStateRow> none;
  CHECK(RenderReporterMetrics(store, t + 1s, true, self, true, &none)
            .find("status_reporter_vmis{state=\"silent\",reason=\"never_reported\"} 0\n") !=
        std::string::npos);
}
