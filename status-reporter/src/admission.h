#pragma once
// The mutating webhook that injects guest-exporter into virt-launcher pods as
// a native sidecar, and tells it the guest's shares of the compute requests
// (gm::DeriveLauncherShape). Pure apart from two lookups: the pod's VMI and the
// cluster's KubeVirt CR.

#include <gm/launcher_shape.h>

#include <chrono>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gm::reporter {

inline constexpr const char* kSidecarName = "guest-exporter";
inline constexpr const char* kOptOutLabel = "guestmetrics.kubevirt.io/inject";
/// Largest AdmissionReview body accepted. A launcher pod with many disks,
/// networks and annotations is tens of KiB; etcd keeps objects up to 1.5 MiB.
inline constexpr size_t kMaxAdmissionBytes = size_t{2} * 1024 * 1024;
/// KubeVirt's memoryOvercommit when its CR does not set one (virt-config).
inline constexpr double kDefaultMemoryOvercommit = 100;
/// KubeVirt's cpuAllocationRatio when its CR does not set one (virt-config).
inline constexpr double kDefaultCpuAllocationRatio = 10;

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
/// thrown for "there is nothing": no such VMI, no KubeVirt CR.
class LookupFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Facts the webhook needs from the API. Each call answers by `deadline` or
/// throws LookupFailed.
class ClusterLookup {
 public:
  virtual ~ClusterLookup() = default;
  /// The VMI object as the API serves it; nullopt when there is none (404).
  virtual std::optional<nlohmann::json> Vmi(const std::string& ns, const std::string& name,
                                            Deadline deadline) = 0;
  /// The list of KubeVirt CRs (kubevirt.io/v1 kubevirts, all namespaces);
  /// nullopt when the API has no such resource (404).
  virtual std::optional<nlohmann::json> KubeVirts(Deadline deadline) = 0;
};

/// What the cluster's KubeVirt CR (the first of a kubevirts list) tells
/// gm::DeriveLauncherShape: status.observedKubeVirtVersion (none while an
/// upgrade runs: targetKubeVirtVersion differs), and
/// spec.configuration.developerConfiguration.memoryOvercommit and
/// cpuAllocationRatio, with KubeVirt's defaults (100, 10) where the CR leaves
/// them unset. Nothing when the list holds no KubeVirt CR.
gm::ShapeOptions ShapeOptionsOf(const nlohmann::json& kubevirt_list);

/// A CPU share in cores as a Kubernetes quantity: "200m", "4", "0.0666667"
/// (whole millicores where it is one, else up to 9 decimals).
std::string CpuQuantity(double cores);
/// A memory share in bytes as a Kubernetes quantity: whole bytes ("4294967296").
std::string MemoryQuantity(double bytes);

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
  int http_status = 200;  // 400 for a malformed AdmissionReview
  nlohmann::json body;    // the AdmissionReview answer, or a metav1 Status (400)
  /// injected, injected_lookup_failed (a lookup got no answer: the sidecar
  /// gets only the shares that need no guess — none without the VMI), not_launcher,
  /// opted_out, already_injected, not_understood, no_native_sidecars,
  /// native_sidecars_unknown (the server's version is not known yet),
  /// name_conflict (the pod has a container named guest-exporter that the
  /// webhook did not inject, or no free volume name), malformed
  std::string decision;
  std::string detail;  // why, for the log (the failed lookup, a share that is not derived)
};

/// Every decision Admit can take, for counters that start at zero.
inline constexpr const char* kAdmissionDecisions[] = {
    "injected",           "injected_lookup_failed",  "not_launcher",
    "opted_out",          "already_injected",        "not_understood",
    "no_native_sidecars", "native_sidecars_unknown", "name_conflict",
    "malformed"};

/// Answers one AdmissionReview (admission.k8s.io/v1). Pods it does not
/// understand, or cannot inject into safely, are allowed unchanged: a patch
/// it returns never makes the API server refuse the pod. It never injects
/// twice. `review` may be a discarded value (a body that is not JSON).
/// Lookups end by `deadline`.
AdmissionResult Admit(const nlohmann::json& review, const InjectionConfig& cfg,
                      ClusterLookup& lookup, Deadline deadline, NativeSidecars native_sidecars);

/// The JSON patch for `pod` (namespace `ns`), or nullopt with `decision` set
/// (and `detail`, when there is more to say) when the pod is left alone.
std::optional<nlohmann::json> InjectionPatch(const nlohmann::json& pod, const std::string& ns,
                                             const InjectionConfig& cfg, ClusterLookup& lookup,
                                             std::string& decision, Deadline deadline,
                                             NativeSidecars native_sidecars,
                                             std::string* detail = nullptr);

}  // namespace gm::reporter
