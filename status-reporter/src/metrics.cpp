#include "metrics.h"

#include <fmt/format.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "admission.h"
#include "gm/build_info.h"
#include "gm/prometheus_text.h"

namespace gm::reporter {

using prometheus::BuildCounter;
using prometheus::BuildGauge;

namespace {
prometheus::Registry& Fresh(std::shared_ptr<prometheus::Registry>& r) {
  r = std::make_shared<prometheus::Registry>();
  return *r;
}
}  // namespace

ReporterMetrics::ReporterMetrics()
    : leader(BuildGauge()
                 .Name("status_reporter_leader")
                 .Help("1 while this replica holds the leader lease and serves reports and writes, "
                       "else 0.")
                 .Register(Fresh(registry_))
                 .Add({})),
      queue_depth(BuildGauge()
                      .Name("status_reporter_queue_depth")
                      .Help("VMIs waiting in the write queue.")
                      .Register(*registry_)
                      .Add({})),
      caches_synced(BuildGauge()
                        .Name("status_reporter_caches_synced")
                        .Help("1 once the pod and VMI caches have completed their first list.")
                        .Register(*registry_)
                        .Add({})),
      reconcile_duration(
          prometheus::BuildHistogram()
              .Name("status_reporter_reconcile_duration_seconds")
              .Help("Time to bring one VMI and its launcher pod in line with its report.")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                               1, 5, 10})),
      native_sidecars(
          BuildGauge()
              .Name("status_reporter_native_sidecars")
              .Help(
                  "1 while the reporter believes the API server has native sidecars (from its "
                  "/version, or --native-sidecars), so the webhook injects guest-exporter; else 0.")
              .Register(*registry_)
              .Add({})),
      reports_(
          BuildCounter()
              .Name("status_reporter_reports_total")
              .Help("Reports from guest-exporter sidecars, by result (accepted or why refused).")
              .Register(*registry_)),
      api_requests_(
          BuildCounter()
              .Name("status_reporter_api_requests_total")
              .Help("Requests to the Kubernetes API by verb and HTTP code (0: no answer).")
              .Register(*registry_)),
      admissions_(
          BuildCounter()
              .Name("status_reporter_admissions_total")
              .Help("Webhook answers by decision: injected, or why the pod was admitted unchanged.")
              .Register(*registry_)),
      modes_(BuildGauge()
                 .Name("status_reporter_vmi_ratio_mode")
                 .Help("Where VMI ratios are written: 1 on the mode in effect, 0 on the others. "
                       "'status' when the VMI CRD keeps the VEP 156 fields, 'annotations' when it "
                       "prunes them, 'unknown' until the first status write has answered, 'off' "
                       "when --write-ratios=false (nothing is written).")
                 .Register(*registry_)) {
  BuildGauge()
      .Name("status_reporter_build_info")
      .Help("Build of the running status-reporter; always 1.")
      .Register(*registry_)
      .Add({{"version", kVersion}, {"revision", kRevision}})
      .Set(1);
  for (const char* r : {"accepted", "unauthenticated", "token_not_pod_bound", "token_mismatch",
                        "bad_report", "unknown_pod", "not_launcher", "wrong_vmi", "unknown_vmi",
                        "not_active_pod", "stale_report", "not_leader", "tokenreview_failed"}) {
    reports_by_result_[r] = &reports_.Add({{"result", r}});  // known results start at 0
  }
  for (const char* d : kAdmissionDecisions)
    admissions_by_decision_[d] = &admissions_.Add({{"decision", d}});
  SetVmiRatioMode(VmiRatioMode::kUnknown);

  connections_refused_ =
      &BuildCounter()
           .Name("status_reporter_connections_refused_total")
           .Help(
               "Connections closed at accept because the listener's connection budget was "
               "full (https: reports and webhook; http: metrics and probes).")
           .Register(*registry_);
  tls_handshake_failures_ =
      &BuildCounter()
           .Name("status_reporter_tls_handshake_failures_total")
           .Help(
               "TLS handshakes on the HTTPS port that failed (reason=error) or did not finish "
               "within the handshake deadline, silent connections included (reason=timeout).")
           .Register(*registry_);
  requests_timed_out_ =
      &BuildCounter()
           .Name("status_reporter_requests_timed_out_total")
           .Help(
               "Connections closed because a request was not read whole within the request "
               "deadline, by listener.")
           .Register(*registry_);
  bodies_too_large_ =
      &BuildCounter()
           .Name("status_reporter_bodies_too_large_total")
           .Help(
               "Requests refused with 413 because their body, declared or chunked, was larger "
               "than the endpoint takes.")
           .Register(*registry_);
  pool_full_ = &BuildCounter()
                    .Name("status_reporter_pool_full_total")
                    .Help(
                        "Requests answered 503 because the worker pool that handles them was "
                        "full (or they waited in its queue past the request deadline).")
                    .Register(*registry_);
  for (const char* l : {"https", "http"}) {
    refusals_[{connections_refused_, l}] = &connections_refused_->Add({{"listener", l}});
    refusals_[{requests_timed_out_, l}] = &requests_timed_out_->Add({{"listener", l}});
  }
  for (const char* r : {"error", "timeout"})
    refusals_[{tls_handshake_failures_, r}] = &tls_handshake_failures_->Add({{"reason", r}});
  for (const char* e : {"reports", "webhook", "other"})
    refusals_[{bodies_too_large_, e}] = &bodies_too_large_->Add({{"endpoint", e}});
  for (const char* p : {"reports", "webhook", "metrics"})
    refusals_[{pool_full_, p}] = &pool_full_->Add({{"pool", p}});
}

void ReporterMetrics::CountIn(prometheus::Family<prometheus::Counter>* family, const char* label,
                              const std::string& value) {
  std::lock_guard lock(mu_);
  auto& c = refusals_[{family, value}];
  if (c == nullptr) c = &family->Add({{label, value}});
  c->Increment();
}

void ReporterMetrics::CountConnectionRefused(const std::string& listener) {
  CountIn(connections_refused_, "listener", listener);
}
void ReporterMetrics::CountTlsHandshakeFailure(const std::string& reason) {
  CountIn(tls_handshake_failures_, "reason", reason);
}
void ReporterMetrics::CountRequestTimeout(const std::string& listener) {
  CountIn(requests_timed_out_, "listener", listener);
}
void ReporterMetrics::CountBodyTooLarge(const std::string& endpoint) {
  CountIn(bodies_too_large_, "endpoint", endpoint);
}
void ReporterMetrics::CountPoolFull(const std::string& pool) { CountIn(pool_full_, "pool", pool); }

void ReporterMetrics::CountAdmission(const std::string& decision) {
  std::lock_guard lock(mu_);
  auto& c = admissions_by_decision_[decision];
  if (c == nullptr) c = &admissions_.Add({{"decision", decision}});
  c->Increment();
}

void ReporterMetrics::CountReport(const std::string& result) {
  std::lock_guard lock(mu_);
  auto& c = reports_by_result_[result];
  if (c == nullptr) c = &reports_.Add({{"result", result}});
  c->Increment();
}

void ReporterMetrics::CountApiRequest(const std::string& verb, int code) {
  std::lock_guard lock(mu_);
  auto& c = api_by_verb_code_[{verb, code}];
  if (c == nullptr) c = &api_requests_.Add({{"verb", verb}, {"code", std::to_string(code)}});
  c->Increment();
}

void ReporterMetrics::SetVmiRatioMode(VmiRatioMode mode) {
  for (const VmiRatioMode m : {VmiRatioMode::kUnknown, VmiRatioMode::kStatus,
                               VmiRatioMode::kAnnotations, VmiRatioMode::kOff}) {
    modes_.Add({{"mode", VmiRatioModeName(m)}})
        .Set(m == mode ? 1 : 0);  // Add returns the existing series
  }
}

namespace {

// One VM's series: name{namespace,name,node[,extra label]} value.
void AppendVmSeries(std::string& out, const char* name, const std::string& ns,
                    const std::string& vmi, const std::string& node, double value,
                    const char* extra_label = nullptr, const std::string& extra_value = {}) {
  out += name;
  out += "{namespace=\"";
  AppendLabelValue(out, ns);
  out += "\",name=\"";
  AppendLabelValue(out, vmi);
  out += "\",node=\"";
  AppendLabelValue(out, node);
  if (extra_label != nullptr) {
    out += "\",";
    out += extra_label;
    out += "=\"";
    AppendLabelValue(out, extra_value);
  }
  out += "\"} ";
  out += fmt::format("{}\n", value);
}

void AppendHeader(std::string& out, const char* name, const std::string& help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
}

// One gauge family over every fresh report, written straight into `out`: at
// 10,000 VMs this page is megabytes, and building prometheus-cpp's
// MetricFamily objects for 50,000 series first doubled the reporter's peak
// memory at every scrape.
template <typename ValueOf>
void AppendVmFamily(std::string& out, const char* name, const std::string& help,
                    const std::vector<const StoredReport*>& fresh, ValueOf value_of,
                    const char* extra_label = nullptr) {
  bool header = false;
  for (const StoredReport* p : fresh) {
    const StoredReport& s = *p;
    // value_of gives the value, and the extra label's value when there is one.
    std::string extra;
    const std::optional<double> v = value_of(s, extra);
    if (!v) continue;
    if (!header) {
      AppendHeader(out, name, help);
      header = true;
    }
    AppendVmSeries(out, name, s.report.namespace_, s.report.vmi_name, s.node, *v, extra_label,
                   extra);
  }
}

// Every running VMI's report state, and the VMIs per state and reason (every
// pair listed, 0 included, so that a rule can tell "none" from "not known").
void AppendReportStates(std::string& out, const std::vector<VmiStateRow>& states) {
  const char* row_name = "status_reporter_vmi_report_state";
  AppendHeader(out, row_name,
               "1 per running VMI on its report state: reporting, starting (injected, no report "
               "yet), silent (injected, no accepted report for --silent-intervals sidecar "
               "intervals) or not_injected; reason says why.");
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const auto& [state, reason] : kReportStateReasons) counts[{StateName(state), reason}] = 0;
  for (const auto& r : states) {
    const char* state = StateName(r.state.state);
    ++counts[{state, r.state.reason}];
    out += row_name;
    out += "{namespace=\"";
    AppendLabelValue(out, r.namespace_);
    out += "\",name=\"";
    AppendLabelValue(out, r.name);
    out += "\",node=\"";
    AppendLabelValue(out, r.node);
    out += fmt::format("\",state=\"{}\",reason=\"{}\"}} 1\n", state, r.state.reason);
  }
  const char* count_name = "status_reporter_vmis";
  AppendHeader(out, count_name, "Running VMIs by report state and reason.");
  for (const auto& [key, n] : counts)
    out +=
        fmt::format("{}{{state=\"{}\",reason=\"{}\"}} {}\n", count_name, key.first, key.second, n);
}

// The VM families, from the reports fresh at `now` (under the store's lock).
void AppendVmFamilies(std::string& out, const std::vector<const StoredReport*>& fresh,
                      const ReportStore& store, Clock::time_point now, bool export_guest_load,
                      bool export_ratios) {
  const std::string sampled =
      ", in runnable threads, as reported by the VM's guest-exporter sidecar; sampled every poll "
      "interval and "
      "absent when the guest agent gives no load or the sample is stale.";
  const auto load = [&](double ReportLoad::*field) {
    return [&store, now, export_guest_load, field](const StoredReport& s,
                                                   std::string&) -> std::optional<double> {
      if (!export_guest_load || !store.LoadFresh(s, now)) return std::nullopt;
      return (*s.report.load).*field;
    };
  };
  AppendVmFamily(out, "kubevirt_vmi_guest_load_1m", "Guest load average over 1 minute" + sampled,
                 fresh, load(&ReportLoad::load1m));
  AppendVmFamily(out, "kubevirt_vmi_guest_load_5m", "Guest load average over 5 minutes" + sampled,
                 fresh, load(&ReportLoad::load5m));
  AppendVmFamily(out, "kubevirt_vmi_guest_load_15m", "Guest load average over 15 minutes" + sampled,
                 fresh, load(&ReportLoad::load15m));
  AppendVmFamily(
      out, "kubevirt_vmi_cpu_allocation_ratio",
      "Guest vCPUs divided by the compute container's CPU request in cores (see docs/ratios.md).",
      fresh, [export_ratios](const StoredReport& s, std::string&) {
        return export_ratios ? s.report.cpu_allocation_ratio : std::nullopt;
      });
  AppendVmFamily(out, "kubevirt_vmi_memory_overcommit_ratio",
                 "Guest memory divided by the memory request without virtualization overhead (see "
                 "docs/ratios.md).",
                 fresh, [export_ratios](const StoredReport& s, std::string&) {
                   return export_ratios ? s.report.memory_overcommit_ratio : std::nullopt;
                 });
  // The sidecars' own health, from their reports: no PodMonitor needed (the
  // pod IP leads to the guest). Reports of sidecars older than the health
  // field give only the load status.
  AppendVmFamily(
      out, "status_reporter_sidecar_guest_load_status",
      "1 per VM with a fresh report on why its sidecar has or has no guest load (reason as "
      "guest_exporter_guest_load_status).",
      fresh,
      [](const StoredReport& s, std::string& reason) -> std::optional<double> {
        reason = s.report.load_reason;
        return 1;
      },
      "reason");
  AppendVmFamily(out, "status_reporter_sidecar_libvirt_up",
                 "1 while the VM's sidecar said, in its last report, that it is connected to the "
                 "pod's libvirt, else 0.",
                 fresh, [](const StoredReport& s, std::string&) -> std::optional<double> {
                   if (!s.report.health) return std::nullopt;
                   return s.report.health->libvirt_up ? 1 : 0;
                 });
  AppendVmFamily(
      out, "status_reporter_sidecar_report_failures",
      "Report attempts the VM's sidecar could not deliver before its last accepted report; error "
      "is the last one's class (unreachable, token_unreadable, http_<code>; none).",
      fresh,
      [](const StoredReport& s, std::string& error) -> std::optional<double> {
        if (!s.report.health) return std::nullopt;
        error = s.report.health->last_error.empty() ? "none" : s.report.health->last_error;
        return static_cast<double>(s.report.health->failed_attempts);
      },
      "error");
}

}  // namespace

std::string RenderReporterMetrics(ReportStore& store, Clock::time_point now, bool export_guest_load,
                                  const ReporterMetrics& self, bool export_ratios,
                                  const std::vector<VmiStateRow>* states) {
  std::string out;
  store.WithFresh(now, [&](const std::vector<const StoredReport*>& fresh) {
    // Reserved, not touched: at 10,000 VMs a page grown by doubling would
    // hold the old and the new buffer at once. 8 series of about 90 bytes
    // per fresh report, one state row of about 150 per running VMI.
    out.reserve(fresh.size() * 8 * 96 + (states ? states->size() * 160 : 0) + 16384);
    AppendVmFamilies(out, fresh, store, now, export_guest_load, export_ratios);
  });
  if (states != nullptr) AppendReportStates(out, *states);
  out += prometheus::TextSerializer().Serialize(self.registry().Collect());
  return out;
}

}  // namespace gm::reporter
