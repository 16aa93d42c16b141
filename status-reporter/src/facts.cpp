#include "facts.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace gm::reporter {

using nlohmann::json;

namespace {

std::string Str(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& Obj(const json& obj, const char* key) {
  static const json kEmpty = json::object();
  const auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

std::optional<std::string> OptStr(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<double> OptNumber(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

void RequireIdentity(const json& meta, const char* kind) {
  if (Str(meta, "name").empty() || Str(meta, "namespace").empty() || Str(meta, "uid").empty()) {
    throw std::invalid_argument(std::string(kind) + " without metadata.name, namespace or uid");
  }
}

}  // namespace

std::string Key(const std::string& ns, const std::string& name) { return ns + "/" + name; }

uint64_t ResourceVersionNumber(const std::string& rv) {
  if (rv.empty() || rv.size() > 19 || rv.find_first_not_of("0123456789") != std::string::npos)
    return 0;
  return std::stoull(rv);
}

PodFacts PodFromJson(const json& pod) {
  const json& meta = Obj(pod, "metadata");
  RequireIdentity(meta, "pod");
  const json& labels = Obj(meta, "labels");
  const json& annotations = Obj(meta, "annotations");
  PodFacts f;
  f.namespace_ = Str(meta, "namespace");
  f.name = Str(meta, "name");
  f.uid = Str(meta, "uid");
  f.node = Str(Obj(pod, "spec"), "nodeName");
  f.vmi_name = Str(annotations, "kubevirt.io/domain");
  f.is_launcher = Str(labels, "kubevirt.io") == "virt-launcher";
  f.deleting = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
  f.cpu_ratio_annotation = OptStr(annotations, kCpuRatioAnnotation);
  f.memory_ratio_annotation = OptStr(annotations, kMemoryRatioAnnotation);
  f.resource_version = ResourceVersionNumber(Str(meta, "resourceVersion"));
  return f;
}

VmiFacts VmiFromJson(const json& vmi) {
  const json& meta = Obj(vmi, "metadata");
  RequireIdentity(meta, "VMI");
  const json& status = Obj(vmi, "status");
  const json& annotations = Obj(meta, "annotations");
  VmiFacts f;
  f.namespace_ = Str(meta, "namespace");
  f.name = Str(meta, "name");
  f.uid = Str(meta, "uid");
  f.node_name = Str(status, "nodeName");
  for (const auto& [uid, node] : Obj(status, "activePods").items()) {
    f.active_pods[uid] = node.is_string() ? node.get<std::string>() : std::string();
  }
  f.status_cpu_ratio = OptNumber(Obj(status, "currentCPUTopology"), "cpuAllocationRatio");
  f.status_memory_ratio = OptNumber(Obj(status, "memory"), "memoryOvercommitRatio");
  f.cpu_ratio_annotation = OptStr(annotations, kCpuRatioAnnotation);
  f.memory_ratio_annotation = OptStr(annotations, kMemoryRatioAnnotation);
  f.resource_version = ResourceVersionNumber(Str(meta, "resourceVersion"));
  return f;
}

bool IsActivePod(const VmiFacts& vmi, const PodFacts& pod) {
  if (pod.namespace_ != vmi.namespace_ || pod.vmi_name != vmi.name || pod.deleting) return false;
  const auto it = vmi.active_pods.find(pod.uid);
  if (it == vmi.active_pods.end()) return false;
  return vmi.node_name.empty() || it->second == vmi.node_name;
}

}  // namespace gm::reporter
