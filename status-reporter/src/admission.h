#pragma once
// The mutating webhook that injects guest-exporter into virt-launcher pods as
// a native sidecar. Pure apart from the two optional lookups, which are only
// made when the pod itself does not say what the memory request is.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace gm::reporter {

inline constexpr const char* kSidecarName = "guest-exporter";
inline constexpr const char* kOptOutLabel = "guestmetrics.kubevirt.io/inject";

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

/// Facts the webhook may need from the API, looked up only when needed.
class ClusterLookup {
 public:
  virtual ~ClusterLookup() = default;
  /// spec.domain.resources.requests.memory of the VMI, if set.
  virtual std::optional<std::string> VmiMemoryRequest(const std::string& ns, const std::string& name) = 0;
  /// KubeVirt CR spec.configuration.developerConfiguration.memoryOvercommit.
  virtual std::optional<std::string> ClusterMemoryOvercommit() = 0;
};

struct AdmissionResult {
  int http_status = 200;      // 400 for a malformed AdmissionReview
  nlohmann::json body;        // the AdmissionReview answer, or a Status-like error
  std::string decision;       // injected, not_launcher, opted_out, already_injected, not_understood, malformed
};

/// Answers one AdmissionReview (admission.k8s.io/v1). Pods it does not
/// understand are allowed unchanged; it never injects twice.
AdmissionResult Admit(const nlohmann::json& review, const InjectionConfig& config, ClusterLookup& lookup);

/// The JSON patch for `pod` (namespace `ns`), or nullopt with `decision` set
/// when the pod is left alone.
std::optional<nlohmann::json> InjectionPatch(const nlohmann::json& pod, const std::string& ns,
                                             const InjectionConfig& config, ClusterLookup& lookup,
                                             std::string& decision);

}  // namespace gm::reporter
