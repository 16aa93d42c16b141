#pragma once
// Which part of a virt-launcher pod's compute requests belongs to the guest,
// for every VM shape KubeVirt renders (v1.3 … main), so that the two VEP 156
// ratios divide guest vCPUs by the vCPUs' CPU request and guest memory by the
// guest's memory request — not by what KubeVirt adds for an isolated emulator
// thread, a supplemental IOThread pool or virtualization overhead.
//
// Pure logic: no I/O, never throws. The rules follow KubeVirt's
// pkg/virt-controller/services/renderresources.go and template.go at the tags
// named in docs/ratios.md ("Shapes"), where each rule is worked through.

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gm {

/// A KubeVirt release, as in "v1.5.2" (pre-release suffixes are ignored:
/// v1.6.0-rc.1 renders as v1.6.0 does).
struct KubeVirtVersion {
  unsigned major = 0, minor = 0, patch = 0;
  friend bool operator<(const KubeVirtVersion& a, const KubeVirtVersion& b) {
    if (a.major != b.major) return a.major < b.major;
    if (a.minor != b.minor) return a.minor < b.minor;
    return a.patch < b.patch;
  }
  friend bool operator==(const KubeVirtVersion& a, const KubeVirtVersion& b) {
    return a.major == b.major && a.minor == b.minor && a.patch == b.patch;
  }
  friend bool operator<=(const KubeVirtVersion& a, const KubeVirtVersion& b) { return !(b < a); }
  std::string ToString() const;  // "v1.5.2"
};

/// "v1.5.2", "1.5.2", "v1.6.0-rc.1"; nullopt for anything else.
std::optional<KubeVirtVersion> ParseKubeVirtVersion(std::string_view text);

/// The KubeVirt versions the launcher pod may have been rendered by, as far as
/// the inputs tell: [min, max], max absent = no upper bound.
struct KubeVirtRange {
  KubeVirtVersion min{1, 3, 0};
  std::optional<KubeVirtVersion> max;
  // How it was found: "explicit", "compute image tag", "overhead annotation", "unknown".
  std::string source;
  // Every version in the range is ≥ v.
  bool AtLeast(const KubeVirtVersion& v) const { return v <= min; }
  // Every version in the range is < v.
  bool Below(const KubeVirtVersion& v) const { return max && *max < v; }
  bool Contains(const KubeVirtVersion& v) const { return min <= v && (!max || v <= *max); }
  std::string ToString() const;  // "v1.8.0 or later", "v1.5.2"
};

/// What the pod cannot show and the caller may know (the webhook reads them
/// from the KubeVirt CR). Every field is optional.
struct ShapeOptions {
  // status.observedKubeVirtVersion of the KubeVirt CR (or the operator's
  // version): narrows the range to exactly this version.
  std::optional<KubeVirtVersion> kubevirt_version;
  // spec.configuration.developerConfiguration.memoryOvercommit (percent).
  std::optional<double> cluster_memory_overcommit;
  // spec.configuration.developerConfiguration.cpuAllocationRatio: only used to
  // tell the version apart where the version decides and is unknown.
  std::optional<double> cluster_cpu_allocation_ratio;
};

/// How the vCPUs' share of the compute CPU request was found.
enum class CpuShareRule {
  kNone,  // not derived: see cpu_why
  // request = (vCPUs [+ IOThread pool]) ÷ cpuAllocationRatio;
  // share = request × vCPUs ÷ (vCPUs + pool)
  kAllocationRatio,
  // The VMI sets requests.cpu (or limits.cpu, copied into the request): all of it is the vCPUs'.
  kExplicitRequest,
  // dedicatedCpuPlacement: one whole CPU per vCPU; the share is the vCPU count.
  kDedicated,
};
const char* CpuShareRuleName(CpuShareRule r);

/// How the guest memory request (without virtualization overhead) was found.
enum class GuestMemoryRule {
  kNone,                     // not derived: see memory_why
  kComputeMinusOverhead,     // compute memory request − kubevirt.io/memory-overhead-bytes
  kComputeOverheadNotAdded,  // overcommitGuestOverhead: the compute request holds no overhead
  kHugepagesPlusRest,        // hugepages-<size> request + (compute memory request − overhead)
  kVmiRequest,               // the VMI's spec.domain.resources.requests.memory
  kVmiRequestOvercommitted,  // v1.6.2 only: the VMI's request × 100 ÷ memoryOvercommit
  kVmiLimit,                 // the VMI's limits.memory, when it sets no request (v1.6.4+)
  kGuestOvercommit,          // guest memory × 100 ÷ memoryOvercommit (v1.6.4+, no request/limit)
};
const char* GuestMemoryRuleName(GuestMemoryRule r);

/// The guest's shares of a launcher pod's compute requests, fixed when KubeVirt
/// rendered the pod. The sidecar divides live values by them, so CPU and memory
/// hotplug still show (see CpuAllocationRatio / MemoryOvercommitRatio).
struct LauncherShape {
  KubeVirtRange kubevirt;

  // CPU: the vCPUs the pod was rendered for, and what else KubeVirt put in the request.
  // sockets × cores × threads of spec.domain.cpu (the non-zero ones; 1 without cpu).
  unsigned render_vcpus = 0;
  unsigned iothread_cpus = 0;  // supplemental IOThread pool CPUs in the request
  unsigned emulator_cpus = 0;  // CPUs for an isolated emulator thread (0, 1 or 2)
  bool dedicated = false;      // spec.domain.cpu.dedicatedCpuPlacement
  // Cores: the compute container's CPU request (else its limit, as Kubernetes defaults it).
  std::optional<double> compute_cpu_request;
  // Cores KubeVirt's rule renders for this VMI, where the rule alone fixes it.
  std::optional<double> expected_cpu_request;
  // Cores of the compute CPU request that belong to render_vcpus vCPUs.
  std::optional<double> vcpu_cpu_request;
  CpuShareRule cpu_rule = CpuShareRule::kNone;
  std::string cpu_why;  // the rule applied and its source, or why there is no share

  // Memory, in bytes: the guest's request without overhead, hugepages included.
  std::optional<double> compute_memory_request;  // the compute container's (request, else limit)
  std::optional<double> memory_overhead;         // kubevirt.io/memory-overhead-bytes (v1.8+)
  std::optional<double> hugepages_request;       // the compute container's hugepages-<size>
  std::optional<double> guest_memory_request;
  GuestMemoryRule memory_rule = GuestMemoryRule::kNone;
  std::string memory_why;

  // Where the inputs disagree (the pod's request differs from what the rule
  // renders, ...). Notes never change a result.
  std::vector<std::string> notes;

  /// Live vCPUs ÷ vcpu_cpu_request. With dedicated CPUs this is 1.0 while the
  /// guest has the vCPUs it was rendered for.
  std::optional<double> CpuAllocationRatio(unsigned live_vcpus) const;
  /// Cores per vCPU at render time (1 ÷ cpuAllocationRatio by default; 1 when dedicated).
  std::optional<double> CpuRequestPerVcpu() const;
  /// Live guest memory ÷ guest_memory_request.
  std::optional<double> MemoryOvercommitRatio(double live_guest_memory_bytes) const;
};

/// Derives the shares from the VMI object (as the API returns it, after
/// KubeVirt's mutating webhook) and the launcher pod (as the admission webhook
/// sees it). Never throws: malformed or missing fields leave a share unset and
/// say why in cpu_why / memory_why.
LauncherShape DeriveLauncherShape(const nlohmann::json& vmi, const nlohmann::json& pod,
                                  const ShapeOptions& options = {}) noexcept;

/// The same from JSON text (a fuzz-friendly entry point): text that is not
/// JSON gives no shares and says so.
LauncherShape DeriveLauncherShapeFromText(std::string_view vmi_json, std::string_view pod_json,
                                          const ShapeOptions& options = {}) noexcept;

}  // namespace gm
