#pragma once
// status-reporter's /metrics: every VM's guest load and ratios from fresh
// reports (built per scrape, so nothing stale lingers), and its own health.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "plan.h"
#include "report_state.h"
#include "report_store.h"

namespace gm::reporter {

class ReporterMetrics {
  std::shared_ptr<prometheus::Registry> registry_;  // first: the references below come from it

 public:
  ReporterMetrics();

  prometheus::Gauge& leader;
  prometheus::Gauge& queue_depth;
  prometheus::Gauge& caches_synced;
  prometheus::Histogram& reconcile_duration;
  /// 1 while the reporter believes the API server has native sidecars (and
  /// so the webhook injects), else 0.
  prometheus::Gauge& native_sidecars;

  /// Counts a report by result: accepted, or the reason it was refused.
  void CountReport(const std::string& result);
  /// Counts one API request by verb and HTTP code (0: no answer).
  void CountApiRequest(const std::string& verb, int code);
  void SetVmiRatioMode(VmiRatioMode mode);
  /// Counts one webhook answer by its decision (see AdmissionResult).
  void CountAdmission(const std::string& decision);

  // Work the listeners refused or cut (servers.cpp), so that abuse or
  // overload shows on /metrics. Thread-safe; every known label value is
  // exposed from the start, at 0.
  /// A connection closed at accept: `listener` ("https" or "http") was at its budget.
  void CountConnectionRefused(const std::string& listener);
  /// A TLS handshake that failed ("error") or did not finish in time ("timeout").
  void CountTlsHandshakeFailure(const std::string& reason);
  /// A request not read within the request deadline on `listener`.
  void CountRequestTimeout(const std::string& listener);
  /// A body refused with 413 on `endpoint` ("reports", "webhook", "other").
  void CountBodyTooLarge(const std::string& endpoint);
  /// A request answered 503 because `pool` ("reports", "webhook", "metrics") was full.
  void CountPoolFull(const std::string& pool);

  const prometheus::Registry& registry() const { return *registry_; }

 private:
  prometheus::Family<prometheus::Counter>& reports_;
  prometheus::Family<prometheus::Counter>& api_requests_;
  prometheus::Family<prometheus::Counter>& admissions_;
  prometheus::Family<prometheus::Gauge>& modes_;
  std::mutex mu_;  // guards the lookups below (Family::Add is thread-safe, the maps are not)
  std::map<std::string, prometheus::Counter*> reports_by_result_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> api_by_verb_code_;
  std::map<std::string, prometheus::Counter*> admissions_by_decision_;

  // The listeners' refusals: one family each, counters by (family, label value).
  void CountIn(prometheus::Family<prometheus::Counter>* family, const char* label,
               const std::string& value);
  prometheus::Family<prometheus::Counter>* connections_refused_ = nullptr;
  prometheus::Family<prometheus::Counter>* tls_handshake_failures_ = nullptr;
  prometheus::Family<prometheus::Counter>* requests_timed_out_ = nullptr;
  prometheus::Family<prometheus::Counter>* bodies_too_large_ = nullptr;
  prometheus::Family<prometheus::Counter>* pool_full_ = nullptr;
  std::map<std::pair<const void*, std::string>, prometheus::Counter*> refusals_;
};

/// The /metrics body. `export_guest_load` off drops the guest-load gauges
/// (for clusters whose KubeVirt already exports them); `export_ratios` off
/// (--write-ratios=false) drops the two ratio gauges. `states`: every
/// running VMI's report state; null leaves the state families out (a standby
/// knows no reports: its zeros would read as "no VMI in this state").
/// Reads `store`'s fresh reports in place (and drops the stale ones).
std::string RenderReporterMetrics(ReportStore& store, Clock::time_point now, bool export_guest_load,
                                  const ReporterMetrics& self, bool export_ratios = true,
                                  const std::vector<VmiStateRow>* states = nullptr);

}  // namespace gm::reporter
