#include "admission.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <set>
#include <stdexcept>

namespace gm::reporter {

using nlohmann::json;

namespace {

constexpr const char* kTokenVolume = "guest-metrics-token";
constexpr const char* kRunVolume = "guest-exporter-run";
constexpr const char* kTokenDir = "/var/run/secrets/guest-metrics";
constexpr const char* kRunDir = "/var/run/guest-exporter";
// Suffixes tried when a pod already has a volume of our name (-1 … -99).
constexpr int kMaxNameSuffix = 99;

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

const json& At(const json& j, const char* key) {
  static const json kNull;
  return j.is_object() && j.contains(key) ? j[key] : kNull;
}

std::string Str(const json& j, const char* key) {
  const json& v = At(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

bool HasContainerNamed(const json& list, const std::string& name) {
  if (!list.is_array()) return false;
  for (const auto& c : list) {
    if (Str(c, "name") == name) return true;
  }
  return false;
}

// The sidecar as this webhook injects it (by an earlier pass, or an older
// version of it): a native sidecar of our name that reads our settings.
bool IsOurSidecar(const json& c) {
  if (Str(c, "name") != kSidecarName || Str(c, "restartPolicy") != "Always") return false;
  const json& env = At(c, "env");
  if (!env.is_array()) return false;
  return std::any_of(env.begin(), env.end(),
                     [](const json& e) { return Str(e, "name") == "GUEST_EXPORTER_VMI_NAME"; });
}

// `base`, else base-1 … base-99: the first name no volume of the pod has. A
// duplicate volume name makes the API server refuse the pod
// (validation.go, ValidateVolumes).
std::optional<std::string> FreeName(const std::string& base, const std::set<std::string>& taken) {
  if (!taken.count(base)) return base;
  for (int i = 1; i <= kMaxNameSuffix; ++i) {
    std::string candidate = base + "-" + std::to_string(i);
    if (!taken.count(candidate)) return candidate;
  }
  return std::nullopt;
}

// namespace/name (or generateName) of a pod, quoted and escaped: it is the
// submitter's text and goes into a log line.
std::string PodRef(const json& meta, const std::string& ns) {
  std::string name = Str(meta, "name");
  if (name.empty()) name = Str(meta, "generateName") + "*";
  return json(ns + "/" + name).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Up to 4 decimal digits at text[i], moving i past them.
std::optional<int> Digits(std::string_view text, size_t& i) {
  const size_t start = i;
  while (i < text.size() && i - start < 5 && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == start || i - start > 4) return std::nullopt;
  return std::stoi(std::string(text.substr(start, i - start)));
}

// Guaranteed QoS: every container sets cpu and memory limits equal to requests
// (a missing request defaults to the limit).
bool IsGuaranteed(const json& spec) {
  for (const char* list : {"containers", "initContainers"}) {
    const json& cs = At(spec, list);
    if (!cs.is_array()) continue;
    for (const auto& c : cs) {
      const json& res = At(c, "resources");
      const json& limits = At(res, "limits");
      const json& requests = At(res, "requests");
      for (const char* r : {"cpu", "memory"}) {
        if (!At(limits, r).is_string()) return false;
        if (At(requests, r).is_string() && requests[r] != limits[r]) return false;
      }
    }
  }
  return true;
}

json Env(const char* name, const std::string& value) { return {{"name", name}, {"value", value}}; }
json FieldEnv(const char* name, const char* path) {
  return {{"name", name}, {"valueFrom", {{"fieldRef", {{"fieldPath", path}}}}}};
}

}  // namespace

gm::ShapeOptions ShapeOptionsOf(const json& kubevirt_list) {
  gm::ShapeOptions o;
  const json& items = At(kubevirt_list, "items");
  if (!items.is_array() || items.empty()) return o;
  // KubeVirt runs from one CR; a second one is refused by its operator.
  const json& cr = items[0];
  // Empty while the operator deploys, and then unknown: the module falls back
  // to the compute image's tag. Mid-upgrade (target ≠ observed) pods are
  // rendered by either release, so the CR names none of them.
  const std::string observed = Str(At(cr, "status"), "observedKubeVirtVersion");
  const std::string target = Str(At(cr, "status"), "targetKubeVirtVersion");
  if (target.empty() || target == observed) o.kubevirt_version = gm::ParseKubeVirtVersion(observed);
  // Both are ints in the CR; unset (or nonsense) means KubeVirt's default.
  const json& dev = At(At(At(cr, "spec"), "configuration"), "developerConfiguration");
  const json& overcommit = At(dev, "memoryOvercommit");
  o.cluster_memory_overcommit = overcommit.is_number_integer() && overcommit.get<int64_t>() > 0
                                    ? static_cast<double>(overcommit.get<int64_t>())
                                    : kDefaultMemoryOvercommit;
  const json& ratio = At(dev, "cpuAllocationRatio");
  o.cluster_cpu_allocation_ratio = ratio.is_number_integer() && ratio.get<int64_t>() > 0
                                       ? static_cast<double>(ratio.get<int64_t>())
                                       : kDefaultCpuAllocationRatio;
  return o;
}

std::string CpuQuantity(double cores) {
  const double millis = cores * 1000;
  const double whole = std::round(millis);
  if (std::fabs(millis - whole) < 1e-6 && whole > 0 && whole < 1e15) {
    const auto m = static_cast<int64_t>(whole);
    return m % 1000 == 0 ? std::to_string(m / 1000) : std::to_string(m) + "m";
  }
  // A share of a pool split (100m × 2 ÷ 3): decimals, never an exponent.
  char buf[320];  // "%.9f" of any finite double fits (DBL_MAX has 309 digits)
  static_cast<void>(std::snprintf(buf, sizeof buf, "%.9f", cores));
  std::string text = buf;
  while (!text.empty() && text.back() == '0') text.pop_back();
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

std::string MemoryQuantity(double bytes) {
  // A guest × 100 ÷ overcommit share has a fraction of a byte; the ratio
  // does not feel it.
  return std::to_string(std::llround(bytes));
}

ServerVersion ParseServerVersion(const json& body) {
  if (!body.is_object()) throw std::invalid_argument("the /version answer is not a JSON object");
  ServerVersion v;
  v.git_version = Str(body, "gitVersion");
  // gitVersion: v1.30.0, v1.28.3-gke.100, v1.30.0+k3s1.
  std::string_view g = v.git_version;
  size_t i = !g.empty() && g[0] == 'v' ? 1 : 0;
  if (const auto major = Digits(g, i); major && i < g.size() && g[i] == '.') {
    ++i;
    const auto minor = Digits(g, i);
    if (minor && (i == g.size() || g[i] == '.' || g[i] == '-' || g[i] == '+')) {
      v.major = *major;
      v.minor = *minor;
      return v;
    }
  }
  // Else the separate fields; some providers write the minor as "28+".
  const std::string major_text = Str(body, "major"), minor_text = Str(body, "minor");
  size_t a = 0, b = 0;
  const auto major = Digits(major_text, a);
  const auto minor = Digits(minor_text, b);
  if (major && a == major_text.size() && minor &&
      (b == minor_text.size() || minor_text.substr(b) == "+")) {
    v.major = *major;
    v.minor = *minor;
    return v;
  }
  throw std::invalid_argument(
      "the /version answer has no version: gitVersion " +
      json(v.git_version).dump(-1, ' ', false, json::error_handler_t::replace) + ", major " +
      json(major_text).dump(-1, ' ', false, json::error_handler_t::replace) + ", minor " +
      json(minor_text).dump(-1, ' ', false, json::error_handler_t::replace));
}

NativeSidecars NativeSidecarsByVersion(const ServerVersion& v) {
  return v.major > 1 || (v.major == 1 && v.minor >= 29) ? NativeSidecars::kYes
                                                        : NativeSidecars::kNo;
}

std::optional<std::chrono::milliseconds> ParseGoDuration(std::string_view text) {
  // Go's time.Duration.String(): [-](<number><unit>)+ or "0".
  if (text == "0") return std::chrono::milliseconds(0);
  if (text.empty() || text.size() > 64) return std::nullopt;
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t num_start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (i == num_start) return std::nullopt;
    const std::string number(text.substr(num_start, i - num_start));
    if (std::count(number.begin(), number.end(), '.') > 1 || number == ".") return std::nullopt;
    const double value = std::stod(number);
    const size_t unit_start = i;
    while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) && text[i] != '.')
      ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "h")
      scale = 3600e3;
    else if (unit == "m")
      scale = 60e3;
    else if (unit == "s")
      scale = 1e3;
    else if (unit == "ms")
      scale = 1;
    else if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs")
      scale = 1e-3;
    else if (unit == "ns")
      scale = 1e-6;
    else
      return std::nullopt;
    total_ms += value * scale;
  }
  if (!std::isfinite(total_ms) || total_ms > 86400e3) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

std::chrono::milliseconds LookupBudget(const std::string& timeout_param) {
  using std::chrono::milliseconds;
  constexpr milliseconds kDefault{10000};  // the API server's default timeoutSeconds
  constexpr milliseconds kMax{30000};      // and its maximum
  const auto parsed = ParseGoDuration(timeout_param);
  const milliseconds t = parsed && parsed->count() > 0 ? std::min(*parsed, kMax) : kDefault;
  // Leave a fifth (at least 250 ms) for reading the request, the answer's
  // way back, and clocks that started before ours.
  const milliseconds margin = std::max(milliseconds(250), t / 5);
  return std::max(milliseconds(0), t - margin);
}

std::optional<json> InjectionPatch(const json& pod, const std::string& ns,
                                   const InjectionConfig& cfg, ClusterLookup& lookup,
                                   std::string& decision, Deadline deadline,
                                   NativeSidecars native_sidecars, std::string* detail) {
  const json& meta = At(pod, "metadata");
  const json& spec = At(pod, "spec");
  if (Str(At(meta, "labels"), "kubevirt.io") != "virt-launcher") {
    decision = "not_launcher";
    return std::nullopt;
  }
  if (Str(At(meta, "labels"), kOptOutLabel) == "false") {
    decision = "opted_out";
    return std::nullopt;
  }
  const json& inits = At(spec, "initContainers");
  if (inits.is_array() && std::any_of(inits.begin(), inits.end(), IsOurSidecar)) {
    decision = "already_injected";
    return std::nullopt;
  }
  // What we rely on: compute first, the libvirt-runtime volume, the VMI name.
  const json& containers = At(spec, "containers");
  const std::string vmi_name = Str(At(meta, "annotations"), "kubevirt.io/domain");
  bool has_libvirt_volume = false;
  if (At(spec, "volumes").is_array()) {
    for (const auto& v : spec["volumes"]) has_libvirt_volume |= Str(v, "name") == "libvirt-runtime";
  }
  if (!containers.is_array() || containers.empty() || Str(containers[0], "name") != "compute" ||
      !has_libvirt_volume || vmi_name.empty()) {
    decision = "not_understood";
    return std::nullopt;
  }
  // Where the server lacks native sidecars the sidecar would be refused or,
  // without probes, never end and hold the VM back. Said once by the
  // version check, not per pod.
  if (native_sidecars != NativeSidecars::kYes) {
    decision =
        native_sidecars == NativeSidecars::kNo ? "no_native_sidecars" : "native_sidecars_unknown";
    return std::nullopt;
  }
  // Names: the container keeps its (the PodMonitor and the docs find it by
  // it); a pod that already has a container of that name is left alone.
  // Names must be unique across containers, init and ephemeral containers
  // (validation.go, validateInitContainers / validateEphemeralContainers).
  for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
    if (HasContainerNamed(At(spec, list), kSidecarName)) {
      decision = "name_conflict";
      if (detail) {
        *detail = "pod " + PodRef(meta, ns) + ": its " + list + " already have a container named " +
                  kSidecarName + " that this webhook did not inject; admitted unchanged";
      }
      return std::nullopt;
    }
  }
  std::set<std::string> volume_names;
  for (const auto& v : At(spec, "volumes")) volume_names.insert(Str(v, "name"));
  const auto token_volume_name = FreeName(kTokenVolume, volume_names);
  const auto run_volume_name = FreeName(kRunVolume, volume_names);
  if (!token_volume_name || !run_volume_name) {
    decision = "name_conflict";
    if (detail)
      *detail =
          "pod " + PodRef(meta, ns) + ": no free volume name for the sidecar; admitted unchanged";
    return std::nullopt;
  }
  const json& compute = containers[0];

  // Run as the launcher runs: its user reaches the libvirt socket, and no looser.
  const json& pod_sc = At(spec, "securityContext");
  const json& compute_sc = At(compute, "securityContext");
  const json uid =
      At(compute_sc, "runAsUser").is_number() ? compute_sc["runAsUser"] : At(pod_sc, "runAsUser");
  const bool root = !uid.is_number() || uid.get<int64_t>() == 0;
  json sc = {{"allowPrivilegeEscalation", false},
             {"capabilities", {{"drop", json::array({"ALL"})}}},
             {"readOnlyRootFilesystem", true},
             {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (!root) {
    sc["runAsNonRoot"] = true;
    sc["runAsUser"] = uid;
    const json gid = At(compute_sc, "runAsGroup").is_number() ? compute_sc["runAsGroup"]
                                                              : At(pod_sc, "runAsGroup");
    if (gid.is_number()) sc["runAsGroup"] = gid;
  }

  json env = json::array({
      Env("GUEST_EXPORTER_LIBVIRT_URI",
          root ? "qemu:///system" : "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock"),
      Env("GUEST_EXPORTER_GUEST_INFO_INTERVAL", std::to_string(cfg.interval_seconds)),
      FieldEnv("GUEST_EXPORTER_VMI_NAMESPACE", "metadata.namespace"),
      Env("GUEST_EXPORTER_VMI_NAME", vmi_name),
      FieldEnv("GUEST_EXPORTER_POD_NAME", "metadata.name"),
      FieldEnv("GUEST_EXPORTER_POD_UID", "metadata.uid"),
      FieldEnv("GUEST_EXPORTER_NODE_NAME", "spec.nodeName"),
      Env("GUEST_EXPORTER_SOCKET", std::string(kRunDir) + "/metrics.sock"),
      Env("GUEST_EXPORTER_LISTEN_ADDRESS", cfg.listen_address),
      Env("GUEST_EXPORTER_TOKEN_FILE", std::string(kTokenDir) + "/token"),
      Env("GUEST_EXPORTER_LOG_FORMAT", "json"),
  });
  if (!cfg.reporter_url.empty())
    env.push_back(Env("GUEST_EXPORTER_REPORTER_URL", cfg.reporter_url));
  if (!cfg.reporter_ca_pem.empty())
    env.push_back(Env("GUEST_EXPORTER_REPORTER_CA_PEM", cfg.reporter_ca_pem));
  // The guest's shares of the compute requests, not the requests: KubeVirt
  // adds CPUs for an IOThread pool or an isolated emulator thread and memory
  // for its overhead (docs/ratios.md, "Shapes"). They need the VMI and the
  // KubeVirt CR. When a lookup gets no answer the sidecar goes in without
  // the shares that need it — the ratio is then missing and says why —
  // never with a guess: the raw request is wrong wherever KubeVirt added to it.
  bool lookup_failed = false;
  std::string why;
  std::optional<gm::LauncherShape> shape;
  std::optional<json> vmi;
  try {
    vmi = lookup.Vmi(ns, vmi_name, deadline);
  } catch (const LookupFailed& e) {
    lookup_failed = true;
    why = e.what();
  }
  if (vmi) {
    gm::ShapeOptions options;
    try {
      if (const auto kubevirts = lookup.KubeVirts(deadline)) options = ShapeOptionsOf(*kubevirts);
    } catch (const LookupFailed& e) {
      // Without the CR the module still derives what the pod and the VMI
      // fix alone: it never assumes a version or an overcommit.
      lookup_failed = true;
      why = e.what();
    }
    shape = gm::DeriveLauncherShape(*vmi, pod, options);
  } else if (!lookup_failed) {
    // Gone, or not yet visible: nothing to derive from, and no failure.
    why = "no VMI " + json(vmi_name).dump(-1, ' ', false, json::error_handler_t::replace) +
          " in the namespace: no shares";
  }
  const auto add_why = [&why](const std::string& text) { why += (why.empty() ? "" : "; ") + text; };
  // Only what a quantity can say: 1n (Kubernetes' smallest unit) to an
  // exabyte's worth, never a 0 the sidecar would divide by.
  if (shape && shape->vcpu_cpu_request && *shape->vcpu_cpu_request >= 1e-9 &&
      *shape->vcpu_cpu_request < 1e12) {
    env.push_back(Env("GUEST_EXPORTER_CPU_REQUEST", CpuQuantity(*shape->vcpu_cpu_request)));
  } else if (shape) {
    add_why("no CPU share: " +
            (shape->vcpu_cpu_request ? "the vCPUs' share is out of range" : shape->cpu_why));
  }
  if (shape && shape->guest_memory_request && *shape->guest_memory_request >= 1 &&
      *shape->guest_memory_request < 9e18) {
    env.push_back(
        Env("GUEST_EXPORTER_VMI_MEMORY_REQUEST", MemoryQuantity(*shape->guest_memory_request)));
  } else if (shape) {
    add_why("no memory share: " + (shape->guest_memory_request ? "the guest's share is out of range"
                                                               : shape->memory_why));
  }
  if (detail && !why.empty()) *detail = "pod " + PodRef(meta, ns) + ": " + why;

  json resources = {{"requests", {{"cpu", cfg.cpu}, {"memory", cfg.memory}}}};
  // A Guaranteed VM must stay Guaranteed: the sidecar's limits equal its requests.
  if (IsGuaranteed(spec))
    resources["limits"] = resources["requests"];
  else
    resources["limits"] = {{"memory", cfg.memory}};

  json sidecar = {
      {"name", kSidecarName},
      {"image", cfg.image},
      {"command", json::array({"/usr/local/bin/guest-exporter"})},
      // Native sidecar: ends with the pod, never blocks migration or completion.
      {"restartPolicy", "Always"},
      {"env", env},
      {"resources", resources},
      {"securityContext", sc},
      {"volumeMounts",
       json::array({{{"name", "libvirt-runtime"}, {"mountPath", "/var/run/libvirt"}},
                    {{"name", *run_volume_name}, {"mountPath", kRunDir}},
                    {{"name", *token_volume_name}, {"mountPath", kTokenDir}, {"readOnly", true}}})},
      // No probes. Its readiness would count toward the pod's Ready, which
      // KubeVirt copies into the VMI's: a monitoring sidecar must never gate
      // its VM. Liveness: guest-exporter's own watchdog exits when it is
      // stuck and the kubelet restarts it (restartPolicy Always); an exec
      // probe of the libvirt-linked binary would cost ~50 ms CPU per run.
      {"terminationMessagePolicy", "FallbackToLogsOnError"},
  };

  const json token_volume = {
      {"name", *token_volume_name},
      {"projected",
       {{"sources", json::array({{{"serviceAccountToken",
                                   {{"audience", cfg.audience},
                                    {"expirationSeconds", cfg.token_expiration_seconds},
                                    {"path", "token"}}}}})}}}};
  const json run_volume = {{"name", *run_volume_name},
                           {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", "1Mi"}}}};

  json patch = json::array();
  if (At(spec, "initContainers").is_array()) {
    patch.push_back({{"op", "add"}, {"path", "/spec/initContainers/-"}, {"value", sidecar}});
  } else {
    patch.push_back(
        {{"op", "add"}, {"path", "/spec/initContainers"}, {"value", json::array({sidecar})}});
  }
  patch.push_back({{"op", "add"}, {"path", "/spec/volumes/-"}, {"value", token_volume}});
  patch.push_back({{"op", "add"}, {"path", "/spec/volumes/-"}, {"value", run_volume}});
  decision = lookup_failed ? "injected_lookup_failed" : "injected";
  return patch;
}

AdmissionResult Admit(const json& review, const InjectionConfig& cfg, ClusterLookup& lookup,
                      Deadline deadline, NativeSidecars native_sidecars) {
  // A metav1 Status: the API server's client shows its message as the reason
  // the call failed (failurePolicy decides what then happens to the pod).
  const auto malformed = [](const std::string& why) {
    const std::string message = "malformed AdmissionReview: " + why;
    return AdmissionResult{400,
                           json{{"apiVersion", "v1"},
                                {"kind", "Status"},
                                {"metadata", json::object()},
                                {"status", "Failure"},
                                {"message", message},
                                {"reason", "BadRequest"},
                                {"code", 400}},
                           "malformed", message};
  };
  if (review.is_discarded()) return malformed("the body is not JSON");
  if (!review.is_object()) return malformed("not a JSON object");
  if (Str(review, "apiVersion") != "admission.k8s.io/v1" ||
      Str(review, "kind") != "AdmissionReview") {
    return malformed("apiVersion/kind must be admission.k8s.io/v1 AdmissionReview");
  }
  const json& req = At(review, "request");
  if (!req.is_object()) return malformed("request is missing");
  const std::string uid = Str(req, "uid");
  if (uid.empty()) return malformed("request.uid is missing");

  json response = {{"uid", uid}, {"allowed", true}};
  std::string decision = "not_understood";
  std::string detail;
  const json& kind = At(req, "kind");
  const json& object = At(req, "object");
  if (Str(kind, "kind") == "Pod" && Str(kind, "group").empty() && Str(req, "subResource").empty() &&
      object.is_object() && Str(req, "operation") == "CREATE") {
    if (auto patch = InjectionPatch(object, Str(req, "namespace"), cfg, lookup, decision, deadline,
                                    native_sidecars, &detail)) {
      response["patchType"] = "JSONPatch";
      response["patch"] = Base64(patch->dump());
    }
  }
  return {200,
          json{{"apiVersion", "admission.k8s.io/v1"},
               {"kind", "AdmissionReview"},
               {"response", response}},
          decision, detail};
}

}  // namespace gm::reporter
