#pragma once
// Brings one VMI and its launcher pod in line with the VMI's latest report.
// Called by the leader's workers with a "namespace/name" key from the queue.

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "metrics.h"
#include "plan.h"
#include "ratio_mode.h"
#include "report_intake.h"
#include "report_store.h"

namespace gm::reporter {

/// Result of one write to the API.
struct WriteResult {
  int code = 0;  // HTTP status, 0 when no answer came
  std::string message;
  nlohmann::json object;  // the object as stored, on success
  bool ok() const { return code >= 200 && code < 300; }
};

/// The three writes the reconciler makes (merge patches). The real one is
/// the Kubernetes client; unit tests record the calls.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual WriteResult PatchPod(const std::string& ns, const std::string& name,
                               const nlohmann::json& patch) = 0;
  /// Through the status subresource, with fieldValidation=Strict.
  virtual WriteResult PatchVmiStatus(const std::string& ns, const std::string& name,
                                     const nlohmann::json& patch) = 0;
  virtual WriteResult PatchVmi(const std::string& ns, const std::string& name,
                               const nlohmann::json& patch) = 0;
};

/// Objects as the reconciler last wrote them, kept until the informer's cache
/// shows that version or a newer one (client-go's MutationCache does the same).
/// Without it, a reconcile that runs before the watch event of its own last
/// write arrives — or while the watch is down — writes the same change again.
template <typename Facts>
class RecentWrites {
 public:
  /// Entries last at most `ttl`: a cache that stays behind longer is trusted again.
  explicit RecentWrites(Clock::duration ttl) : ttl_(ttl) {}

  void Remember(const std::string& key, Facts written, Clock::time_point now) {
    if (written.resource_version == 0) return;  // cannot be ordered against the cache
    std::lock_guard lock(mu_);
    if (now - last_sweep_ >= ttl_) {  // keys never looked up again must not pile up
      last_sweep_ = now;
      for (auto it = entries_.begin(); it != entries_.end();) {
        it = now - it->second.at > ttl_ ? entries_.erase(it) : std::next(it);
      }
    }
    entries_.insert_or_assign(key, Entry{std::move(written), now});
  }

  /// What we wrote, when it is newer than `cached`; else `cached`. An object
  /// the cache does not hold is taken as gone, whatever we wrote.
  std::optional<Facts> Newest(const std::string& key, std::optional<Facts> cached,
                              Clock::time_point now) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(key);
    if (it == entries_.end()) return cached;
    const Entry& e = it->second;
    if (!cached || now - e.at > ttl_ || cached->resource_version == 0 ||
        cached->resource_version >= e.written.resource_version) {
      entries_.erase(it);  // the cache caught up (or cannot be compared): it is the truth again
      return cached;
    }
    return e.written;
  }

  size_t size() const {
    std::lock_guard lock(mu_);
    return entries_.size();
  }

 private:
  struct Entry {
    Facts written;
    Clock::time_point at;
  };
  const Clock::duration ttl_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  Clock::time_point last_sweep_{};
};

enum class Outcome {
  kDone,   // in line (or nothing to do): Forget
  kRetry,  // transient failure: AddRateLimited
  kDrop,   // nothing can be done (object gone, report not from the active pod)
};

struct ReconcilerOptions {
  /// VEP 156's switch: false writes nothing to pods or VMIs (reports are
  /// still taken and their guest load served). Ratios written before stay.
  bool write_ratios = true;
  /// How often annotation mode tries the status fields again, besides after
  /// each change of the VMI CRD (a KubeVirt upgrade may bring one that keeps them).
  std::chrono::seconds reprobe{600};
};

class Reconciler {
 public:
  Reconciler(const ReportStore& store, const FactsSource& facts, ObjectWriter& writer,
             ReporterMetrics& metrics, ReconcilerOptions options = {});

  Outcome Reconcile(const std::string& vmi_key);
  VmiRatioMode mode() const { return mode_.mode(); }
  /// The VMI CRD changed: the next VMI write tries the status fields again.
  void SchemaChanged() { mode_.SchemaChanged(); }

 private:
  Outcome WriteVmi(const VmiFacts& vmi, const Report& r);

  const ReportStore& store_;
  const FactsSource& facts_;
  ObjectWriter& writer_;
  RatioModeProbe mode_;
  RecentWrites<PodFacts> written_pods_{std::chrono::minutes(2)};
  RecentWrites<VmiFacts> written_vmis_{std::chrono::minutes(2)};
};

/// True when a strict status patch was refused because the schema lacks the
/// fields (the API server's "strict decoding error: unknown field").
bool IsUnknownFieldError(const WriteResult& r);

}  // namespace gm::reporter
