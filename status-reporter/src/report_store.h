#pragma once
// The latest accepted report of each VMI, with the time it arrived. The
// reconciler reads it to write ratios; /metrics reads it for guest load.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gm/report.h"

namespace gm::reporter {

using Clock = std::chrono::steady_clock;

struct StoredReport {
  Report report;
  std::string node;  // from the pod in the API, not from the sidecar
  Clock::time_point received;
};

/// What Put did.
enum class PutResult {
  kChanged,    // stored; it says something new (first report, other pod, other ratios): a write may
               // be needed
  kUnchanged,  // stored (fresher load, later heartbeat); nothing to write
  kStale,      // not stored: a newer report of the same pod is already here
};

class ReportStore {
 public:
  /// `max_age` bounds how long a report's load and ratios are shown.
  explicit ReportStore(Clock::duration max_age) : max_age_(max_age) {}

  /// Stores the report unless it is stale: a report of the same pod whose
  /// order is not after the stored one's, or that has no order while the
  /// stored one has. `kept`, when given, receives the stored report's order on
  /// kStale. A stored report older than the freshness bound never blocks (it is
  /// gone for every reader, and a node clock stepped back must not lock a
  /// restarted sidecar out for longer than that).
  PutResult Put(const std::string& vmi_key, StoredReport r,
                std::optional<ReportOrder>* kept = nullptr);
  std::optional<StoredReport> Get(const std::string& vmi_key) const;
  /// The last accepted report of a VMI, kept after its load and ratios went
  /// stale (until Erase): how long a sidecar has been silent is its age.
  struct Accepted {
    std::string pod_uid;
    Clock::time_point received;
    std::optional<ReportHealth> health;
  };
  std::optional<Accepted> LastAccepted(const std::string& vmi_key) const;
  void Erase(const std::string& vmi_key);

  /// Calls `f` with the reports still within the bound (older ones are
  /// dropped), in key order, under the store's lock, and returns what `f`
  /// returns. Pointers, not copies: at 10,000 VMIs a copy is megabytes on
  /// every scrape. `f` must not call the
  /// store, and must be quick: reports wait meanwhile.
  template <typename F>
  auto WithFresh(Clock::time_point now, F f) {
    std::lock_guard lock(mu_);
    std::vector<const StoredReport*> fresh;
    fresh.reserve(reports_.size());
    ForEachFreshLocked(now, [&fresh](const StoredReport& r) { fresh.push_back(&r); });
    return f(static_cast<const std::vector<const StoredReport*>&>(fresh));
  }
  /// True when a stored sample's load is still fresh at `now`.
  bool LoadFresh(const StoredReport& r, Clock::time_point now) const;
  size_t size() const;

 private:
  // Drops the reports past the bound and calls `f` with each other one; mu_ held.
  template <typename F>
  void ForEachFreshLocked(Clock::time_point now, F f) {
    for (auto it = reports_.begin(); it != reports_.end();) {
      if (now - it->second.received > max_age_) {
        it = reports_.erase(it);  // the sidecar stopped reporting: nothing about it is still known
        continue;
      }
      f(it->second);
      ++it;
    }
  }

  const Clock::duration max_age_;
  mutable std::mutex mu_;
  std::map<std::string, StoredReport> reports_;
  std::map<std::string, Accepted> accepted_;
};

}  // namespace gm::reporter
