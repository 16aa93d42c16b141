#include "gm/report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace gm {

using nlohmann::json;

bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && i != 0 && i + 1 != s.size())) return false;
  }
  return true;
}

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const auto dot = s.find('.', start);
    if (!IsDnsLabel(s.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string EncodeReport(const Report& r) {
  json j{{"apiVersion", kReportApiVersion},
         {"kind", kReportKind},
         {"namespace", r.namespace_},
         {"vmiName", r.vmi_name},
         {"podName", r.pod_name},
         {"podUID", r.pod_uid},
         {"node", r.node},
         {"vcpus", r.vcpus},
         {"memoryBytes", r.memory_bytes},
         {"loadReason", r.load_reason},
         {"memoryRequestSource", r.memory_request_source}};
  if (r.load) {
    j["load"] = {{"load1m", r.load->load1m},
                 {"load5m", r.load->load5m},
                 {"load15m", r.load->load15m},
                 {"ageSeconds", r.load->age_seconds}};
  }
  if (r.cpu_allocation_ratio) j["cpuAllocationRatio"] = *r.cpu_allocation_ratio;
  if (r.memory_overcommit_ratio) j["memoryOvercommitRatio"] = *r.memory_overcommit_ratio;
  if (r.order) {
    j["sidecarStartMs"] = r.order->sidecar_start_ms;
    j["sequence"] = r.order->sequence;
  }
  if (r.health) {
    json h{{"libvirtUp", r.health->libvirt_up}, {"failedAttempts", r.health->failed_attempts}};
    if (r.health->interval_seconds > 0) h["intervalSeconds"] = r.health->interval_seconds;
    if (!r.health->last_error.empty()) h["lastError"] = r.health->last_error;
    j["health"] = std::move(h);
  }
  return j.dump();
}

namespace {

struct Invalid {
  std::string what;
};

const json& Field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw Invalid{std::string(key) + " is missing"};
  return *it;
}

std::string String(const json& obj, const char* key, size_t max_len) {
  const json& v = Field(obj, key);
  if (!v.is_string()) throw Invalid{std::string(key) + " must be a string"};
  auto s = v.get<std::string>();
  if (s.size() > max_len)
    throw Invalid{std::string(key) + " is longer than " + std::to_string(max_len)};
  return s;
}

// Bounds a whole number before its own range check, so that Show prints it whole.
constexpr double kMaxReportNumber = 1e300;

// The shortest text that reads back as `d` ("1e-320", "0.001", "16385"), so a
// refusal shows the number as the peer sent it.
std::string Show(double d) {
  char buf[32];
  if (std::trunc(d) == d && std::fabs(d) < 1e16) {
    static_cast<void>(std::snprintf(buf, sizeof buf, "%.0f", d));  // |d| < 1e16 fits
    return buf;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    static_cast<void>(std::snprintf(buf, sizeof buf, "%.*g", precision, d));
    if (std::strtod(buf, nullptr) == d) break;
  }
  return buf;
}

// A JSON number within [min, max], finite and not subnormal: a subnormal is
// no real measurement (and a ratio of 1e-320 would be written as "0.0").
// `name` is the field's path in the report, for the refusal.
double Number(const json& obj, const char* key, const std::string& name, double min, double max) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw Invalid{name + " is missing"};
  if (!it->is_number()) throw Invalid{name + " must be a number"};
  const double d = it->get<double>();
  if (!std::isfinite(d)) throw Invalid{name + " is not a finite number"};
  if (d < min || d > max) {
    throw Invalid{name + " is " + Show(d) + ", out of range [" + Show(min) + ", " + Show(max) +
                  "]"};
  }
  if (std::fpclassify(d) == FP_SUBNORMAL)
    throw Invalid{name + " is subnormal (" + Show(d) + "); send 0 or a normal number"};
  return d;
}

// A count or a size in whole units. `integer_token`: only a JSON integer will
// do (2.5 vCPUs, or 1e300, is no vCPU count); else an integral value is enough
// (the encoder writes memory as a double, "2147483648.0").
double WholeNumber(const json& obj, const char* key, double min, double max, bool integer_token) {
  const auto it = obj.find(key);
  if (it != obj.end() && it->is_number_float()) {
    const double d = it->get<double>();
    if (integer_token || (std::isfinite(d) && std::trunc(d) != d)) {
      throw Invalid{std::string(key) + " must be a whole number"};
    }
  }
  // Above 2^53 a double rounds: compare the integer itself.
  if (it != obj.end() && it->is_number_unsigned() && max < 1.8e19 &&
      it->get<uint64_t>() > static_cast<uint64_t>(max)) {
    throw Invalid{std::string(key) + " is " + std::to_string(it->get<uint64_t>()) +
                  ", out of range [" + Show(min) + ", " + Show(max) + "]"};
  }
  return Number(obj, key, key, min, max);
}

std::optional<double> OptionalRatio(const json& obj, const char* key) {
  if (!obj.contains(key) || obj[key].is_null()) return std::nullopt;
  return Number(obj, key, key, kMinRatio, kMaxRatio);
}

}  // namespace

std::optional<Report> DecodeReport(std::string_view body, std::string& error) {
  if (body.size() > kMaxReportBytes) {
    error = "report is larger than " + std::to_string(kMaxReportBytes) + " bytes";
    return std::nullopt;
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // The parser's own words say where and why (a number too large for a
    // double, "number overflow parsing '1e400'", is refused here).
    error = std::string("report is not a JSON object: ") + e.what();
    return std::nullopt;
  }
  if (!j.is_object()) {
    error = "report is not a JSON object";
    return std::nullopt;
  }
  try {
    if (String(j, "apiVersion", 64) != kReportApiVersion || String(j, "kind", 32) != kReportKind) {
      throw Invalid{std::string("apiVersion/kind must be ") + kReportApiVersion + "/" +
                    kReportKind};
    }
    Report r;
    r.namespace_ = String(j, "namespace", 63);
    if (!IsDnsLabel(r.namespace_)) throw Invalid{"namespace is not a valid Kubernetes namespace"};
    r.vmi_name = String(j, "vmiName", 253);
    if (!IsDnsSubdomain(r.vmi_name)) throw Invalid{"vmiName is not a valid Kubernetes name"};
    r.pod_name = String(j, "podName", 253);
    if (!IsDnsSubdomain(r.pod_name)) throw Invalid{"podName is not a valid Kubernetes name"};
    r.pod_uid = String(j, "podUID", 64);
    if (r.pod_uid.empty()) throw Invalid{"podUID is empty"};
    r.node = String(j, "node", 253);
    r.vcpus = static_cast<unsigned>(WholeNumber(j, "vcpus", 0, kMaxVcpus, true));
    r.memory_bytes = WholeNumber(j, "memoryBytes", 0, kMaxMemoryBytes, false);
    r.load_reason = String(j, "loadReason", 64);
    r.memory_request_source =
        j.contains("memoryRequestSource") ? String(j, "memoryRequestSource", 64) : "";
    if (j.contains("load") && !j["load"].is_null()) {
      const json& l = j["load"];
      if (!l.is_object()) throw Invalid{"load must be an object"};
      r.load = ReportLoad{Number(l, "load1m", "load.load1m", 0, kMaxLoad),
                          Number(l, "load5m", "load.load5m", 0, kMaxLoad),
                          Number(l, "load15m", "load.load15m", 0, kMaxLoad),
                          Number(l, "ageSeconds", "load.ageSeconds", 0, kMaxLoadAgeSeconds)};
    }
    r.cpu_allocation_ratio = OptionalRatio(j, "cpuAllocationRatio");
    r.memory_overcommit_ratio = OptionalRatio(j, "memoryOvercommitRatio");
    const bool has_start = j.contains("sidecarStartMs");
    if (has_start != j.contains("sequence"))
      throw Invalid{"sidecarStartMs and sequence come together"};
    if (has_start) {
      const double start =
          WholeNumber(j, "sidecarStartMs", -kMaxReportNumber, kMaxReportNumber, true);
      if (start < static_cast<double>(kMinSidecarStartMs) ||
          start >= static_cast<double>(kMaxSidecarStartMs)) {
        throw Invalid{"sidecarStartMs is " + Show(start) + ", out of range [" +
                      std::to_string(kMinSidecarStartMs) + ", " +
                      std::to_string(kMaxSidecarStartMs) + ")"};
      }
      const double seq = WholeNumber(j, "sequence", 1, static_cast<double>(kMaxSequence), true);
      r.order = ReportOrder{static_cast<uint64_t>(start), static_cast<uint64_t>(seq)};
    }
    if (j.contains("health") && !j["health"].is_null()) {
      const json& h = j["health"];
      if (!h.is_object()) throw Invalid{"health must be an object"};
      ReportHealth health;
      const json& up = Field(h, "libvirtUp");
      if (!up.is_boolean()) throw Invalid{"health.libvirtUp must be true or false"};
      health.libvirt_up = up.get<bool>();
      health.failed_attempts = static_cast<uint64_t>(
          WholeNumber(h, "failedAttempts", 0, static_cast<double>(kMaxSequence), true));
      if (h.contains("intervalSeconds")) {
        health.interval_seconds = static_cast<uint32_t>(
            WholeNumber(h, "intervalSeconds", 1, kMaxReportIntervalSeconds, true));
      }
      if (h.contains("lastError")) {
        health.last_error = String(h, "lastError", kMaxLastErrorLength);
        if (health.last_error.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") !=
            std::string::npos)
          throw Invalid{"health.lastError may hold only a-z, 0-9 and _"};
      }
      r.health = std::move(health);
    }
    return r;
  } catch (const Invalid& e) {
    error = e.what;
  } catch (const json::exception& e) {
    error = std::string("report has a wrong type: ") + e.what();
  }
  return std::nullopt;
}

}  // namespace gm
