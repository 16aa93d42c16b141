#include "facts.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
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

// The sidecar as the webhook injects it (admission.cpp): a native sidecar
// named guest-exporter. Its name alone could be anyone's container.
bool HasOurSidecar(const json& spec) {
  const auto it = spec.find("initContainers");
  if (it == spec.end() || !it->is_array()) return false;
  return std::any_of(it->begin(), it->end(), [](const json& c) {
    return c.is_object() && Str(c, "name") == "guest-exporter" &&
           Str(c, "restartPolicy") == "Always";
  });
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> ParseApiTime(const std::string& text) {
  // YYYY-MM-DDTHH:MM:SS, then an optional fraction, then Z or ±hh:mm.
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, used = 0;
  if (text.size() < 20 || text.size() > 40) return std::nullopt;
  const int fields =
      std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &used);
  if (fields != 6 || used != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      s > 60 || y < 1970)
    return std::nullopt;
  size_t i = 19;
  if (text[i] == '.') {
    const size_t digits = text.find_first_not_of("0123456789", i + 1);
    if (digits == std::string::npos || digits == i + 1) return std::nullopt;
    i = digits;  // sub-second precision does not matter to a report state
  }
  long offset = 0;
  if (text[i] == 'Z' && i + 1 == text.size()) {
  } else if ((text[i] == '+' || text[i] == '-') && i + 6 == text.size() && text[i + 3] == ':') {
    int oh = 0, om = 0;
    if (std::sscanf(text.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
      return std::nullopt;
    offset = (text[i] == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  const time_t t = timegm(&tm);
  if (t == static_cast<time_t>(-1)) return std::nullopt;
  return std::chrono::system_clock::from_time_t(t - offset);
}

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
  f.has_sidecar = HasOurSidecar(Obj(pod, "spec"));
  f.opted_out = Str(labels, "guestmetrics.kubevirt.io/inject") == "false";
  f.created = ParseApiTime(Str(meta, "creationTimestamp"));
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
  f.phase = Str(status, "phase");
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
