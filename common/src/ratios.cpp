#include "gm/ratios.h"

#include <cmath>
#include <cstdio>

namespace gm {

const char* MemoryRequestSourceName(MemoryRequestSource s) {
  switch (s) {
    case MemoryRequestSource::kComputeMinusOverhead:
      return "compute-minus-overhead";
    case MemoryRequestSource::kVmiRequest:
      return "vmi-request";
    case MemoryRequestSource::kClusterOvercommit:
      return "cluster-memory-overcommit";
    case MemoryRequestSource::kNone:
      return "none";
  }
  return "none";
}

MemoryRequest MemoryRequestWithoutOverhead(const RatioInputs& in) {
  if (in.compute_memory_request && in.memory_overhead) {
    const double r = *in.compute_memory_request - *in.memory_overhead;
    if (r > 0) return {r, MemoryRequestSource::kComputeMinusOverhead};
  }
  if (in.vmi_memory_request && *in.vmi_memory_request > 0) {
    return {*in.vmi_memory_request, MemoryRequestSource::kVmiRequest};
  }
  if (in.cluster_memory_overcommit && *in.cluster_memory_overcommit > 0 &&
      in.guest_memory_bytes > 0) {
    return {in.guest_memory_bytes * 100.0 / *in.cluster_memory_overcommit,
            MemoryRequestSource::kClusterOvercommit};
  }
  return {};
}

Ratios ComputeRatios(const RatioInputs& in) {
  Ratios out;
  if (in.guest_vcpus == 0) {
    out.why_missing = "no live vCPU count";
  } else if (!in.compute_cpu_request || *in.compute_cpu_request <= 0) {
    out.why_missing = "no vCPU share of the compute CPU request (--cpu-request)";
  } else {
    out.cpu_allocation = in.guest_vcpus / *in.compute_cpu_request;
  }
  const auto mem = MemoryRequestWithoutOverhead(in);
  out.memory_source = mem.source;
  if (in.guest_memory_bytes <= 0) {
    out.why_missing += (out.why_missing.empty() ? "" : "; ") + std::string("no live guest memory");
  } else if (mem.source == MemoryRequestSource::kNone) {
    out.why_missing += (out.why_missing.empty() ? "" : "; ") +
                       std::string(
                           "no memory request without overhead (no overhead annotation, VMI "
                           "request or cluster memoryOvercommit)");
  } else {
    out.memory_overcommit = in.guest_memory_bytes / mem.bytes;
  }
  return out;
}

std::string FormatRatio(double ratio) {
  char buf[320];  // "%.3f" of any finite double fits (DBL_MAX has 309 digits)
  static_cast<void>(std::snprintf(buf, sizeof buf, "%.3f", std::round(ratio * 1000.0) / 1000.0));
  std::string s = buf;
  while (s.size() > 1 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
  return s;
}

}  // namespace gm
