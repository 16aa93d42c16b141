#include <doctest/doctest.h>

#include <openssl/evp.h>

#include <set>

#include "admission.h"

using namespace gm::reporter;
using nlohmann::json;

namespace {

constexpr NativeSidecars kNative = NativeSidecars::kYes;

class Lookup final : public ClusterLookup {
 public:
  std::optional<std::string> vmi_request;
  std::optional<std::string> overcommit;
  bool vmi_fails = false;
  bool cluster_fails = false;
  int calls = 0;
  Deadline last_deadline{};
  std::optional<std::string> VmiMemoryRequest(const std::string&, const std::string&, Deadline d) override {
    ++calls;
    last_deadline = d;
    if (vmi_fails) throw LookupFailed("GET vmi: timed out");
    return vmi_request;
  }
  std::optional<std::string> ClusterMemoryOvercommit(Deadline d) override {
    ++calls;
    last_deadline = d;
    if (cluster_fails) throw LookupFailed("GET kubevirts: 503");
    return overcommit;
  }
};

Deadline Soon() { return std::chrono::steady_clock::now() + std::chrono::seconds(5); }

json LauncherPod() {
  return json::parse(R"({
    "metadata": {"generateName": "virt-launcher-vm-1-", "namespace": "team-a",
                 "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "vmi-uid"},
                 "annotations": {"kubevirt.io/domain": "vm-1"}},
    "spec": {
      "securityContext": {"runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": true},
      "containers": [{"name": "compute", "image": "virt-launcher",
                      "resources": {"requests": {"cpu": "200m", "memory": "2262Mi"},
                                    "limits": {"memory": "2262Mi"}}}],
      "initContainers": [{"name": "container-disk-binary"}],
      "volumes": [{"name": "libvirt-runtime", "emptyDir": {}}]}})");
}

json Review(const json& pod, const std::string& op = "CREATE") {
  return {{"apiVersion", "admission.k8s.io/v1"},
          {"kind", "AdmissionReview"},
          {"request",
           {{"uid", "req-1"}, {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
            {"namespace", "team-a"}, {"operation", op}, {"object", pod}}}};
}

json Decode(const std::string& b64) {
  std::string out(b64.size(), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '\0') out.pop_back();  // padding
  return json::parse(out);
}

std::string EnvValue(const json& container, const std::string& name) {
  for (const auto& e : container["env"]) {
    if (e["name"] == name) return e.contains("value") ? e["value"].get<std::string>() : "fieldRef:" + e["valueFrom"]["fieldRef"]["fieldPath"].get<std::string>();
  }
  return "<absent>";
}

InjectionConfig Config() {
  InjectionConfig c;
  c.image = "registry.example/kubevirt-guest-metrics:0.1.0";
  c.reporter_url = "https://gm-status-reporter.gm.svc:443/v1/reports";
  c.reporter_ca_pem = "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n";
  return c;
}

}  // namespace

TEST_CASE("a launcher pod gets guest-exporter appended as a native sidecar, compute untouched") {
  Lookup lookup;
  lookup.vmi_request = "2Gi";
  const auto res = Admit(Review(LauncherPod()), Config(), lookup, Soon(), kNative);
  REQUIRE(res.http_status == 200);
  CHECK(res.decision == "injected");
  const json& resp = res.body["response"];
  CHECK(resp["uid"] == "req-1");
  CHECK(resp["allowed"] == true);
  CHECK(resp["patchType"] == "JSONPatch");
  const json patch = Decode(resp["patch"]);
  REQUIRE(patch.size() == 3);
  CHECK(patch[0]["op"] == "add");
  CHECK(patch[0]["path"] == "/spec/initContainers/-");  // appended after the existing init container
  for (const auto& op : patch) CHECK(op["path"].get<std::string>().find("/spec/containers") == std::string::npos);

  const json& c = patch[0]["value"];
  CHECK(c["name"] == "guest-exporter");
  CHECK(c["restartPolicy"] == "Always");
  CHECK(c["command"] == json::array({"/usr/local/bin/guest-exporter"}));
  CHECK(c["securityContext"]["runAsNonRoot"] == true);
  CHECK(c["securityContext"]["runAsUser"] == 107);
  CHECK(c["securityContext"]["allowPrivilegeEscalation"] == false);
  CHECK(c["securityContext"]["readOnlyRootFilesystem"] == true);
  CHECK(c["securityContext"]["capabilities"]["drop"] == json::array({"ALL"}));
  // No probes: readiness would gate the VMI's Ready condition; liveness is
  // the exporter's own watchdog, restarted by the kubelet (restartPolicy).
  CHECK_FALSE(c.contains("readinessProbe"));
  CHECK_FALSE(c.contains("livenessProbe"));
  CHECK_FALSE(c.contains("startupProbe"));
  CHECK(c["volumeMounts"][0] == json::parse(R"({"name":"libvirt-runtime","mountPath":"/var/run/libvirt"})"));

  CHECK(EnvValue(c, "GUEST_EXPORTER_LIBVIRT_URI") == "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock");
  CHECK(EnvValue(c, "GUEST_EXPORTER_VMI_NAME") == "vm-1");
  CHECK(EnvValue(c, "GUEST_EXPORTER_POD_UID") == "fieldRef:metadata.uid");
  CHECK(EnvValue(c, "GUEST_EXPORTER_NODE_NAME") == "fieldRef:spec.nodeName");
  CHECK(EnvValue(c, "GUEST_EXPORTER_CPU_REQUEST") == "200m");
  CHECK(EnvValue(c, "GUEST_EXPORTER_MEMORY_REQUEST") == "2262Mi");
  CHECK(EnvValue(c, "GUEST_EXPORTER_VMI_MEMORY_REQUEST") == "2Gi");
  CHECK(EnvValue(c, "GUEST_EXPORTER_REPORTER_URL") == Config().reporter_url);
  CHECK(patch[1]["value"]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "kubevirt-guest-metrics");
  // Burstable pod: no CPU limit added to the VM's pod.
  CHECK_FALSE(c["resources"]["limits"].contains("cpu"));
}

TEST_CASE("memory request source: the overhead annotation avoids any lookup; else VMI, else cluster") {
  Lookup lookup;
  auto pod = LauncherPod();
  pod["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] = "224395264";
  std::string decision;
  auto patch = InjectionPatch(pod, "team-a", Config(), lookup, decision, Soon(), kNative);
  REQUIRE(patch);
  CHECK(EnvValue((*patch)[0]["value"], "GUEST_EXPORTER_MEMORY_OVERHEAD") == "224395264");
  CHECK(lookup.calls == 0);

  lookup.overcommit = "150";
  patch = InjectionPatch(LauncherPod(), "team-a", Config(), lookup, decision, Soon(), kNative);
  CHECK(EnvValue((*patch)[0]["value"], "GUEST_EXPORTER_CLUSTER_MEMORY_OVERCOMMIT") == "150");
  CHECK(EnvValue((*patch)[0]["value"], "GUEST_EXPORTER_VMI_MEMORY_REQUEST") == "<absent>");
}

TEST_CASE("a Guaranteed pod stays Guaranteed: the sidecar's limits equal its requests") {
  Lookup lookup;
  auto pod = LauncherPod();
  pod["spec"]["containers"][0]["resources"] = json::parse(
      R"({"requests":{"cpu":"2","memory":"2262Mi"},"limits":{"cpu":"2","memory":"2262Mi"}})");
  pod["spec"]["initContainers"][0]["resources"] = json::parse(R"({"limits":{"cpu":"10m","memory":"40M"}})");
  std::string decision;
  const auto patch = InjectionPatch(pod, "team-a", Config(), lookup, decision, Soon(), kNative);
  REQUIRE(patch);
  const json& res = (*patch)[0]["value"]["resources"];
  CHECK(res["limits"] == res["requests"]);
  CHECK(res["limits"].contains("cpu"));
}

TEST_CASE("never twice, opt-out honoured, non-launchers and unknown shapes let through unchanged") {
  Lookup lookup;
  std::string decision;
  auto pod = LauncherPod();
  pod["spec"]["initContainers"].push_back(json::parse(
      R"({"name":"guest-exporter","restartPolicy":"Always","env":[{"name":"GUEST_EXPORTER_VMI_NAME","value":"vm-1"}]})"));
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative));
  CHECK(decision == "already_injected");

  pod = LauncherPod();
  pod["metadata"]["labels"]["guestmetrics.kubevirt.io/inject"] = "false";
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative));
  CHECK(decision == "opted_out");

  pod = LauncherPod();
  pod["metadata"]["labels"].erase("kubevirt.io");
  const auto res = Admit(Review(pod), Config(), lookup, Soon(), kNative);
  CHECK(res.decision == "not_launcher");
  CHECK(res.body["response"]["allowed"] == true);
  CHECK_FALSE(res.body["response"].contains("patch"));

  pod = LauncherPod();
  pod["spec"]["volumes"] = json::array();
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative));
  CHECK(decision == "not_understood");

  pod = LauncherPod();
  pod["spec"].erase("initContainers");  // first init container: the list is created
  const auto patch = InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative);
  REQUIRE(patch);
  CHECK((*patch)[0]["path"] == "/spec/initContainers");
  CHECK((*patch)[0]["value"].is_array());
}

TEST_CASE("a root launcher gets the system URI and no forced non-root user") {
  Lookup lookup;
  auto pod = LauncherPod();
  pod["spec"]["securityContext"] = json::object();
  std::string decision;
  const auto patch = InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative);
  REQUIRE(patch);
  const json& c = (*patch)[0]["value"];
  CHECK(EnvValue(c, "GUEST_EXPORTER_LIBVIRT_URI") == "qemu:///system");
  CHECK_FALSE(c["securityContext"].contains("runAsNonRoot"));
  CHECK(c["securityContext"]["capabilities"]["drop"] == json::array({"ALL"}));
}

TEST_CASE("malformed AdmissionReviews get a clear 400") {
  Lookup lookup;
  CHECK(Admit(json::parse("[]"), Config(), lookup, Soon(), kNative).http_status == 400);
  auto r = Admit(json::parse(R"({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"})"), Config(), lookup, Soon(), kNative);
  CHECK(r.http_status == 400);
  CHECK(r.body["message"].get<std::string>().find("admission.k8s.io/v1") != std::string::npos);
  r = Admit(json::parse(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}})"), Config(), lookup, Soon(), kNative);
  // A metav1 Status, which the API server's client reads its message from.
  CHECK(r.body["kind"] == "Status");
  CHECK(r.body["apiVersion"] == "v1");
  CHECK(r.body["status"] == "Failure");
  CHECK(r.body["reason"] == "BadRequest");
  CHECK(r.body["code"] == 400);
  CHECK(r.body["message"] == "malformed AdmissionReview: request.uid is missing");
  CHECK(r.decision == "malformed");
  r = Admit(json::parse("{not json", nullptr, false), Config(), lookup, Soon(), kNative);
  CHECK(r.http_status == 400);
  CHECK(r.body["message"] == "malformed AdmissionReview: the body is not JSON");
  // A well-formed review of something else is allowed unchanged.
  r = Admit(Review(LauncherPod(), "UPDATE"), Config(), lookup, Soon(), kNative);
  CHECK(r.http_status == 200);
  CHECK_FALSE(r.body["response"].contains("patch"));
}

TEST_CASE("a failed lookup injects the sidecar without a memory-request input, never a guess") {
  Lookup lookup;
  lookup.vmi_fails = true;
  lookup.overcommit = "150";  // would be wrong for a VMI with its own request
  const Deadline deadline = Soon();
  std::string decision, detail;
  auto patch = InjectionPatch(LauncherPod(), "team-a", Config(), lookup, decision, deadline, kNative, &detail);
  REQUIRE(patch);
  CHECK(decision == "injected_without_memory_request");
  CHECK(detail == "GET vmi: timed out");
  CHECK(lookup.calls == 1);  // no second lookup after a failure
  CHECK(lookup.last_deadline == deadline);
  const json& c = (*patch)[0]["value"];
  for (const char* name : {"GUEST_EXPORTER_MEMORY_OVERHEAD", "GUEST_EXPORTER_VMI_MEMORY_REQUEST",
                           "GUEST_EXPORTER_CLUSTER_MEMORY_OVERCOMMIT"}) {
    CHECK(EnvValue(c, name) == "<absent>");
  }
  CHECK(EnvValue(c, "GUEST_EXPORTER_MEMORY_REQUEST") == "2262Mi");

  Lookup second;
  second.cluster_fails = true;
  const auto res = Admit(Review(LauncherPod()), Config(), second, Soon(), kNative);
  CHECK(res.decision == "injected_without_memory_request");
  CHECK(res.detail == "GET kubevirts: 503");
  CHECK(res.body["response"]["allowed"] == true);
  CHECK(res.body["response"]["patchType"] == "JSONPatch");
}

TEST_CASE("lookup answers: the VMI's memory request; the KubeVirt CR's memoryOvercommit or KubeVirt's default") {
  CHECK(VmiMemoryRequestOf(json::parse(R"({"spec":{"domain":{"resources":{"requests":{"memory":"2Gi"}}}}})")) == "2Gi");
  CHECK_FALSE(VmiMemoryRequestOf(json::parse(R"({"spec":{"domain":{"resources":{}}}})")));
  CHECK_FALSE(VmiMemoryRequestOf(json::parse(R"({"spec":{"domain":{"resources":{"requests":{"memory":2}}}}})")));
  CHECK_FALSE(VmiMemoryRequestOf(json::parse("[]")));

  CHECK(MemoryOvercommitOf(json::parse(
            R"({"items":[{"spec":{"configuration":{"developerConfiguration":{"memoryOvercommit":150}}}}]})")) == "150");
  // Unset (or nonsense) in the CR: KubeVirt uses 100.
  CHECK(MemoryOvercommitOf(json::parse(R"({"items":[{"spec":{"configuration":{}}}]})")) == "100");
  CHECK(MemoryOvercommitOf(json::parse(
            R"({"items":[{"spec":{"configuration":{"developerConfiguration":{"memoryOvercommit":"x"}}}}]})")) == "100");
  // No KubeVirt CR: nothing to say.
  CHECK_FALSE(MemoryOvercommitOf(json::parse(R"({"items":[]})")));
  CHECK_FALSE(MemoryOvercommitOf(json::parse(R"({})")));
}

TEST_CASE("Go durations, as the API server writes the webhook's timeout parameter") {
  using std::chrono::milliseconds;
  CHECK(ParseGoDuration("10s") == milliseconds(10000));
  CHECK(ParseGoDuration("4.5s") == milliseconds(4500));
  CHECK(ParseGoDuration("4.999876543s") == milliseconds(4999));
  CHECK(ParseGoDuration("1m0s") == milliseconds(60000));
  CHECK(ParseGoDuration("1h2m3s") == milliseconds(3723000));
  CHECK(ParseGoDuration("300ms") == milliseconds(300));
  CHECK(ParseGoDuration("1500us") == milliseconds(1));
  CHECK(ParseGoDuration("0") == milliseconds(0));
  for (const char* bad : {"", "5", "s", "5x", "-5s", "1.2.3s", "5 s", ".s", "10S"}) {
    CHECK_MESSAGE(!ParseGoDuration(bad), bad);
  }
}

TEST_CASE("lookup budget: the API server's timeout less a margin; its default and maximum otherwise") {
  using std::chrono::milliseconds;
  CHECK(LookupBudget("5s") == milliseconds(4000));
  CHECK(LookupBudget("1s") == milliseconds(750));
  CHECK(LookupBudget("") == milliseconds(8000));       // 10 s default
  CHECK(LookupBudget("soon") == milliseconds(8000));
  CHECK(LookupBudget("0") == milliseconds(8000));
  CHECK(LookupBudget("10m0s") == milliseconds(24000));  // capped at 30 s
  CHECK(LookupBudget("100ms") == milliseconds(0));
}

TEST_CASE("a subresource or a non-CREATE operation is allowed unchanged") {
  Lookup lookup;
  auto review = Review(LauncherPod());
  review["request"]["subResource"] = "ephemeralcontainers";
  const auto r = Admit(review, Config(), lookup, Soon(), kNative);
  CHECK(r.http_status == 200);
  CHECK(r.body["response"]["allowed"] == true);
  CHECK_FALSE(r.body["response"].contains("patch"));
  CHECK(lookup.calls == 0);
}

namespace {

// Every volume and container name of the pod after `patch`, applied as the
// API server applies it.
void CheckNamesUnique(const json& pod, const json& patch) {
  const json out = pod.patch(patch);
  std::set<std::string> volumes, containers;
  for (const auto& v : out["spec"]["volumes"]) CHECK(volumes.insert(v["name"].get<std::string>()).second);
  for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
    if (!out["spec"].contains(list)) continue;
    for (const auto& c : out["spec"][list]) CHECK(containers.insert(c["name"].get<std::string>()).second);
  }
  // Every mount of the sidecar has its volume.
  for (const auto& m : out["spec"]["initContainers"].back()["volumeMounts"]) CHECK(volumes.count(m["name"].get<std::string>()));
}

}  // namespace

TEST_CASE("volumes named like ours: the sidecar's volumes take free names, the pod's stay as they are") {
  Lookup lookup;
  auto pod = LauncherPod();
  for (const char* name : {"guest-exporter-run", "guest-metrics-token", "guest-metrics-token-1"}) {
    pod["spec"]["volumes"].push_back({{"name", name}, {"emptyDir", json::object()}});
  }
  std::string decision;
  const auto patch = InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative);
  REQUIRE(patch);
  CHECK(decision == "injected");
  CheckNamesUnique(pod, *patch);
  const json out = pod.patch(*patch);
  const json& volumes = out["spec"]["volumes"];
  REQUIRE(volumes.size() == 6);
  CHECK(volumes[4]["name"] == "guest-metrics-token-2");
  CHECK(volumes[4].contains("projected"));
  CHECK(volumes[5]["name"] == "guest-exporter-run-1");
  const json& mounts = out["spec"]["initContainers"].back()["volumeMounts"];
  CHECK(mounts[1] == json::parse(R"({"name":"guest-exporter-run-1","mountPath":"/var/run/guest-exporter"})"));
  CHECK(mounts[2]["name"] == "guest-metrics-token-2");

  // No free name left: the pod goes in unchanged, and says why.
  pod = LauncherPod();
  pod["spec"]["volumes"].push_back({{"name", "guest-exporter-run"}, {"emptyDir", json::object()}});
  for (int i = 1; i <= 99; ++i) {
    pod["spec"]["volumes"].push_back({{"name", "guest-exporter-run-" + std::to_string(i)}, {"emptyDir", json::object()}});
  }
  std::string detail;
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative, &detail));
  CHECK(decision == "name_conflict");
  CHECK(detail == "pod \"ns/virt-launcher-vm-1-*\": no free volume name for the sidecar; admitted unchanged");
}

TEST_CASE("a container named guest-exporter that the webhook did not inject: admitted unchanged, name_conflict") {
  Lookup lookup;
  for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
    CAPTURE(list);
    auto pod = LauncherPod();
    if (!pod["spec"].contains(list)) pod["spec"][list] = json::array();
    pod["spec"][list].push_back({{"name", "guest-exporter"}, {"image", "someone-elses"}});
    pod["metadata"]["name"] = "p\n1";  // the submitter's text, escaped in the log line
    std::string decision, detail;
    CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative, &detail));
    CHECK(decision == "name_conflict");
    CHECK(detail == std::string("pod \"ns/p\\n1\": its ") + list +
                        " already have a container named guest-exporter that this webhook did not inject; "
                        "admitted unchanged");
    CHECK(lookup.calls == 0);
  }
  // Our own sidecar, from an earlier pass: already injected.
  auto pod = LauncherPod();
  std::string decision;
  const auto patch = InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative);
  REQUIRE(patch);
  CHECK_FALSE(InjectionPatch(pod.patch(*patch), "ns", Config(), lookup, decision, Soon(), kNative));
  CHECK(decision == "already_injected");
}

TEST_CASE("without native sidecars, or before the server's version is known, launcher pods go in unchanged") {
  Lookup lookup;
  lookup.vmi_request = "2Gi";
  auto res = Admit(Review(LauncherPod()), Config(), lookup, Soon(), NativeSidecars::kNo);
  CHECK(res.decision == "no_native_sidecars");
  CHECK(res.body["response"] == json::parse(R"({"uid":"req-1","allowed":true})"));
  res = Admit(Review(LauncherPod()), Config(), lookup, Soon(), NativeSidecars::kUnknown);
  CHECK(res.decision == "native_sidecars_unknown");
  CHECK_FALSE(res.body["response"].contains("patch"));
  CHECK(lookup.calls == 0);  // nothing asked of the API for a pod left alone
  // What comes before still comes first.
  auto pod = LauncherPod();
  pod["metadata"]["labels"].erase("kubevirt.io");
  CHECK(Admit(Review(pod), Config(), lookup, Soon(), NativeSidecars::kNo).decision == "not_launcher");
}

TEST_CASE("/version bodies: gitVersion first, else major/minor; 1.29 and later have native sidecars") {
  struct Case {
    const char* body;
    int major, minor;
    NativeSidecars native;
  };
  for (const Case& c : {
           Case{R"({"major":"1","minor":"28+","gitVersion":"v1.28.3-gke.100","platform":"linux/amd64"})", 1, 28,
                NativeSidecars::kNo},
           Case{R"({"major":"1","minor":"30","gitVersion":"v1.30.0+k3s1"})", 1, 30, NativeSidecars::kYes},
           Case{R"({"major":"1","minor":"29","gitVersion":"v1.29.0"})", 1, 29, NativeSidecars::kYes},
           Case{R"({"major":"1","minor":"26","gitVersion":"v1.26.15-eks-adc7111"})", 1, 26, NativeSidecars::kNo},
           Case{R"({"major":"1","minor":"33","gitVersion":"v1.33.1"})", 1, 33, NativeSidecars::kYes},
           Case{R"({"major":"1","minor":"29+","gitVersion":"unknown"})", 1, 29, NativeSidecars::kYes},
           Case{R"({"major":"1","minor":"27"})", 1, 27, NativeSidecars::kNo},
           Case{R"({"gitVersion":"v2.0.0"})", 2, 0, NativeSidecars::kYes},
       }) {
    CAPTURE(c.body);
    const ServerVersion v = ParseServerVersion(json::parse(c.body));
    CHECK(v.major == c.major);
    CHECK(v.minor == c.minor);
    CHECK(NativeSidecarsByVersion(v) == c.native);
  }
  CHECK(ParseServerVersion(json::parse(R"({"gitVersion":"v1.28.3-gke.100"})")).git_version == "v1.28.3-gke.100");
  for (const char* bad : {R"({})", R"([])", R"("v1.30.0")", R"({"gitVersion":"banana"})", R"({"gitVersion":"v1"})",
                          R"({"gitVersion":"v1.x.0","major":"1","minor":"x"})", R"({"gitVersion":"v123456.1.0"})",
                          R"({"major":1,"minor":30})", R"({"major":"1","minor":"30-"})", R"({"gitVersion":"v1.29beta"})"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(ParseServerVersion(json::parse(bad)), std::invalid_argument);
  }
  CHECK_THROWS_WITH(ParseServerVersion(json::parse(R"({"gitVersion":"ban\nana"})")),
                    R"(the /version answer has no version: gitVersion "ban\nana", major "", minor "")");
  CHECK_THROWS_AS(ParseServerVersion(json::parse("{nope", nullptr, false)), std::invalid_argument);
}
