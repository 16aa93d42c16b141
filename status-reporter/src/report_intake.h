#pragma once
// The report endpoint's logic, apart from HTTP: authenticate the caller with
// TokenReview (cached), validate the report, check it against the caches, store
// it and queue the VMI for writing. Nothing is stored or queued on refusal.

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "facts.h"
#include "metrics.h"
#include "report_check.h"
#include "report_store.h"
#include "token_cache.h"

namespace gm::reporter {

/// Outcome of one TokenReview.
struct ReviewResult {
  bool api_failed = false;  // the API did not answer: the caller may retry
  bool authenticated = false;
  TokenIdentity who;
  std::string error;
};

/// The TokenReview request body for `token` and `audience`.
nlohmann::json TokenReviewRequest(const std::string& token, const std::string& audience);
/// Reads a TokenReview response: identity of a service account, and the pod
/// the token is bound to from user.extra.
ReviewResult ParseTokenReview(const nlohmann::json& response);

class TokenReviewer {
 public:
  virtual ~TokenReviewer() = default;
  virtual ReviewResult Review(const std::string& token) = 0;
};

/// Read access to the informers' caches.
class FactsSource {
 public:
  virtual ~FactsSource() = default;
  virtual std::optional<PodFacts> Pod(const std::string& key) const = 0;
  virtual std::optional<VmiFacts> Vmi(const std::string& key) const = 0;
};

struct Reply {
  int status = 202;
  std::string body;  // JSON: {"result": ..., "message": ...}
};

class Ingestion {
 public:
  Ingestion(std::function<bool()> is_leader, TokenReviewer& reviewer, TokenCache& tokens,
            const FactsSource& facts, ReportStore& store,
            std::function<void(const std::string& vmi_key)> enqueue, ReporterMetrics& metrics)
      : is_leader_(std::move(is_leader)),
        reviewer_(reviewer),
        tokens_(tokens),
        facts_(facts),
        store_(store),
        enqueue_(std::move(enqueue)),
        metrics_(metrics) {}

  /// Handles POST /v1/reports with its Authorization header and body.
  Reply Handle(const std::string& authorization, const std::string& body);

 private:
  Reply Refuse(int status, const std::string& result, const std::string& message);

  std::function<bool()> is_leader_;
  TokenReviewer& reviewer_;
  TokenCache& tokens_;
  const FactsSource& facts_;
  ReportStore& store_;
  std::function<void(const std::string&)> enqueue_;
  ReporterMetrics& metrics_;
};

}  // namespace gm::reporter
