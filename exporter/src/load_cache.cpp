#include "load_cache.h"

namespace gm::exporter {

Reason EffectiveReason(Reason recorded, std::optional<Clock::time_point> sample_time,
                       Clock::time_point now, Clock::duration max_age) {
  if (recorded != Reason::kOk) return recorded;
  if (!sample_time || now - *sample_time > max_age) return Reason::kStale;
  return Reason::kOk;
}

void LoadCache::Observe(const DomainInfo& info, const Identity& identity, Clock::time_point now) {
  std::lock_guard lock(mu_);
  ++generation_;
  auto& e = entries_[info.name];
  e.identity = identity;
  e.info = info;
  e.last_seen = now;
}

void LoadCache::Record(const std::string& domain, const LoadResult& result, Clock::time_point now,
                       std::chrono::system_clock::time_point wall_now) {
  std::lock_guard lock(mu_);
  ++generation_;
  const auto it = entries_.find(domain);
  if (it == entries_.end()) return;  // removed while the read was in flight
  auto& e = it->second;
  e.reason = result.reason;
  e.detail = result.detail;
  if (result.load) {
    e.load = result.load;
    e.sample_time = now;
    e.sample_wall_time = wall_now;
  } else {
    e.load.reset();
    e.sample_time.reset();
  }
}

void LoadCache::Remove(const std::string& domain) {
  std::lock_guard lock(mu_);
  ++generation_;
  entries_.erase(domain);
}

void LoadCache::RetainOnly(const std::set<std::string>& running) {
  std::lock_guard lock(mu_);
  ++generation_;
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = running.count(it->first) ? std::next(it) : entries_.erase(it);
  }
}

std::vector<DomainView> LoadCache::Snapshot(Clock::time_point now) const {
  std::vector<DomainView> out;
  std::lock_guard lock(mu_);
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) {
    // A domain not seen running within max_age (libvirt unreachable or hung)
    // is not known to exist any more: show nothing rather than old facts.
    if (now - e.last_seen > max_age_) continue;
    DomainView v{name, e.identity, e.info, std::nullopt, e.reason, e.detail, e.sample_wall_time};
    v.reason = EffectiveReason(e.reason, e.sample_time, now, max_age_);
    if (v.reason == Reason::kOk) v.load = e.load;
    if (v.reason == Reason::kStale) v.detail = "last sample is older than the freshness bound";
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace gm::exporter
