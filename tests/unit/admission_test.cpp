#include <doctest/doctest.h>

#include <openssl/evp.h>

#include "admission.h"

using namespace gm::reporter;
using nlohmann::json;

namespace {

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
  const auto res = Admit(Review(LauncherPod()), Config(), lookup, Soon());
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
  CHECK(c["readinessProbe"].contains("exec"));
  CHECK_FALSE(c["readinessProbe"].contains("httpGet"));
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
  auto patch = InjectionPatch(pod, "team-a", Config(), lookup, decision, Soon());
  REQUIRE(patch);
  CHECK(EnvValue((*patch)[0]["value"], "GUEST_EXPORTER_MEMORY_OVERHEAD") == "224395264");
  CHECK(lookup.calls == 0);

  lookup.overcommit = "150";
  patch = InjectionPatch(LauncherPod(), "team-a", Config(), lookup, decision, Soon());
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
  const auto patch = InjectionPatch(pod, "team-a", Config(), lookup, decision, Soon());
  REQUIRE(patch);
  const json& res = (*patch)[0]["value"]["resources"];
  CHECK(res["limits"] == res["requests"]);
  CHECK(res["limits"].contains("cpu"));
}

TEST_CASE("never twice, opt-out honoured, non-launchers and unknown shapes let through unchanged") {
  Lookup lookup;
  std::string decision;
  auto pod = LauncherPod();
  pod["spec"]["initContainers"].push_back({{"name", "guest-exporter"}});
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon()));
  CHECK(decision == "already_injected");

  pod = LauncherPod();
  pod["metadata"]["labels"]["guestmetrics.kubevirt.io/inject"] = "false";
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon()));
  CHECK(decision == "opted_out");

  pod = LauncherPod();
  pod["metadata"]["labels"].erase("kubevirt.io");
  const auto res = Admit(Review(pod), Config(), lookup, Soon());
  CHECK(res.decision == "not_launcher");
  CHECK(res.body["response"]["allowed"] == true);
  CHECK_FALSE(res.body["response"].contains("patch"));

  pod = LauncherPod();
  pod["spec"]["volumes"] = json::array();
  CHECK_FALSE(InjectionPatch(pod, "ns", Config(), lookup, decision, Soon()));
  CHECK(decision == "not_understood");

  pod = LauncherPod();
  pod["spec"].erase("initContainers");  // first init container: the list is created
  const auto patch = InjectionPatch(pod, "ns", Config(), lookup, decision, Soon());
  REQUIRE(patch);
  CHECK((*patch)[0]["path"] == "/spec/initContainers");
  CHECK((*patch)[0]["value"].is_array());
}

TEST_CASE("a root launcher gets the system URI and no forced non-root user") {
  Lookup lookup;
  auto pod = LauncherPod();
  pod["spec"]["securityContext"] = json::object();
  std::string decision;
  const auto patch = InjectionPatch(pod, "ns", Config(), lookup, decision, Soon());
  REQUIRE(patch);
  const json& c = (*patch)[0]["value"];
  CHECK(EnvValue(c, "GUEST_EXPORTER_LIBVIRT_URI") == "qemu:///system");
  CHECK_FALSE(c["securityContext"].contains("runAsNonRoot"));
  CHECK(c["securityContext"]["capabilities"]["drop"] == json::array({"ALL"}));
}

TEST_CASE("malformed AdmissionReviews get a clear 400") {
  Lookup lookup;
  CHECK(Admit(json::parse("[]"), Config(), lookup, Soon()).http_status == 400);
  auto r = Admit(json::parse(R"({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"})"), Config(), lookup, Soon());
  CHECK(r.http_status == 400);
  CHECK(r.body["message"].get<std::string>().find("admission.k8s.io/v1") != std::string::npos);
  r = Admit(json::parse(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}})"), Config(), lookup, Soon());
  // A metav1 Status, which the API server's client reads its message from.
  CHECK(r.body["kind"] == "Status");
  CHECK(r.body["apiVersion"] == "v1");
  CHECK(r.body["status"] == "Failure");
  CHECK(r.body["reason"] == "BadRequest");
  CHECK(r.body["code"] == 400);
  CHECK(r.body["message"] == "malformed AdmissionReview: request.uid is missing");
  CHECK(r.decision == "malformed");
  r = Admit(json::parse("{not json", nullptr, false), Config(), lookup, Soon());
  CHECK(r.http_status == 400);
  CHECK(r.body["message"] == "malformed AdmissionReview: the body is not JSON");
  // A well-formed review of something else is allowed unchanged.
  r = Admit(Review(LauncherPod(), "UPDATE"), Config(), lookup, Soon());
  CHECK(r.http_status == 200);
  CHECK_FALSE(r.body["response"].contains("patch"));
}

TEST_CASE("a failed lookup injects the sidecar without a memory-request input, never a guess") {
  Lookup lookup;
  lookup.vmi_fails = true;
  lookup.overcommit = "150";  // would be wrong for a VMI with its own request
  const Deadline deadline = Soon();
  std::string decision, detail;
  auto patch = InjectionPatch(LauncherPod(), "team-a", Config(), lookup, decision, deadline, &detail);
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
  const auto res = Admit(Review(LauncherPod()), Config(), second, Soon());
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
  const auto r = Admit(review, Config(), lookup, Soon());
  CHECK(r.http_status == 200);
  CHECK(r.body["response"]["allowed"] == true);
  CHECK_FALSE(r.body["response"].contains("patch"));
  CHECK(lookup.calls == 0);
}
