#pragma once
// The report a guest-exporter sidecar sends to the status-reporter, and its
// JSON form. Both sides use these functions, so the wire format has one home.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gm {

inline constexpr const char* kReportApiVersion = "guestmetrics.kubevirt.io/v1alpha1";
inline constexpr const char* kReportKind = "GuestReport";
/// Reports are a few hundred bytes; anything far larger is refused unread.
inline constexpr size_t kMaxReportBytes = size_t{16} * 1024;

// What a report may say (DecodeReport refuses anything else, naming the field;
// non-finite and subnormal numbers are refused everywhere). docs/metrics.md
// lists the same ranges.
/// Ratios: a ratio below 0.001 would be written as "0.0" (three decimals); above
/// 10000 no cluster runs.
inline constexpr double kMinRatio = 0.001;
inline constexpr double kMaxRatio = 10000;
/// Guest load: PID_MAX_LIMIT runnable threads, the exporter's own bound.
inline constexpr double kMaxLoad = 4194304;
/// A load sample older than a day is no current load.
inline constexpr double kMaxLoadAgeSeconds = 86400;
/// libvirt's largest vCPU count.
inline constexpr double kMaxVcpus = 16384;
/// 1 PiB of guest memory, a whole number of bytes.
inline constexpr double kMaxMemoryBytes = 1125899906842624.0;

struct ReportLoad {
  double load1m = 0, load5m = 0, load15m = 0;
  double age_seconds = 0;  // age of the sample when sent: no clock agreement needed
};

/// Where a report stands among the reports about its pod. A sidecar numbers its
/// reports 1, 2, ... from its start; a restarted sidecar (same pod) numbers
/// from 1 again but has a later start, so (start, sequence) orders every report
/// of one pod. Reports of different pods are not compared: which pod may
/// report at all is the VMI's active-pod check (a migration target is another
/// pod with its own sidecar).
struct ReportOrder {
  uint64_t sidecar_start_ms = 0;  // wall clock when the sidecar process started, Unix ms
  uint64_t sequence = 0;          // 1 for the process's first report, then +1 per report
};
inline bool operator<(const ReportOrder& a, const ReportOrder& b) {
  return a.sidecar_start_ms != b.sidecar_start_ms ? a.sidecar_start_ms < b.sidecar_start_ms
                                                  : a.sequence < b.sequence;
}
/// sidecarStartMs within [2000-01-01, 2100-01-01); sequence within [1, 2^53]
/// (integers a JSON double holds exactly).
inline constexpr uint64_t kMinSidecarStartMs = 946684800000;
inline constexpr uint64_t kMaxSidecarStartMs = 4102444800000;
inline constexpr uint64_t kMaxSequence = uint64_t{1} << 53;

/// The sidecar's own health, carried so that the reporter's /metrics shows it
/// without a PodMonitor (the pod IP leads to the guest, not to the sidecar).
/// Reports of sidecars older than the field have none and are taken as before.
struct ReportHealth {
  bool libvirt_up = true;
  uint32_t interval_seconds = 0;  // the sidecar's report interval; 0: not said
  /// Attempts not delivered since the last delivered report, and the class of
  /// the last one: "" (none), "unreachable" (no HTTP answer: connect, TLS,
  /// timeout), "token_unreadable", or "http_<code>".
  uint64_t failed_attempts = 0;
  std::string last_error;
};
/// intervalSeconds within [1, 86400]; failedAttempts within [0, 2^53];
/// lastError at most 32 characters of [a-z0-9_] (it becomes a label value).
inline constexpr uint32_t kMaxReportIntervalSeconds = 86400;
inline constexpr size_t kMaxLastErrorLength = 32;

struct Report {
  std::string namespace_;  // VMI namespace
  std::string vmi_name;
  std::string pod_name;  // the launcher pod the sidecar runs in
  std::string pod_uid;
  std::string node;
  unsigned vcpus = 0;       // live guest vCPUs
  double memory_bytes = 0;  // live guest memory
  std::optional<ReportLoad> load;
  std::string load_reason;  // why load is absent ("ok" when present)
  std::optional<double> cpu_allocation_ratio;
  std::optional<double> memory_overcommit_ratio;
  std::string memory_request_source;
  /// Absent only in reports of sidecars older than the field (they stay in
  /// running VMs until the next migration or restart).
  std::optional<ReportOrder> order;
  /// Absent in reports of sidecars older than the field.
  std::optional<ReportHealth> health;
};

std::string EncodeReport(const Report& r);

/// Parses and validates a report. Returns nullopt with `error` saying what is
/// wrong (field and reason) for anything malformed.
std::optional<Report> DecodeReport(std::string_view body, std::string& error);

/// Kubernetes name rules, used to validate identities from outside.
bool IsDnsLabel(std::string_view s);      // RFC 1123 label, ≤ 63
bool IsDnsSubdomain(std::string_view s);  // RFC 1123 subdomain, ≤ 253

}  // namespace gm
