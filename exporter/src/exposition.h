#pragma once
// Metric names, HELP texts and the text exposition of one scrape. Families for
// domains are built fresh at each scrape from the cache snapshot, so a label
// set that is no longer true cannot linger.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gm/ratios.h"
#include "guest_load.h"
#include "http_protocol.h"
#include "load_cache.h"

namespace gm::exporter {

/// The exporter's own counters and gauges, updated by the poller and the server.
class SelfMetrics {
  // Declared first: the metric references below are initialised from it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  explicit SelfMetrics(const std::string& libvirt_version);

  prometheus::Gauge& libvirt_up;
  prometheus::Counter& libvirt_connects_ok;
  prometheus::Counter& libvirt_connects_failed;
  prometheus::Counter& libvirt_calls_hung;
  prometheus::Histogram& poll_duration;
  prometheus::Counter& reports_ok;
  prometheus::Counter& reports_failed;
  /// Counts one finished load read by its outcome.
  void CountPoll(Reason reason);

  const prometheus::Registry& registry() const { return *registry_; }

 private:
  prometheus::Family<prometheus::Counter>* polls_ = nullptr;
  std::map<Reason, prometheus::Counter*> polls_by_reason_;
};

/// The ratio inputs for one domain: the pod's requests (`requests`, empty on
/// a plain libvirt host) with the domain's live vCPUs and memory.
RatioInputs InputsFor(const DomainView& d, const RatioInputs& requests);

/// Renders the whole /metrics body: domain families from `domains` (load,
/// live allocation, ratios where the requests allow), then the exporter's own
/// metrics, then what each HTTP listener in `http` refused or cut.
std::string RenderMetrics(const std::vector<DomainView>& domains, const std::string& node,
                          std::chrono::seconds interval, const RatioInputs& requests,
                          const SelfMetrics& self, const std::vector<HttpListenerStats>& http = {});

}  // namespace gm::exporter
