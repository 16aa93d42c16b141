#include "plan.h"

#include <cmath>

#include "gm/ratios.h"

namespace gm::reporter {

using nlohmann::json;

const char* VmiRatioModeName(VmiRatioMode m) {
  switch (m) {
    case VmiRatioMode::kStatus:
      return "status";
    case VmiRatioMode::kAnnotations:
      return "annotations";
    case VmiRatioMode::kOff:
      return "off";
    case VmiRatioMode::kUnknown:
      break;
  }
  return "unknown";
}

std::optional<double> RoundedRatio(const std::optional<double>& ratio) {
  if (!ratio) return std::nullopt;
  return std::round(*ratio * 1000.0) / 1000.0;
}

namespace {

std::optional<std::string> Text(const std::optional<double>& ratio) {
  if (!ratio) return std::nullopt;
  return FormatRatio(*ratio);
}

// Adds key: value (or key: null to delete) to `annotations` when it differs.
void Diff(json& annotations, const char* key, const std::optional<std::string>& have,
          const std::optional<std::string>& want) {
  if (have == want) return;
  annotations[key] = want ? json(*want) : json(nullptr);
}

std::optional<json> AnnotationPatch(const std::optional<std::string>& have_cpu,
                                    const std::optional<std::string>& have_mem, const Report& r) {
  json annotations = json::object();
  Diff(annotations, kCpuRatioAnnotation, have_cpu, Text(r.cpu_allocation_ratio));
  Diff(annotations, kMemoryRatioAnnotation, have_mem, Text(r.memory_overcommit_ratio));
  if (annotations.empty()) return std::nullopt;
  return json{{"metadata", {{"annotations", annotations}}}};
}

}  // namespace

std::optional<json> PodPatch(const PodFacts& pod, const Report& r) {
  return AnnotationPatch(pod.cpu_ratio_annotation, pod.memory_ratio_annotation, r);
}

std::optional<json> VmiAnnotationPatch(const VmiFacts& vmi, const Report& r) {
  return AnnotationPatch(vmi.cpu_ratio_annotation, vmi.memory_ratio_annotation, r);
}

std::optional<json> VmiStatusPatch(const VmiFacts& vmi, const Report& r) {
  const auto cpu = RoundedRatio(r.cpu_allocation_ratio);
  const auto mem = RoundedRatio(r.memory_overcommit_ratio);
  json status = json::object();
  if (cpu != vmi.status_cpu_ratio)
    status["currentCPUTopology"]["cpuAllocationRatio"] = cpu ? json(*cpu) : json(nullptr);
  if (mem != vmi.status_memory_ratio)
    status["memory"]["memoryOvercommitRatio"] = mem ? json(*mem) : json(nullptr);
  if (status.empty()) return std::nullopt;
  return json{{"status", status}};
}

}  // namespace gm::reporter
