#pragma once
// The mutating webhook that injects guest-exporter into virt-launcher pods as
// a native sidecar. Pure apart from the two optional lookups, which are only
// made when the pod itself does not say what the memory request is.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gm::reporter {

inline constexpr const char* kSidecarName = "guest-exporter";
inline constexpr const char* kOptOutLabel = "guestmetrics.kubevirt.io/inject";
/// Largest AdmissionReview body accepted. A launcher pod with many disks,
/// networks and annotations is tens of KiB; etcd keeps objects up to 1.5 MiB.
inline constexpr size_t kMaxAdmissionBytes = 2 * 1024 * 1024;
/// KubeVirt's memoryOvercommit when its CR does not set one (virt-config).
inline constexpr const char* kDefaultMemoryOvercommit = "100";

/// When the webhook's lookups must have answered.
using Deadline = std::chrono::steady_clock::time_point;

struct InjectionConfig {
  std::string image;
  std::string reporter_url;
  std::string reporter_ca_pem;
  std::string audience = "kubevirt-guest-metrics";
  int interval_seconds = 120;
  std::string cpu = "10m";
  std::string memory = "24Mi";
  int token_expiration_seconds = 3600;
  std::string listen_address;  // empty: no TCP listener in the sidecar
};

/// A lookup that got no answer (API error, timeout, deadline passed). Not
/// thrown for "there is nothing": a VMI without a memory request, no KubeVirt CR.
class LookupFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Facts the webhook may need from the API, looked up only when needed.
/// Each call answers by `deadline` or throws LookupFailed.
class ClusterLookup {
 public:
  virtual ~ClusterLookup() = default;
  /// spec.domain.resources.requests.memory of the VMI; nullopt when it has none.
  virtual std::optional<std::string> VmiMemoryRequest(const std::string& ns, const std::string& name,
                                                      Deadline deadline) = 0;
  /// The cluster's memoryOvercommit (see MemoryOvercommitOf); nullopt without a KubeVirt CR.
  virtual std::optional<std::string> ClusterMemoryOvercommit(Deadline deadline) = 0;
};

/// spec.domain.resources.requests.memory of a VMI object, if it is a string.
std::optional<std::string> VmiMemoryRequestOf(const nlohmann::json& vmi);
/// spec.configuration.developerConfiguration.memoryOvercommit of the first
/// KubeVirt CR in a list; KubeVirt's default (100) when that CR leaves it
/// unset; nullopt when the list holds no KubeVirt CR.
std::optional<std::string> MemoryOvercommitOf(const nlohmann::json& kubevirt_list);

/// A Go duration ("10s", "4.5s", "1m0s", "300ms"), as the API server writes
/// the `timeout` query parameter of a webhook call; nullopt if it is not one.
std::optional<std::chrono::milliseconds> ParseGoDuration(std::string_view text);
/// How long the lookups of one admission may take: the API server's
/// `timeout` parameter (10 s, its default, when absent or invalid; at most
/// 30 s, its maximum) less a margin for the rest of the round trip.
std::chrono::milliseconds LookupBudget(const std::string& timeout_param);

/// Whether the API server runs native sidecars: init containers with
/// `restartPolicy: Always` (KEP-753, feature gate SidecarContainers). A
/// server without them drops that field, and then refuses a sidecar with
/// probes or keeps one without them as an init container that never ends,
/// holding the VM back. The webhook injects only on kYes.
enum class NativeSidecars { kUnknown, kYes, kNo };

/// A server's version, from its /version body (apimachinery version.Info).
struct ServerVersion {
  int major = 0;
  int minor = 0;
  std::string git_version;  // as the server wrote it, e.g. "v1.28.3-gke.100"
};

/// Reads /version: gitVersion "vMAJOR.MINOR.PATCH…" ("v1.30.0+k3s1",
/// "v1.28.3-gke.100"), else the "major"/"minor" fields ("28+" as some
/// providers write it). Throws std::invalid_argument saying what is wrong.
ServerVersion ParseServerVersion(const nlohmann::json& body);
/// SidecarContainers is beta and on by default from Kubernetes 1.29 (alpha
/// and off in 1.28, GA and locked on in 1.33: kubernetes/kubernetes
/// pkg/features/kube_features.go; KEP-753,
/// kubernetes/enhancements keps/sig-node/753-sidecar-containers). Without it
/// the API server drops an init container's restartPolicy
/// (pkg/api/pod/util.go dropDisabledFields). A server of 1.29+ that turned
/// the gate off cannot be told from its version: that is what the
/// reporter's --native-sidecars=false is for.
NativeSidecars NativeSidecarsByVersion(const ServerVersion& version);

struct AdmissionResult {
  int http_status = 200;      // 400 for a malformed AdmissionReview
  nlohmann::json body;        // the AdmissionReview answer, or a metav1 Status (400)
  /// injected, injected_without_memory_request (a lookup failed: the sidecar
  /// gets no memory-request input rather than a guessed one), not_launcher,
  /// opted_out, already_injected, not_understood, no_native_sidecars,
  /// native_sidecars_unknown (the server's version is not known yet),
  /// name_conflict (the pod has a container named guest-exporter that the
  /// webhook did not inject, or no free volume name), malformed
  std::string decision;
  std::string detail;         // why, for the log (the failed lookup)
};

/// Every decision Admit can take, for counters that start at zero.
inline constexpr const char* kAdmissionDecisions[] = {
    "injected",       "injected_without_memory_request", "not_launcher",       "opted_out",
    "already_injected", "not_understood",                "no_native_sidecars", "native_sidecars_unknown",
    "name_conflict",  "malformed"};

/// Answers one AdmissionReview (admission.k8s.io/v1). Pods it does not
/// understand, or cannot inject into safely, are allowed unchanged: a patch
/// it returns never makes the API server refuse the pod. It never injects
/// twice. `review` may be a discarded value (a body that is not JSON).
/// Lookups end by `deadline`.
AdmissionResult Admit(const nlohmann::json& review, const InjectionConfig& config, ClusterLookup& lookup,
                      Deadline deadline, NativeSidecars native_sidecars);

/// The JSON patch for `pod` (namespace `ns`), or nullopt with `decision` set
/// (and `detail`, when there is more to say) when the pod is left alone.
std::optional<nlohmann::json> InjectionPatch(const nlohmann::json& pod, const std::string& ns,
                                             const InjectionConfig& config, ClusterLookup& lookup,
                                             std::string& decision, Deadline deadline,
                                             NativeSidecars native_sidecars, std::string* detail = nullptr);

}  // namespace gm::reporter
