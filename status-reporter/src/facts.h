#pragma once
// The few fields of launcher pods and VMIs the reporter keeps in its caches.
// Informers turn each object into these at once, so 10,000 VMIs cost a few MiB,
// not the size of their JSON.

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

namespace gm::reporter {

/// Annotation keys this project writes (on the launcher pod, and on the VMI
/// when its CRD prunes the VEP 156 status fields).
inline constexpr const char* kCpuRatioAnnotation = "guestmetrics.kubevirt.io/cpu-allocation-ratio";
inline constexpr const char* kMemoryRatioAnnotation =
    "guestmetrics.kubevirt.io/memory-overcommit-ratio";

struct PodFacts {
  std::string namespace_;
  std::string name;
  std::string uid;
  std::string node;
  std::string vmi_name;      // annotation kubevirt.io/domain
  bool is_launcher = false;  // label kubevirt.io=virt-launcher
  bool deleting = false;
  std::optional<std::string> cpu_ratio_annotation;
  std::optional<std::string> memory_ratio_annotation;
  uint64_t resource_version = 0;  // metadata.resourceVersion; 0 when it is not a number
  // For the VMI's report state (report_state.h).
  bool has_sidecar = false;  // an init container guest-exporter with restartPolicy Always
  bool opted_out = false;    // label guestmetrics.kubevirt.io/inject=false (from the VM template)
  std::optional<std::chrono::system_clock::time_point> created{};  // metadata.creationTimestamp
};

struct VmiFacts {
  std::string namespace_;
  std::string name;
  std::string uid;
  std::string node_name;                           // status.nodeName
  std::string phase;                               // status.phase (Running, Scheduled, ...)
  std::map<std::string, std::string> active_pods;  // status.activePods: pod UID → node
  std::optional<double> status_cpu_ratio;          // status.currentCPUTopology.cpuAllocationRatio
  std::optional<double> status_memory_ratio;       // status.memory.memoryOvercommitRatio
  std::optional<std::string> cpu_ratio_annotation;
  std::optional<std::string> memory_ratio_annotation;
  uint64_t resource_version = 0;  // metadata.resourceVersion; 0 when it is not a number
};

/// metadata.resourceVersion as a number, or 0. Kubernetes calls versions
/// opaque, but etcd's are integers and client-go's mutation cache orders
/// them so; callers treat 0 as "cannot tell which is newer".
uint64_t ResourceVersionNumber(const std::string& rv);

/// Extract the facts; throws std::invalid_argument when metadata is unusable.
PodFacts PodFromJson(const nlohmann::json& pod);
VmiFacts VmiFromJson(const nlohmann::json& vmi);

/// metav1.Time as the API server writes it ("2024-05-01T12:00:00Z"; a
/// fraction or a ±hh:mm offset is read too); nullopt when it is not one.
std::optional<std::chrono::system_clock::time_point> ParseApiTime(const std::string& text);

/// "namespace/name", the key of caches and the work queue.
std::string Key(const std::string& ns, const std::string& name);

/// The VMI's current active pod is the one its status lists in activePods on
/// the node the VMI runs on (status.nodeName). During a migration activePods
/// holds source and target; nodeName moves to the target when it completes.
bool IsActivePod(const VmiFacts& vmi, const PodFacts& pod);

}  // namespace gm::reporter
