#include "report_store.h"

namespace gm::reporter {

PutResult ReportStore::Put(const std::string& key, StoredReport r,
                           std::optional<ReportOrder>* kept) {
  std::lock_guard lock(mu_);
  auto it = reports_.find(key);
  const auto record = [this, &key](const StoredReport& s) {
    accepted_[key] = Accepted{s.report.pod_uid, s.received, s.report.health};
  };
  if (it == reports_.end()) {
    record(r);
    reports_.emplace(key, std::move(r));
    return PutResult::kChanged;
  }
  const Report& old = it->second.report;
  // Only one pod's reports are compared: another pod reaches here only as the
  // VMI's active pod (report_check.cpp), and its sidecar's clock and numbers are its own.
  const bool same_pod = old.pod_uid == r.report.pod_uid;
  const bool expired = r.received - it->second.received > max_age_;
  if (same_pod && !expired && old.order && (!r.report.order || !(*old.order < *r.report.order))) {
    if (kept != nullptr) *kept = old.order;
    return PutResult::kStale;
  }
  const bool changed = old.pod_uid != r.report.pod_uid ||
                       old.cpu_allocation_ratio != r.report.cpu_allocation_ratio ||
                       old.memory_overcommit_ratio != r.report.memory_overcommit_ratio;
  record(r);
  it->second = std::move(r);
  return changed ? PutResult::kChanged : PutResult::kUnchanged;
}

std::optional<StoredReport> ReportStore::Get(const std::string& key) const {
  std::lock_guard lock(mu_);
  const auto it = reports_.find(key);
  if (it == reports_.end()) return std::nullopt;
  return it->second;
}

void ReportStore::Erase(const std::string& key) {
  std::lock_guard lock(mu_);
  reports_.erase(key);
  accepted_.erase(key);
}

std::optional<ReportStore::Accepted> ReportStore::LastAccepted(const std::string& key) const {
  std::lock_guard lock(mu_);
  const auto it = accepted_.find(key);
  if (it == accepted_.end()) return std::nullopt;
  return it->second;
}

bool ReportStore::LoadFresh(const StoredReport& r, Clock::time_point now) const {
  if (!r.report.load) return false;
  const auto sampled = r.received - std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(r.report.load->age_seconds));
  return now - sampled <= max_age_;
}

size_t ReportStore::size() const {
  std::lock_guard lock(mu_);
  return reports_.size();
}

}  // namespace gm::reporter
