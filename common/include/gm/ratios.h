#pragma once
// The two overcommit ratios (VEP 156) as this project defines them; see
// docs/ratios.md for the definitions and worked examples.

#include <optional>
#include <string>

namespace gm {

/// What the ratios are computed from. Live values come from libvirt; the
/// requests from the launcher pod, the VMI and the KubeVirt CR, handed to the
/// sidecar by the injector.
struct RatioInputs {
  unsigned guest_vcpus = 0;                      // live, from libvirt
  double guest_memory_bytes = 0;                 // live, from libvirt
  std::optional<double> compute_cpu_request;     // cores, compute container
  std::optional<double> compute_memory_request;  // bytes, compute container
  std::optional<double>
      memory_overhead;  // bytes, pod annotation kubevirt.io/memory-overhead-bytes (v1.9+)
  std::optional<double> vmi_memory_request;  // bytes, VMI spec.domain.resources.requests.memory
  std::optional<double>
      cluster_memory_overcommit;  // percent, KubeVirt CR
                                  // spec.configuration.developerConfiguration.memoryOvercommit
};

/// Which input the memory request without overhead came from.
enum class MemoryRequestSource { kComputeMinusOverhead, kVmiRequest, kClusterOvercommit, kNone };
const char* MemoryRequestSourceName(MemoryRequestSource s);

struct MemoryRequest {
  double bytes = 0;
  MemoryRequestSource source = MemoryRequestSource::kNone;
};

/// The memory request excluding virtualization overhead, by the rule of
/// precedence: compute request − overhead annotation; else the VMI's memory
/// request; else guest memory × 100 / the cluster's memoryOvercommit %.
/// An input that gives no positive value falls through to the next.
MemoryRequest MemoryRequestWithoutOverhead(const RatioInputs& in);

struct Ratios {
  std::optional<double> cpu_allocation;     // guest vCPUs ÷ compute CPU request (cores)
  std::optional<double> memory_overcommit;  // guest memory ÷ memory request without overhead
  MemoryRequestSource memory_source = MemoryRequestSource::kNone;
  std::string why_missing;  // set when a ratio cannot be computed
};

/// Both ratios, each absent when its inputs do not allow it.
Ratios ComputeRatios(const RatioInputs& in);

/// Text form used in annotations: at most three decimals, trailing zeros cut,
/// but always one decimal ("10.0", "1.5", "1.333").
std::string FormatRatio(double ratio);

}  // namespace gm
