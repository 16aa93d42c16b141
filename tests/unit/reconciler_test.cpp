#include "reconciler.h"

#include <doctest/doctest.h>

#include "fake_facts.h"
#include "metrics.h"

using namespace gm::reporter;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using Facts = gm::reporter::testing::MapFacts;

// Records writes; answers like an API server whose VMI CRD prunes (or keeps)
// the ratio fields, and can fail on demand.
class Writer final : public ObjectWriter {
 public:
  bool prunes = true;
  std::optional<int> fail_code;
  std::vector<std::string> calls;
  WriteResult PatchPod(const std::string& ns, const std::string& n, const json& p) override {
    calls.push_back("pod " + ns + "/" + n + " " + p.dump());
    return fail_code ? WriteResult{*fail_code, "boom", {}} : WriteResult{200, "", json::object()};
  }
  WriteResult PatchVmiStatus(const std::string& ns, const std::string& n, const json& p) override {
    calls.push_back("vmi-status " + ns + "/" + n + " " + p.dump());
    if (prunes)
      return {
          422, R"(strict decoding error: unknown field "status.memory.memoryOvercommitRatio")", {}};
    return {200, "", p};
  }
  WriteResult PatchVmi(const std::string& ns, const std::string& n, const json& p) override {
    calls.push_back("vmi " + ns + "/" + n + " " + p.dump());
    return {200, "", json::object()};
  }
};

struct Setup {
  ReportStore store{300s};
  Facts facts;
  Writer writer;
  ReporterMetrics metrics;
  Reconciler rec;
  explicit Setup(ReconcilerOptions options = {true, 600s})
      : rec(store, facts, writer, metrics, options) {
    facts.pods["ns/launcher-1"] = {"ns", "launcher-1", "uid-1", "node-1", "vm",
                                   true, false,        {},      {}};
    VmiFacts v;
    v.namespace_ = "ns";
    v.name = "vm";
    v.node_name = "node-1";
    v.active_pods = {{"uid-1", "node-1"}};
    facts.vmis["ns/vm"] = v;
    gm::Report r;
    r.namespace_ = "ns";
    r.vmi_name = "vm";
    r.pod_name = "launcher-1";
    r.pod_uid = "uid-1";
    r.cpu_allocation_ratio = 10.0;
    r.memory_overcommit_ratio = 1.5;
    store.Put("ns/vm", {r, "node-1", Clock::now()});
  }
};

// The mode series of the reporter's /metrics, e.g. "annotations=1 off=0 status=0 unknown=0".
std::string Modes(const ReporterMetrics& m) {
  ReportStore none{300s};
  const std::string text = RenderReporterMetrics(none, Clock::now(), true, m);
  std::string out;
  for (const char* mode : {"annotations", "off", "status", "unknown"}) {
    const std::string series =
        std::string("status_reporter_vmi_ratio_mode{mode=\"") + mode + "\"} ";
    const auto at = text.find(series);
    if (!out.empty()) out += ' ';
    out += std::string(mode) + "=" +
           (at == std::string::npos ? "absent" : text.substr(at + series.size(), 1));
  }
  return out;
}

}  // namespace

TEST_CASE(
    "stock KubeVirt (pruning CRD): pod annotated, status tried strictly once, then VMI "
    "annotations") {
  Setup s;
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  REQUIRE(s.writer.calls.size() == 3);
  CHECK(s.writer.calls[0].rfind("pod ns/launcher-1 ", 0) == 0);
  CHECK(s.writer.calls[1].rfind("vmi-status ns/vm ", 0) == 0);
  CHECK(
      s.writer.calls[2] ==
      R"(vmi ns/vm {"metadata":{"annotations":{"guestmetrics.kubevirt.io/cpu-allocation-ratio":"10.0","guestmetrics.kubevirt.io/memory-overcommit-ratio":"1.5"}}})");
  CHECK(s.rec.mode() == VmiRatioMode::kAnnotations);

  // The caches now show what was written: nothing more is written.
  s.facts.pods["ns/launcher-1"].cpu_ratio_annotation = "10.0";
  s.facts.pods["ns/launcher-1"].memory_ratio_annotation = "1.5";
  s.facts.vmis["ns/vm"].cpu_ratio_annotation = "10.0";
  s.facts.vmis["ns/vm"].memory_ratio_annotation = "1.5";
  s.writer.calls.clear();
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(s.writer.calls.empty());  // annotation mode does not re-probe before 600 s
}

TEST_CASE("a CRD that keeps the fields: status written, no VMI annotations") {
  Setup s;
  s.writer.prunes = false;
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  REQUIRE(s.writer.calls.size() == 2);
  CHECK(
      s.writer.calls[1] ==
      R"(vmi-status ns/vm {"status":{"currentCPUTopology":{"cpuAllocationRatio":10.0},"memory":{"memoryOvercommitRatio":1.5}}})");
  CHECK(s.rec.mode() == VmiRatioMode::kStatus);
}

TEST_CASE("a report from a pod that is no longer active writes nothing") {
  Setup s;
  s.facts.vmis["ns/vm"].active_pods = {{"uid-2", "node-2"}};
  s.facts.vmis["ns/vm"].node_name = "node-2";
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDrop);
  CHECK(s.writer.calls.empty());
  CHECK(s.rec.Reconcile("ns/unknown") == Outcome::kDrop);
}

TEST_CASE("transient API failures are retried, permanent ones dropped") {
  Setup s;
  for (int code : {0, 409, 429, 500, 503}) {
    s.writer.fail_code = code;
    CAPTURE(code);
    CHECK(s.rec.Reconcile("ns/vm") == Outcome::kRetry);
  }
  s.writer.fail_code = 404;
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDrop);
  s.writer.fail_code = 422;
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDrop);
}

TEST_CASE("a 200 that kept nothing also means pruning") {
  Setup s;
  class Silent final : public ObjectWriter {
   public:
    WriteResult PatchPod(const std::string&, const std::string&, const json&) override {
      return {200, "", {}};
    }
    WriteResult PatchVmiStatus(const std::string&, const std::string&, const json&) override {
      return {200, "", json::parse(R"({"status":{"memory":{"guestCurrent":"1Gi"}}})")};
    }
    WriteResult PatchVmi(const std::string&, const std::string&, const json&) override {
      return {200, "", {}};
    }
  } silent;
  Reconciler rec{s.store, s.facts, silent, s.metrics};
  CHECK(rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(rec.mode() == VmiRatioMode::kAnnotations);
}

TEST_CASE("resourceVersion as a number, 0 when it cannot be ordered") {
  CHECK(ResourceVersionNumber("123456") == 123456);
  CHECK(ResourceVersionNumber("9999999999999999999") == 9999999999999999999ULL);
  for (const char* rv : {"", "12a", "-1", " 1", "18446744073709551616", "abc"}) {
    CAPTURE(rv);
    CHECK(ResourceVersionNumber(rv) == 0);
  }
  const json pod = json::parse(
      R"({"metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"42"},"spec":{"nodeName":"n"}})");
  CHECK(PodFromJson(pod).resource_version == 42);
  const json vmi =
      json::parse(R"({"metadata":{"name":"v","namespace":"ns","uid":"u","resourceVersion":"43"}})");
  CHECK(VmiFromJson(vmi).resource_version == 43);
}

TEST_CASE("recent writes stand in for a cache that has not caught up, and only until it has") {
  const auto t0 = Clock::now();
  RecentWrites<PodFacts> written(120s);
  PodFacts cached;
  cached.resource_version = 5;
  PodFacts ours = cached;
  ours.resource_version = 6;
  ours.cpu_ratio_annotation = "10.0";

  CHECK(written.Newest("ns/p", cached, t0)->resource_version == 5);  // nothing written yet
  written.Remember("ns/p", ours, t0);
  CHECK(written.Newest("ns/p", cached, t0 + 1s)->cpu_ratio_annotation == "10.0");
  CHECK_FALSE(
      written.Newest("ns/p", std::nullopt, t0 + 1s));  // deleted meanwhile: gone, whatever we wrote

  written.Remember("ns/p", ours, t0);
  PodFacts caught_up = cached;
  caught_up.resource_version = 7;  // someone else wrote after us: the cache is the truth again
  CHECK(written.Newest("ns/p", caught_up, t0 + 1s)->resource_version == 7);
  CHECK(written.size() == 0);

  written.Remember("ns/p", ours, t0);
  CHECK(written.Newest("ns/p", cached, t0 + 121s)->resource_version ==
        5);  // a cache behind that long is trusted

  PodFacts unordered = ours;
  unordered.resource_version = 0;
  written.Remember("ns/p", unordered, t0);
  CHECK(written.size() == 0);
}

TEST_CASE("a reconcile on a cache that missed its own last write does not write again") {
  Setup s;
  s.facts.pods["ns/launcher-1"].resource_version = 5;
  s.facts.vmis["ns/vm"].resource_version = 5;
  s.facts.vmis["ns/vm"].uid = "vmi-uid";
  // Answers with the stored object, as the API server does.
  class Answering final : public ObjectWriter {
   public:
    int writes = 0;
    WriteResult PatchPod(const std::string&, const std::string&, const json& patch) override {
      ++writes;
      json pod = {{"metadata",
                   {{"name", "launcher-1"},
                    {"namespace", "ns"},
                    {"uid", "uid-1"},
                    {"resourceVersion", "6"},
                    {"labels", {{"kubevirt.io", "virt-launcher"}}}}},
                  {"spec", {{"nodeName", "node-1"}}}};
      pod["metadata"]["annotations"] = patch["metadata"]["annotations"];
      pod["metadata"]["annotations"]["kubevirt.io/domain"] = "vm";
      return {200, "", pod};
    }
    WriteResult PatchVmiStatus(const std::string&, const std::string&, const json& patch) override {
      ++writes;
      json vmi = {
          {"metadata",
           {{"name", "vm"}, {"namespace", "ns"}, {"uid", "vmi-uid"}, {"resourceVersion", "7"}}},
          {"status", patch["status"]}};
      vmi["status"]["nodeName"] = "node-1";
      vmi["status"]["activePods"] = {{"uid-1", "node-1"}};
      return {200, "", vmi};
    }
    WriteResult PatchVmi(const std::string&, const std::string&, const json&) override {
      ++writes;
      return {200, "", json::object()};
    }
  } api;
  Reconciler rec{s.store, s.facts, api, s.metrics};
  CHECK(rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(api.writes == 2);
  // The watch events of those writes have not arrived: the caches still hold version 5.
  CHECK(rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(api.writes == 2);

  // Someone removed the annotation after our write: the cache, newer, is believed.
  s.facts.pods["ns/launcher-1"].resource_version = 8;
  CHECK(rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(api.writes == 3);
}

TEST_CASE("before the first status write answers, the mode metric says unknown, not status") {
  Setup s;
  CHECK(s.rec.mode() == VmiRatioMode::kUnknown);
  CHECK(Modes(s.metrics) == "annotations=0 off=0 status=0 unknown=1");
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);  // the CRD prunes
  CHECK(Modes(s.metrics) == "annotations=1 off=0 status=0 unknown=0");

  Setup keeps;
  keeps.writer.prunes = false;
  CHECK(keeps.rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(Modes(keeps.metrics) == "annotations=0 off=0 status=1 unknown=0");
}

TEST_CASE("a VMI that already holds the status fields means the CRD keeps them") {
  Setup s;
  s.facts.vmis["ns/vm"].status_cpu_ratio = 10.0;
  s.facts.vmis["ns/vm"].status_memory_ratio = 1.5;
  s.facts.pods["ns/launcher-1"].cpu_ratio_annotation = "10.0";
  s.facts.pods["ns/launcher-1"].memory_ratio_annotation = "1.5";
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(s.writer.calls.empty());
  CHECK(s.rec.mode() == VmiRatioMode::kStatus);
}

TEST_CASE("ratios off: a report writes nothing to the pod or the VMI, and the metric says off") {
  Setup s{{false, 600s}};
  CHECK(Modes(s.metrics) == "annotations=0 off=1 status=0 unknown=0");
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  s.writer.prunes = false;
  s.rec.SchemaChanged();  // a CRD change does not turn writing on
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(s.writer.calls.empty());
  CHECK(s.rec.mode() == VmiRatioMode::kOff);
  CHECK(Modes(s.metrics) == "annotations=0 off=1 status=0 unknown=0");
}

TEST_CASE("a VMI CRD change re-probes at the next write, not after the 600 s period") {
  Setup s;
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  REQUIRE(s.rec.mode() == VmiRatioMode::kAnnotations);
  s.facts.vmis["ns/vm"].cpu_ratio_annotation = "10.0";
  s.facts.vmis["ns/vm"].memory_ratio_annotation = "1.5";
  s.facts.pods["ns/launcher-1"].cpu_ratio_annotation = "10.0";
  s.facts.pods["ns/launcher-1"].memory_ratio_annotation = "1.5";

  s.writer.prunes = false;  // KubeVirt upgraded: the CRD now keeps the fields
  s.writer.calls.clear();
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  CHECK(s.writer.calls.empty());  // without news of the CRD: waits for the period

  s.rec.SchemaChanged();
  CHECK(s.rec.Reconcile("ns/vm") == Outcome::kDone);
  REQUIRE(s.writer.calls.size() == 2);
  CHECK(s.writer.calls[0].rfind("vmi-status ns/vm ", 0) == 0);
  // The annotations of annotation mode are no longer the record: removed.
  CHECK(
      s.writer.calls[1] ==
      R"(vmi ns/vm {"metadata":{"annotations":{"guestmetrics.kubevirt.io/cpu-allocation-ratio":null,"guestmetrics.kubevirt.io/memory-overcommit-ratio":null}}})");
  CHECK(s.rec.mode() == VmiRatioMode::kStatus);
  CHECK(Modes(s.metrics) == "annotations=0 off=0 status=1 unknown=0");
}

TEST_CASE("annotation mode re-probes once per period, one write at a time") {
  const auto t0 = RatioModeProbe::Clock::now();
  RatioModeProbe p(600s, true);
  CHECK(p.TryStatus(t0));  // unknown: every write tries
  p.Pruned(t0);
  CHECK_FALSE(p.TryStatus(t0 + 599s));
  CHECK(p.TryStatus(t0 + 600s));
  CHECK_FALSE(p.TryStatus(t0 + 600s));  // the probe is out: the others write annotations
  p.SchemaChanged();
  CHECK(p.TryStatus(t0 + 601s));
  CHECK_FALSE(p.TryStatus(t0 + 601s));
  p.Kept();
  CHECK(p.TryStatus(t0 + 602s));
  CHECK(p.mode() == VmiRatioMode::kStatus);
}

TEST_CASE(
    "the VMI CRD counts as changed on a new generation, not on its first sighting or a relist") {
  const json v1 = json::parse(
      R"({"metadata":{"name":"virtualmachineinstances.kubevirt.io","generation":3,"resourceVersion":"100"}})");
  json v1_status = v1;  // a status-only change (conditions) keeps the generation
  v1_status["metadata"]["resourceVersion"] = "101";
  json v2 = v1;
  v2["metadata"]["generation"] = 4;
  v2["metadata"]["resourceVersion"] = "150";

  CrdChangeDetector d;
  CHECK(CrdFromJson(v1).generation == 3);
  CHECK_FALSE(d.Changed(CrdFromJson(v1)));  // first sighting: the first write probes anyway
  CHECK_FALSE(d.Changed(CrdFromJson(v1)));  // relist after a 410
  CHECK_FALSE(d.Changed(CrdFromJson(v1_status)));
  CHECK(d.Changed(CrdFromJson(v2)));
  CHECK_FALSE(d.Changed(CrdFromJson(v2)));
  d.Gone();
  CHECK(d.Changed(CrdFromJson(v2)));  // deleted and created again

  CrdChangeDetector no_generation;  // a server that gives none: resourceVersion decides
  CHECK_FALSE(no_generation.Changed(CrdFacts{"x", 0, "1"}));
  CHECK(no_generation.Changed(CrdFacts{"x", 0, "2"}));
  CHECK_THROWS_AS(CrdFromJson(json::parse(R"({"metadata":{}})")), std::invalid_argument);
}
