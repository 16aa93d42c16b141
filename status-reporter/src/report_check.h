#pragma once
// Whether a report may be accepted: pure, on the caches' facts.

#include <string>

#include "facts.h"
#include "gm/report.h"

namespace gm::reporter {

/// Who a TokenReview says the caller is.
struct TokenIdentity {
  std::string namespace_;
  std::string service_account;
  std::string pod_name;  // extra authentication.kubernetes.io/pod-name
  std::string pod_uid;   // extra authentication.kubernetes.io/pod-uid
};

struct Verdict {
  int http_status = 202;
  std::string reason;  // label of status_reporter_reports_total{result}
  std::string message;
  bool accepted() const { return http_status == 202; }
};

/// Accepts a report only from the VMI's current active launcher pod, as named
/// by the caller's pod-bound token. `pod`/`vmi` are null when not cached.
Verdict CheckReport(const Report& report, const TokenIdentity& who, const PodFacts* pod,
                    const VmiFacts* vmi);

}  // namespace gm::reporter
