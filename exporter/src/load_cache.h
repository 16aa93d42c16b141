#pragma once
// The cache between the poller (writer) and scrapes (readers). Readers never
// wait on libvirt: they copy a snapshot under a short lock.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "guest_load.h"
#include "hypervisor.h"
#include "identity.h"

namespace gm::exporter {

using Clock = std::chrono::steady_clock;

/// What one domain looks like to a reader at a given moment.
struct DomainView {
  std::string domain;
  Identity identity;
  DomainInfo info;
  std::optional<LoadAverage> load;   // present only when fresh
  Reason reason = Reason::kPending;  // why load is (not) present
  std::string detail;
  std::optional<std::chrono::system_clock::time_point> sample_wall_time;  // last good sample
};

/// The freshness rule, pure: a sample older than `max_age` is no longer true.
/// Returns the reason to show: the recorded one, or kStale for an old sample.
Reason EffectiveReason(Reason recorded, std::optional<Clock::time_point> sample_time,
                       Clock::time_point now, Clock::duration max_age);

class LoadCache {
 public:
  /// `max_age` bounds both load samples and domains not seen running since.
  explicit LoadCache(Clock::duration max_age) : max_age_(max_age) {}

  /// The domain was seen running now (listing or lifecycle event).
  void Observe(const DomainInfo& info, const Identity& identity, Clock::time_point now);
  /// Records the outcome of a load read. A failed read drops the old sample:
  /// the agent says it has no answer, so the last one is no longer true.
  void Record(const std::string& domain, const LoadResult& result, Clock::time_point now,
              std::chrono::system_clock::time_point wall_now);
  /// Forgets a domain (stopped, undefined).
  void Remove(const std::string& domain);
  /// Forgets every domain not in `running`.
  void RetainOnly(const std::set<std::string>& running);

  /// Domains seen within max_age, with load only where fresh.
  std::vector<DomainView> Snapshot(Clock::time_point now) const;
  Clock::duration MaxAge() const { return max_age_; }
  /// Changes whenever the cache does, so a rendered page can be reused until then.
  uint64_t generation() const { return generation_; }

 private:
  struct Entry {
    Identity identity;
    DomainInfo info;
    Clock::time_point last_seen;
    std::optional<LoadAverage> load;
    std::optional<Clock::time_point> sample_time;
    std::optional<std::chrono::system_clock::time_point> sample_wall_time;
    Reason reason = Reason::kPending;
    std::string detail;
  };

  const Clock::duration max_age_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace gm::exporter
