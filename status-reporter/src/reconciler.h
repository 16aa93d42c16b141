#pragma once
// Brings one VMI and its launcher pod in line with the VMI's latest report.
// Called by the leader's workers with a "namespace/name" key from the queue.

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "ingestion.h"
#include "metrics.h"
#include "plan.h"
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
  virtual WriteResult PatchPod(const std::string& ns, const std::string& name, const nlohmann::json& patch) = 0;
  /// Through the status subresource, with fieldValidation=Strict.
  virtual WriteResult PatchVmiStatus(const std::string& ns, const std::string& name, const nlohmann::json& patch) = 0;
  virtual WriteResult PatchVmi(const std::string& ns, const std::string& name, const nlohmann::json& patch) = 0;
};

enum class Outcome {
  kDone,   // in line (or nothing to do): Forget
  kRetry,  // transient failure: AddRateLimited
  kDrop,   // nothing can be done (object gone, report not from the active pod)
};

class Reconciler {
 public:
  /// `reprobe` is how often annotation mode tries the status fields again
  /// (a KubeVirt upgrade may bring a CRD that keeps them).
  Reconciler(const ReportStore& store, const FactsSource& facts, ObjectWriter& writer, ReporterMetrics& metrics,
             std::chrono::seconds reprobe = std::chrono::seconds(600));

  Outcome Reconcile(const std::string& vmi_key);
  VmiRatioMode mode() const { return mode_; }

 private:
  Outcome WriteVmi(const VmiFacts& vmi, const Report& r);
  void SetMode(VmiRatioMode m);

  const ReportStore& store_;
  const FactsSource& facts_;
  ObjectWriter& writer_;
  ReporterMetrics& metrics_;
  const std::chrono::seconds reprobe_;
  std::atomic<VmiRatioMode> mode_{VmiRatioMode::kStatus};
  std::mutex probe_mu_;
  Clock::time_point last_probe_{};
};

/// True when a strict status patch was refused because the schema lacks the
/// fields (the API server's "strict decoding error: unknown field").
bool IsUnknownFieldError(const WriteResult& r);

}  // namespace gm::reporter
