#include "admission.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <set>

using namespace gm::reporter;
using nlohmann::json;

namespace {

constexpr NativeSidecars kNative = NativeSidecars::kYes;

// A VMI as the API serves it: 2 vCPUs, guest 2Gi, the memory request
// KubeVirt's webhook set up to v1.6.3.
json VmiObject() {
  return json::parse(R"({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
    "metadata": {"name": "vm-1", "namespace": "team-a"},
    "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "2Gi"},
                        "resources": {"requests": {"memory": "2Gi"}}}}})");
}

// The cluster's KubeVirt CR: its observed version, and developerConfiguration.
json KubeVirtList(const std::string& version, json dev = json::object()) {
  json cr = {{"metadata", {{"name", "kubevirt"}, {"namespace", "kubevirt"}}},
             {"spec", {{"configuration", {{"developerConfiguration", dev}}}}}};
  if (!version.empty()) cr["status"] = {{"observedKubeVirtVersion", version}};
  return {{"items", json::array({cr})}};
}

// The API, answering from memory: a tiny real ClusterLookup.
class Lookup final : public ClusterLookup {
 public:
  std::optional<json> vmi = VmiObject();
  std::optional<json> kubevirts = json{{"items", json::array()}};
  bool vmi_fails = false;
  bool cluster_fails = false;
  int calls = 0;
  Deadline last_deadline{};
  std::optional<json> Vmi(const std::string&, const std::string&, Deadline d) override {
    ++calls;
    last_deadline = d;
    if (vmi_fails) throw LookupFailed("GET vmi: timed out");
    return vmi;
  }
  std::optional<json> KubeVirts(Deadline d) override {
    ++calls;
    last_deadline = d;
    if (cluster_fails) throw LookupFailed("GET kubevirts: 503");
    return kubevirts;
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
           {{"uid", "req-1"},
            {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
            {"namespace", "team-a"},
            {"operation", op},
            {"object", pod}}}};
}

json Decode(const std::string& b64) {
  std::string out(b64.size(), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '\0') out.pop_back();  // padding
  return json::parse(out);
}

std::string EnvValue(const json& container, const std::string& name) {
  for (const auto& e : container["env"]) {
    if (e["name"] == name)
      return e.contains("value")
                 ? e["value"].get<std::string>()
                 : "fieldRef:" + e["valueFrom"]["fieldRef"]["fieldPath"].get<std::string>();
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
  CHECK(patch[0]["path"] ==
        "/spec/initContainers/-");  // appended after the existing init container
  for (const auto& op : patch)
    CHECK(op["path"].get<std::string>().find("/spec/containers") == std::string::npos);

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
  CHECK(c["volumeMounts"][0] ==
        json::parse(R"({"name":"libvirt-runtime","mountPath":"/var/run/libvirt"})"));

  CHECK(EnvValue(c, "GUEST_EXPORTER_LIBVIRT_URI") ==
        "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock");
  CHECK(EnvValue(c, "GUEST_EXPORTER_VMI_NAME") == "vm-1");
  CHECK(EnvValue(c, "GUEST_EXPORTER_POD_UID") == "fieldRef:metadata.uid");
  CHECK(EnvValue(c, "GUEST_EXPORTER_NODE_NAME") == "fieldRef:spec.nodeName");
  CHECK(EnvValue(c, "GUEST_EXPORTER_REPORTER_URL") == Config().reporter_url);
  CHECK(patch[1]["value"]["projected"]["sources"][0]["serviceAccountToken"]["audience"] ==
        "kubevirt-guest-metrics");
  // Burstable pod: no CPU limit added to the VM's pod.
  CHECK_FALSE(c["resources"]["limits"].contains("cpu"));
}

// The guest's shares, as the sidecar gets them: GUEST_EXPORTER_CPU_REQUEST =
// the vCPUs' share of the compute CPU request, GUEST_EXPORTER_VMI_MEMORY_REQUEST
// = the guest's memory request without overhead, and none of the raw inputs
// whose precedence in the sidecar would pick compute − overhead first.
namespace {

struct Shares {
  std::string cpu, memory, decision, detail;
};

Shares SharesFor(const json& pod, Lookup& lookup) {
  std::string decision, detail;
  const auto patch =
      InjectionPatch(pod, "team-a", Config(), lookup, decision, Soon(), kNative, &detail);
  REQUIRE(patch);
  const json& c = (*patch)[0]["value"];
  for (const char* raw : {"GUEST_EXPORTER_MEMORY_REQUEST", "GUEST_EXPORTER_MEMORY_OVERHEAD",
                          "GUEST_EXPORTER_CLUSTER_MEMORY_OVERCOMMIT"}) {
    CHECK_MESSAGE(EnvValue(c, raw) == "<absent>", raw);
  }
  return {EnvValue(c, "GUEST_EXPORTER_CPU_REQUEST"),
          EnvValue(c, "GUEST_EXPORTER_VMI_MEMORY_REQUEST"), decision, detail};
}

json PodWith(const std::string& image, json requests, json annotations = json::object()) {
  json pod = LauncherPod();
  pod["spec"]["containers"][0]["image"] = image;
  pod["spec"]["containers"][0]["resources"] = {{"requests", requests}};
  for (auto& [k, v] : annotations.items()) pod["metadata"]["annotations"][k] = v;
  return pod;
}

}  // namespace

TEST_CASE(
    "webhook shares: default VM - 100m per vCPU, the VMI's memory request; both lookups made") {
  Lookup lookup;
  const auto s = SharesFor(LauncherPod(), lookup);
  CHECK(s.cpu == "200m");
  CHECK(s.memory == "2147483648");  // 2Gi, not the compute request's 2262Mi
  CHECK(s.decision == "injected");
  CHECK(s.detail.empty());
  CHECK(lookup.calls == 2);

  // v1.9: the overhead annotation; the guest's share is compute − overhead.
  lookup.kubevirts = KubeVirtList("v1.9.0");
  const auto v19 = SharesFor(
      PodWith("quay.io/kubevirt/virt-launcher:v1.9.0", {{"cpu", "200m"}, {"memory", "2262Mi"}},
              {{"kubevirt.io/memory-overhead-bytes", "224395264"}}),
      lookup);
  CHECK(v19.cpu == "200m");
  CHECK(v19.memory == std::to_string(2262LL * 1048576 - 224395264));
}

TEST_CASE(
    "webhook shares: an IOThread pool is not the vCPUs' - 300m for 2 vCPUs + 1 pool CPU gives 200m "
    "(6.67 -> 10)") {
  Lookup lookup;
  lookup.vmi->at("spec")["domain"]["ioThreadsPolicy"] = "supplementalPool";
  lookup.vmi->at("spec")["domain"]["ioThreads"] = {{"supplementalPoolThreadCount", 1}};
  const json pod =
      PodWith("quay.io/kubevirt/virt-launcher", {{"cpu", "300m"}, {"memory", "2262Mi"}});

  // The KubeVirt CR says which release rendered the pod.
  lookup.kubevirts = KubeVirtList("v1.5.2");
  auto s = SharesFor(pod, lookup);
  CHECK(s.cpu == "200m");
  CHECK(s.decision == "injected");

  // No version anywhere (untagged image, no observedKubeVirtVersion): the
  // cluster's cpuAllocationRatio (KubeVirt's default 10 when the CR leaves it
  // unset) tells the rules apart.
  lookup.kubevirts = KubeVirtList("");
  s = SharesFor(pod, lookup);
  CHECK(s.cpu == "200m");

  // No KubeVirt CR at all: nothing tells them apart, so no CPU share, and the
  // log says what to give. The memory share does not need it.
  lookup.kubevirts = json{{"items", json::array()}};
  s = SharesFor(pod, lookup);
  CHECK(s.cpu == "<absent>");
  CHECK(s.memory == "2147483648");
  CHECK(s.decision == "injected");
  CHECK(s.detail.find("no CPU share: the KubeVirt version is unknown") != std::string::npos);
  CHECK(s.detail.find("give the version or the cluster's cpuAllocationRatio") != std::string::npos);
  CHECK(s.detail.find("\"team-a/virt-launcher-vm-1-*\"") != std::string::npos);
}

TEST_CASE(
    "webhook shares: dedicated CPUs with an isolated emulator thread - 4 of the 5 CPUs are the "
    "vCPUs'") {
  Lookup lookup;
  lookup.vmi->at("spec")["domain"]["cpu"] = {
      {"cores", 4}, {"dedicatedCpuPlacement", true}, {"isolateEmulatorThread", true}};
  lookup.kubevirts = KubeVirtList("v1.6.0");
  const auto s = SharesFor(
      PodWith("quay.io/kubevirt/virt-launcher:v1.6.0", {{"cpu", "5"}, {"memory", "2262Mi"}}),
      lookup);
  CHECK(s.cpu == "4");  // ratio 1.0, not 4 ÷ 5
}

TEST_CASE("webhook shares: an explicit CPU request is all the vCPUs', pool or not") {
  Lookup lookup;
  lookup.vmi->at("spec")["domain"]["cpu"] = {{"sockets", 2}, {"cores", 2}};
  lookup.vmi->at("spec")["domain"]["resources"]["requests"]["cpu"] = "500m";
  lookup.vmi->at("spec")["domain"]["ioThreadsPolicy"] = "supplementalPool";
  lookup.vmi->at("spec")["domain"]["ioThreads"] = {{"supplementalPoolThreadCount", 1}};
  lookup.kubevirts = KubeVirtList("v1.7.0");
  const auto s = SharesFor(
      PodWith("quay.io/kubevirt/virt-launcher:v1.7.0", {{"cpu", "500m"}, {"memory", "2262Mi"}}),
      lookup);
  CHECK(s.cpu == "500m");  // 4 vCPUs: ratio 8.0
}

TEST_CASE(
    "webhook shares: hugepages on v1.9 - the compute memory request is the overhead alone; "
    "the guest's is the pages") {
  Lookup lookup;
  json& domain = lookup.vmi->at("spec")["domain"];
  domain["memory"] = {{"guest", "4Gi"}, {"hugepages", {{"pageSize", "1Gi"}}}};
  domain["resources"] = {{"requests", {{"memory", "4Gi"}}}};
  lookup.kubevirts = KubeVirtList("v1.9.0");
  const auto s = SharesFor(PodWith("quay.io/kubevirt/virt-launcher:v1.9.0",
                                   {{"cpu", "200m"}, {"memory", "300Mi"}, {"hugepages-1Gi", "4Gi"}},
                                   {{"kubevirt.io/memory-overhead-bytes", "314572800"}}),
                           lookup);
  CHECK(s.memory == "4294967296");  // 4Gi: ratio 1.0 (compute − overhead would be 0)
  CHECK(s.cpu == "200m");
}

TEST_CASE(
    "webhook shares: v1.6.4+ without a VMI memory request - guest × 100 ÷ the CR's "
    "memoryOvercommit") {
  Lookup lookup;
  lookup.vmi->at("spec")["domain"]["resources"] = json::object();
  lookup.vmi->at("spec")["domain"]["memory"]["guest"] = "6Gi";
  lookup.kubevirts = KubeVirtList("v1.7.0", {{"memoryOvercommit", 150}});
  auto s = SharesFor(
      PodWith("quay.io/kubevirt/virt-launcher:v1.7.0", {{"cpu", "200m"}, {"memory", "4396Mi"}}),
      lookup);
  CHECK(s.memory == "4294967296");  // 6Gi × 100 ÷ 150 = 4Gi: ratio 1.5

  // No KubeVirt CR: the overcommit is unknown, so no memory share (no guess of 100).
  lookup.kubevirts = json{{"items", json::array()}};
  s = SharesFor(
      PodWith("quay.io/kubevirt/virt-launcher:v1.7.0", {{"cpu", "200m"}, {"memory", "4396Mi"}}),
      lookup);
  CHECK(s.memory == "<absent>");
  CHECK(s.cpu == "200m");
  CHECK(s.detail.find("no memory share: ") != std::string::npos);
}

TEST_CASE(
    "webhook shares: no such VMI - the sidecar goes in without shares, and that is no lookup "
    "failure") {
  Lookup lookup;
  lookup.vmi.reset();
  const auto s = SharesFor(LauncherPod(), lookup);
  CHECK(s.cpu == "<absent>");
  CHECK(s.memory == "<absent>");
  CHECK(s.decision == "injected");
  CHECK(s.detail ==
        "pod \"team-a/virt-launcher-vm-1-*\": no VMI \"vm-1\" in the namespace: no shares");
  CHECK(lookup.calls == 1);
}

TEST_CASE(
    "webhook shares: quantities the sidecar parses: whole millicores, else decimals; whole bytes") {
  CHECK(CpuQuantity(0.2) == "200m");
  CHECK(CpuQuantity(0.3 * 2 / 3) == "200m");
  CHECK(CpuQuantity(4) == "4");
  CHECK(CpuQuantity(1.5) == "1500m");
  CHECK(CpuQuantity(0.1 * 2 / 3) == "0.066666667");
  CHECK(CpuQuantity(1e-9) == "0.000000001");  // 1n, never "0"
  CHECK(MemoryQuantity(4294967296.0) == "4294967296");
  CHECK(MemoryQuantity(6.0 * 1073741824 * 100 / 150) == "4294967296");
  CHECK(MemoryQuantity(8.0 * 1073741824 * 100 / 150) == "5726623061");
}

TEST_CASE("a Guaranteed pod stays Guaranteed: the sidecar's limits equal its requests") {
  Lookup lookup;
  auto pod = LauncherPod();
  pod["spec"]["containers"][0]["resources"] = json::parse(
      R"({"requests":{"cpu":"2","memory":"2262Mi"},"limits":{"cpu":"2","memory":"2262Mi"}})");
  pod["spec"]["initContainers"][0]["resources"] =
      json::parse(R"({"limits":{"cpu":"10m","memory":"40M"}})");
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
  auto r =
      Admit(json::parse(R"({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"})"),
            Config(), lookup, Soon(), kNative);
  CHECK(r.http_status == 400);
  CHECK(r.body["message"].get<std::string>().find("admission.k8s.io/v1") != std::string::npos);
  r = Admit(
      json::parse(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}})"),
      Config(), lookup, Soon(), kNative);
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

TEST_CASE(
    "webhook shares: a failed lookup injects the sidecar without the shares that need it, never a "
    "guess") {
  Lookup lookup;
  lookup.vmi_fails = true;
  lookup.kubevirts = KubeVirtList("v1.5.2", {{"memoryOvercommit", 150}});
  const Deadline deadline = Soon();
  std::string decision, detail;
  auto patch = InjectionPatch(LauncherPod(), "team-a", Config(), lookup, decision, deadline,
                              kNative, &detail);
  REQUIRE(patch);
  CHECK(decision == "injected_lookup_failed");
  CHECK(detail == "pod \"team-a/virt-launcher-vm-1-*\": GET vmi: timed out");
  CHECK(lookup.calls == 1);  // no second lookup after a failure
  CHECK(lookup.last_deadline == deadline);
  const json& c = (*patch)[0]["value"];
  // Not the raw compute request (200m would be wrong for a VMI with an
  // IOThread pool), and no memory input at all.
  for (const char* name : {"GUEST_EXPORTER_CPU_REQUEST", "GUEST_EXPORTER_MEMORY_REQUEST",
                           "GUEST_EXPORTER_MEMORY_OVERHEAD", "GUEST_EXPORTER_VMI_MEMORY_REQUEST",
                           "GUEST_EXPORTER_CLUSTER_MEMORY_OVERCOMMIT"}) {
    CHECK_MESSAGE(EnvValue(c, name) == "<absent>", name);
  }

  // The KubeVirt CR gets no answer: what the pod and the VMI fix alone still
  // goes in (2 vCPUs at 200m, the VMI's 2Gi); the failure is counted.
  Lookup second;
  second.cluster_fails = true;
  const auto res = Admit(Review(LauncherPod()), Config(), second, Soon(), kNative);
  CHECK(res.decision == "injected_lookup_failed");
  CHECK(res.detail == "pod \"team-a/virt-launcher-vm-1-*\": GET kubevirts: 503");
  CHECK(res.body["response"]["allowed"] == true);
  REQUIRE(res.body["response"]["patchType"] == "JSONPatch");
  const json c2 = Decode(res.body["response"]["patch"])[0]["value"];
  CHECK(EnvValue(c2, "GUEST_EXPORTER_CPU_REQUEST") == "200m");
  CHECK(EnvValue(c2, "GUEST_EXPORTER_VMI_MEMORY_REQUEST") == "2147483648");
}

TEST_CASE(
    "webhook shares: the KubeVirt CR gives the observed version, memoryOvercommit and "
    "cpuAllocationRatio, else KubeVirt's defaults") {
  auto o = ShapeOptionsOf(
      KubeVirtList("v1.5.2", {{"memoryOvercommit", 150}, {"cpuAllocationRatio", 4}}));
  REQUIRE(o.kubevirt_version);
  CHECK(o.kubevirt_version->ToString() == "v1.5.2");
  CHECK(o.cluster_memory_overcommit == 150.0);
  CHECK(o.cluster_cpu_allocation_ratio == 4.0);
  // Unset (or nonsense) in the CR: KubeVirt uses 100 and 10; no version while it deploys.
  o = ShapeOptionsOf(KubeVirtList("", {{"memoryOvercommit", "x"}, {"cpuAllocationRatio", -1}}));
  CHECK_FALSE(o.kubevirt_version);
  CHECK(o.cluster_memory_overcommit == 100.0);
  CHECK(o.cluster_cpu_allocation_ratio == 10.0);
  o = ShapeOptionsOf(json::parse(R"({"items":[{"spec":{"configuration":{}}}]})"));
  CHECK(o.cluster_memory_overcommit == 100.0);
  CHECK(ShapeOptionsOf(KubeVirtList("not a version")).kubevirt_version == std::nullopt);
  // Mid-upgrade, either release may render a pod: no version from the CR.
  json upgrading = KubeVirtList("v1.5.1");
  upgrading["items"][0]["status"]["targetKubeVirtVersion"] = "v1.5.2";
  CHECK_FALSE(ShapeOptionsOf(upgrading).kubevirt_version);
  CHECK(ShapeOptionsOf(upgrading).cluster_cpu_allocation_ratio == 10.0);
  upgrading["items"][0]["status"]["observedKubeVirtVersion"] = "v1.5.2";  // done
  REQUIRE(ShapeOptionsOf(upgrading).kubevirt_version);
  CHECK(ShapeOptionsOf(upgrading).kubevirt_version->ToString() == "v1.5.2");
  // No KubeVirt CR: nothing to say.
  for (const char* none : {R"({"items":[]})", "{}", "[]"}) {
    o = ShapeOptionsOf(json::parse(none));
    CHECK_FALSE(o.kubevirt_version);
    CHECK_FALSE(o.cluster_memory_overcommit);
    CHECK_FALSE(o.cluster_cpu_allocation_ratio);
  }
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

TEST_CASE(
    "lookup budget: the API server's timeout less a margin; its default and maximum otherwise") {
  using std::chrono::milliseconds;
  CHECK(LookupBudget("5s") == milliseconds(4000));
  CHECK(LookupBudget("1s") == milliseconds(750));
  CHECK(LookupBudget("") == milliseconds(8000));  // 10 s default
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
  for (const auto& v : out["spec"]["volumes"])
    CHECK(volumes.insert(v["name"].get<std::string>()).second);
  for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
    if (!out["spec"].contains(list)) continue;
    for (const auto& c : out["spec"][list])
      CHECK(containers.insert(c["name"].get<std::string>()).second);
  }
  // Every mount of the sidecar has its volume.
  for (const auto& m : out["spec"]["initContainers"].back()["volumeMounts"])
    CHECK(volumes.count(m["name"].get<std::string>()));
}

}  // namespace

TEST_CASE(
    "volumes named like ours: the sidecar's volumes take free names, the pod's stay as they are") {
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
  CHECK(mounts[1] ==
        json::parse(R"({"name":"guest-exporter-run-1","mountPath":"/var/run/guest-exporter"})"));
  CHECK(mounts[2]["name"] == "guest-metrics-token-2");

  // No free name left: the pod goes in unchanged, and says why.
  pod = LauncherPod();
  pod["spec"]["volumes"].push_back({{"name", "guest-exporter-run"}, {"emptyDir", json::object()}});
  for (int i = 1; i <= 99; ++i) {
    pod["spec"]["volumes"].push_back(
        {{"name", "guest-exporter-run-" + std::to_string(i)}, {"emptyDir", json::object()}});
  }
  std::string detail;
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon(), kNative, &detail));
  CHECK(decision == "name_conflict");
  CHECK(detail ==
        "pod \"ns/virt-launcher-vm-1-*\": no free volume name for the sidecar; admitted unchanged");
}

TEST_CASE(
    "a container named guest-exporter that the webhook did not inject: admitted unchanged, "
    "name_conflict") {
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
    CHECK(detail ==
          std::string("pod \"ns/p\\n1\": its ") + list +
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

TEST_CASE(
    "without native sidecars, or before the server's version is known, launcher pods go in "
    "unchanged") {
  Lookup lookup;
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
  CHECK(Admit(Review(pod), Config(), lookup, Soon(), NativeSidecars::kNo).decision ==
        "not_launcher");
}

TEST_CASE(
    "/version bodies: gitVersion first, else major/minor; 1.29 and later have native sidecars") {
  struct Case {
    const char* body;
    int major, minor;
    NativeSidecars native;
  };
  for (
      const Case& c : {
          Case{
              R"({"major":"1","minor":"28+","gitVersion":"v1.28.3-gke.100","platform":"linux/amd64"})",
              1, 28, NativeSidecars::kNo},
          Case{R"({"major":"1","minor":"30","gitVersion":"v1.30.0+k3s1"})", 1, 30,
               NativeSidecars::kYes},
          Case{R"({"major":"1","minor":"29","gitVersion":"v1.29.0"})", 1, 29, NativeSidecars::kYes},
          Case{R"({"major":"1","minor":"26","gitVersion":"v1.26.15-eks-adc7111"})", 1, 26,
               NativeSidecars::kNo},
          Case{R"({"major":"1","minor":"33","gitVersion":"v1.33.1"})", 1, 33, NativeSidecars::kYes},
          Case{R"({"major":"1","minor":"29+","gitVersion":"unknown"})", 1, 29,
               NativeSidecars::kYes},
          Case{R"({"major":"1","minor":"27"})", 1, 27, NativeSidecars::kNo},
          Case{R"({"gitVersion":"v2.0.0"})", 2, 0, NativeSidecars::kYes},
      }) {
    CAPTURE(c.body);
    const ServerVersion v = ParseServerVersion(json::parse(c.body));
    CHECK(v.major == c.major);
    CHECK(v.minor == c.minor);
    CHECK(NativeSidecarsByVersion(v) == c.native);
  }
  CHECK(ParseServerVersion(json::parse(R"({"gitVersion":"v1.28.3-gke.100"})")).git_version ==
        "v1.28.3-gke.100");
  for (const char* bad :
       {R"({})", R"([])", R"("v1.30.0")", R"({"gitVersion":"banana"})", R"({"gitVersion":"v1"})",
        R"({"gitVersion":"v1.x.0","major":"1","minor":"x"})", R"({"gitVersion":"v123456.1.0"})",
        R"({"major":1,"minor":30})", R"({"major":"1","minor":"30-"})",
        R"({"gitVersion":"v1.29beta"})"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(ParseServerVersion(json::parse(bad)), std::invalid_argument);
  }
  CHECK_THROWS_WITH(
      ParseServerVersion(json::parse(R"({"gitVersion":"ban\nana"})")),
      R"(the /version answer has no version: gitVersion "ban\nana", major "", minor "")");
  CHECK_THROWS_AS(ParseServerVersion(json::parse("{nope", nullptr, false)), std::invalid_argument);
}
