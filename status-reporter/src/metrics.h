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

  const prometheus::Registry& registry() const { return *registry_; }

 private:
  prometheus::Family<prometheus::Counter>& reports_;
  prometheus::Family<prometheus::Counter>& api_requests_;
  prometheus::Family<prometheus::Counter>& admissions_;
  prometheus::Gauge& mode_status_;
  prometheus::Gauge& mode_annotations_;
  std::mutex mu_;  // guards the lookups below (Family::Add is thread-safe, the maps are not)
  std::map<std::string, prometheus::Counter*> reports_by_result_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> api_by_verb_code_;
  std::map<std::string, prometheus::Counter*> admissions_by_decision_;
};

/// The /metrics body. `export_guest_load` off drops the guest-load gauges
/// (for clusters whose KubeVirt already exports them). `states`: every
/// running VMI's report state; null leaves the state families out (a standby
/// knows no reports: its zeros would read as "no VMI in this state").
std::string RenderReporterMetrics(const std::vector<StoredReport>& fresh, const ReportStore& store,
                                  Clock::time_point now, bool export_guest_load,
                                  const ReporterMetrics& self,
                                  const std::vector<VmiStateRow>* states = nullptr);

}  // namespace gm::reporter
