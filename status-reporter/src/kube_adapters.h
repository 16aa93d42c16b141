#pragma once
// The core's interfaces on the Kubernetes API (gm::kube): the reconciler's
// writes, TokenReview, the webhook's lookups, the work queue as the writers
// see it, and whether the API server has native sidecars. I/O only; the
// decisions they feed live in gm_reporter_core.

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>

#include "admission.h"
#include "gm/kube/client.h"
#include "gm/kube/workqueue.h"
#include "metrics.h"
#include "reconciler.h"
#include "report_intake.h"
#include "write_worker.h"

namespace gm::reporter {

/// A merge patch; API errors become a WriteResult.
WriteResult Patch(kube::Client& client, const std::string& path, const nlohmann::json& patch,
                  const kube::Query& query = {});

class KubeWriter final : public ObjectWriter {
 public:
  explicit KubeWriter(kube::Client& c) : c_(c) {}
  WriteResult PatchPod(const std::string& ns, const std::string& name,
                       const nlohmann::json& patch) override;
  /// Strict: a CRD that prunes the fields answers 422 instead of keeping nothing.
  WriteResult PatchVmiStatus(const std::string& ns, const std::string& name,
                             const nlohmann::json& patch) override;
  WriteResult PatchVmi(const std::string& ns, const std::string& name,
                       const nlohmann::json& patch) override;

 private:
  kube::Client& c_;
};

class KubeReviewer final : public TokenReviewer {
 public:
  KubeReviewer(kube::Client& c, std::string audience) : c_(c), audience_(std::move(audience)) {}
  ReviewResult Review(const std::string& token) override;

 private:
  kube::Client& c_;
  const std::string audience_;
};

/// The webhook's two lookups: the pod's VMI and the KubeVirt CR. They end by
/// the admission's deadline (the API server's own timeout, less a margin), so
/// the webhook answers in time whatever the API does. Their client makes one
/// attempt per request: a retry after a 429's Retry-After would overrun that
/// deadline.
class KubeLookup final : public ClusterLookup {
 public:
  explicit KubeLookup(kube::Client& c) : c_(c) {}
  std::optional<nlohmann::json> Vmi(const std::string& ns, const std::string& name,
                                    Deadline deadline) override;
  std::optional<nlohmann::json> KubeVirts(Deadline deadline) override;

 private:
  // nullopt: not found; LookupFailed: no answer in time.
  std::optional<nlohmann::json> Get(const std::string& path, Deadline deadline);
  kube::Client& c_;
};

/// gm::kube's work queue as the writers use it.
class KubeKeyQueue final : public KeyQueue {
 public:
  explicit KubeKeyQueue(kube::WorkQueue& q) : q_(q) {}
  bool Get(std::string& key) override { return q_.Get(key); }
  void Done(const std::string& key) override { q_.Done(key); }
  void Forget(const std::string& key) override { q_.Forget(key); }
  void AddRateLimited(const std::string& key) override { q_.AddRateLimited(key); }

 private:
  kube::WorkQueue& q_;
};

/// Whether the API server has native sidecars (KEP-753); the webhook injects
/// only while it does. --native-sidecars=auto reads /version at start and
/// every 10 minutes (a server is upgraded in place); after a failed read it
/// tries again with jittered backoff from 5 s up to that period, keeping what
/// it knew, and logs once per run of failures. Until the first answer it
/// does not know, and the webhook does not inject.
class SidecarSupport {
 public:
  SidecarSupport(kube::Client& c, const std::string& mode, ReporterMetrics& m);
  NativeSidecars Get() const { return state_.load(); }
  void Run(const std::atomic<bool>& stop);

 private:
  // Logged once per change, not per pod.
  void Set(NativeSidecars now, const std::string& source);

  kube::Client& c_;
  ReporterMetrics& m_;
  const bool by_version_;
  std::atomic<NativeSidecars> state_{NativeSidecars::kUnknown};
};

}  // namespace gm::reporter
