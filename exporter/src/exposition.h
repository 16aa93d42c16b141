#pragma once
// Metric names, HELP texts and the text exposition of one scrape. Families for
// domains are built fresh at each scrape from the cache snapshot, so a label
// set that is no longer true cannot linger.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gm/ratios.h"
#include "guest_load.h"
#include "http_protocol.h"
#include "load_cache.h"

namespace gm::exporter {

/// A monotonic count, bumped by one thread and read by the one that renders.
class Counter {
 public:
  void Increment() { value_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

/// A value that is set, not summed.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// Observations counted into fixed buckets (upper bounds, ascending), with
/// their sum: the poll-duration histogram.
class Histogram {
 public:
  static constexpr std::array<double, 10> kBounds{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30};
  struct Snapshot {
    std::array<uint64_t, kBounds.size()> cumulative{};  // observations <= kBounds[i]
    uint64_t count = 0;
    double sum = 0;
  };
  void Observe(double v);
  Snapshot Read() const;

 private:
  mutable std::mutex mu_;
  std::array<uint64_t, kBounds.size()> buckets_{};  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

/// The exporter's own counters and gauges, updated by the poller and the
/// reporter, rendered with each scrape. Plain atomics rather than
/// prometheus-cpp: the page is written by RenderMetrics, and the library's
/// serializer (an std::ostringstream) was the sidecar's only reason to
/// initialise libstdc++'s locales, ~0.5 MiB of resident pages per sidecar
/// (docs/benchmarks.md).
class SelfMetrics {
 public:
  explicit SelfMetrics(std::string libvirt_version);

  Gauge libvirt_up;
  Counter libvirt_connects_ok;
  Counter libvirt_connects_failed;
  Counter libvirt_calls_hung;
  Histogram poll_duration;
  Counter reports_ok;
  Counter reports_failed;
  /// Counts one finished load read by its outcome.
  void CountPoll(Reason reason);

  const std::string& libvirt_version() const { return libvirt_version_; }
  /// Load reads by outcome, every outcome listed (zeros included).
  std::vector<std::pair<Reason, uint64_t>> Polls() const;

 private:
  static constexpr std::array<Reason, 10> kPollReasons{
      Reason::kOk,           Reason::kNoAgent,   Reason::kAgentDisconnected,
      Reason::kAgentTimeout, Reason::kAgentBusy, Reason::kCommandNotFound,
      Reason::kUnsupported,  Reason::kBadReply,  Reason::kDomainNotRunning,
      Reason::kLibvirtError};
  std::string libvirt_version_;
  std::array<Counter, kPollReasons.size()> polls_;
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
