// Report decoding is the first thing the reporter does with bytes from a
// sidecar (after TokenReview): it must refuse anything malformed with a
// message and never crash; what it accepts must hold only sane numbers (finite,
// not subnormal, within the documented ranges, counts whole) and a well-formed
// order, and must survive a round trip unchanged. Refusal and log text built
// from the input goes through gm::EscapeForLog, which must never emit a
// control character or cut a UTF-8 sequence.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gm/logging.h"
#include "gm/report.h"

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

bool Sane(double d, double min, double max) {
  return std::isfinite(d) && std::fpclassify(d) != FP_SUBNORMAL && d >= min && d <= max;
}

void CheckNumbers(const gm::Report& r) {
  Require(r.vcpus <= gm::kMaxVcpus);
  Require(Sane(r.memory_bytes, 0, gm::kMaxMemoryBytes) &&
          std::trunc(r.memory_bytes) == r.memory_bytes);
  if (r.load) {
    Require(Sane(r.load->load1m, 0, gm::kMaxLoad) && Sane(r.load->load5m, 0, gm::kMaxLoad) &&
            Sane(r.load->load15m, 0, gm::kMaxLoad) &&
            Sane(r.load->age_seconds, 0, gm::kMaxLoadAgeSeconds));
  }
  for (const auto& ratio : {r.cpu_allocation_ratio, r.memory_overcommit_ratio}) {
    if (ratio) Require(Sane(*ratio, gm::kMinRatio, gm::kMaxRatio));
  }
  if (r.order) {
    Require(r.order->sidecar_start_ms >= gm::kMinSidecarStartMs &&
            r.order->sidecar_start_ms < gm::kMaxSidecarStartMs);
    Require(r.order->sequence >= 1 && r.order->sequence <= gm::kMaxSequence);
  }
  if (r.health) {
    // lastError becomes a label value: a short word of [a-z0-9_].
    Require(r.health->interval_seconds <= gm::kMaxReportIntervalSeconds);
    Require(r.health->failed_attempts <= gm::kMaxSequence);
    Require(r.health->last_error.size() <= gm::kMaxLastErrorLength);
    for (const char c : r.health->last_error)
      Require((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
}

bool Same(const gm::Report& a, const gm::Report& b) {
  const auto same_load = [](const std::optional<gm::ReportLoad>& x,
                            const std::optional<gm::ReportLoad>& y) {
    return x.has_value() == y.has_value() &&
           (!x || (x->load1m == y->load1m && x->load5m == y->load5m && x->load15m == y->load15m &&
                   x->age_seconds == y->age_seconds));
  };
  const auto same_order = [](const std::optional<gm::ReportOrder>& x,
                             const std::optional<gm::ReportOrder>& y) {
    return x.has_value() == y.has_value() &&
           (!x || (x->sidecar_start_ms == y->sidecar_start_ms && x->sequence == y->sequence));
  };
  const auto same_health = [](const std::optional<gm::ReportHealth>& x,
                              const std::optional<gm::ReportHealth>& y) {
    return x.has_value() == y.has_value() &&
           (!x || (x->libvirt_up == y->libvirt_up && x->interval_seconds == y->interval_seconds &&
                   x->failed_attempts == y->failed_attempts && x->last_error == y->last_error));
  };
  return same_health(a.health, b.health) && a.namespace_ == b.namespace_ &&
         a.vmi_name == b.vmi_name && a.pod_name == b.pod_name && a.pod_uid == b.pod_uid &&
         a.node == b.node && a.vcpus == b.vcpus && a.memory_bytes == b.memory_bytes &&
         same_load(a.load, b.load) && a.load_reason == b.load_reason &&
         a.cpu_allocation_ratio == b.cpu_allocation_ratio &&
         a.memory_overcommit_ratio == b.memory_overcommit_ratio &&
         a.memory_request_source == b.memory_request_source && same_order(a.order, b.order);
}

void CheckEscaped(const std::string& s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    Require(u >= 0x20 && u != 0x7F);  // no control character reaches a log line
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  CheckEscaped(gm::EscapeForLog(body));
  CheckEscaped(gm::EscapeForLog(body, size / 2));
  std::string error;
  const auto report = gm::DecodeReport(body, error);
  if (!report) {
    Require(!error.empty());  // a refusal must say why
    CheckEscaped(gm::EscapeForLog(error));
    return 0;
  }
  CheckNumbers(*report);
  std::string again_error;
  const auto again = gm::DecodeReport(gm::EncodeReport(*report), again_error);
  Require(again.has_value());      // what was accepted encodes to something accepted...
  Require(Same(*report, *again));  // ...that says the same
  return 0;
}
