#include "report_intake.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "gm/logging.h"

namespace gm::reporter {

using nlohmann::json;

json TokenReviewRequest(const std::string& token, const std::string& audience) {
  return {{"apiVersion", "authentication.k8s.io/v1"},
          {"kind", "TokenReview"},
          {"spec", {{"token", token}, {"audiences", json::array({audience})}}}};
}

namespace {
std::string FirstExtra(const json& extra, const char* key) {
  const auto it = extra.find(key);
  if (it == extra.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return {};
  return (*it)[0].get<std::string>();
}
}  // namespace

ReviewResult ParseTokenReview(const json& response) {
  ReviewResult r;
  const json status =
      response.is_object() ? response.value("status", json::object()) : json::object();
  if (!status.is_object()) {
    r.error = "TokenReview response has no status";
    return r;
  }
  r.authenticated = status.value("authenticated", false);
  r.error = status.value("error", "");
  if (!r.authenticated) {
    if (r.error.empty()) r.error = "token not authenticated";
    return r;
  }
  const json user = status.value("user", json::object());
  const std::string username = user.is_object() ? user.value("username", "") : "";
  // system:serviceaccount:<namespace>:<name>
  const std::string prefix = "system:serviceaccount:";
  const auto colon = username.find(':', prefix.size());
  if (username.rfind(prefix, 0) != 0 || colon == std::string::npos) {
    r.authenticated = false;
    r.error = "'" + username + "' is not a service account";
    return r;
  }
  r.who.namespace_ = username.substr(prefix.size(), colon - prefix.size());
  r.who.service_account = username.substr(colon + 1);
  const json extra = user.value("extra", json::object());
  if (extra.is_object()) {
    r.who.pod_name = FirstExtra(extra, "authentication.kubernetes.io/pod-name");
    r.who.pod_uid = FirstExtra(extra, "authentication.kubernetes.io/pod-uid");
  }
  return r;
}

Reply Ingestion::Refuse(int status, const std::string& result, const std::string& message) {
  metrics_.CountReport(result);
  // The message quotes what the peer sent (names, uids, the API's error text).
  spdlog::debug("report refused ({}): {}", result, EscapeForLog(message));
  return {status, json{{"result", result}, {"message", message}}.dump()};
}

Reply Ingestion::Handle(const std::string& authorization, const std::string& body) {
  // Standbys report not ready, so the Service sends reports to the leader;
  // one that still arrives here is told to come back.
  if (!is_leader_()) return Refuse(503, "not_leader", "this replica is not the leader; retry");
  const std::string bearer = "Bearer ";
  if (authorization.rfind(bearer, 0) != 0 || authorization.size() == bearer.size()) {
    return Refuse(401, "unauthenticated", "a bearer token is required");
  }
  const std::string token = authorization.substr(bearer.size());
  const auto now = std::chrono::system_clock::now();
  auto who = tokens_.Get(token, now);
  if (!who) {
    const ReviewResult review = reviewer_.Review(token);
    if (review.api_failed)
      return Refuse(503, "tokenreview_failed", "cannot review the token now: " + review.error);
    if (!review.authenticated)
      return Refuse(401, "unauthenticated", "token rejected: " + review.error);
    tokens_.Put(token, review.who, now);
    who = review.who;
  }
  std::string error;
  const auto report = DecodeReport(body, error);
  if (!report) return Refuse(400, "bad_report", error);

  const auto pod = facts_.Pod(Key(report->namespace_, report->pod_name));
  const auto vmi = facts_.Vmi(Key(report->namespace_, report->vmi_name));
  const Verdict v = CheckReport(*report, *who, pod ? &*pod : nullptr, vmi ? &*vmi : nullptr);
  if (!v.accepted()) return Refuse(v.http_status, v.reason, v.message);

  const std::string key = Key(report->namespace_, report->vmi_name);
  std::optional<ReportOrder> kept;
  if (store_.Put(key, {*report, pod->node, Clock::now()}, &kept) == PutResult::kStale) {
    // 409, not 200-ignored: a live sidecar numbers its reports upwards, so a
    // stale one is a replay or a delayed duplicate, or a restarted sidecar on
    // a node whose clock stepped back; the sender then sees it (log, retry
    // with a new number, guest_exporter_reports_total{result="error"})
    // instead of believing a report was taken that was not.
    const auto describe = [](const std::optional<ReportOrder>& o) {
      return o ? "report " + std::to_string(o->sequence) + " of the sidecar started at " +
                     std::to_string(o->sidecar_start_ms) + " ms"
               : std::string("a report without order");
    };
    return Refuse(409, "stale_report",
                  describe(report->order) + " is not newer than " + describe(kept) +
                      ", already accepted for pod " + Key(report->namespace_, report->pod_name) +
                      "; ignored");
  }
  enqueue_(key);
  metrics_.CountReport("accepted");
  return {202, json{{"result", "accepted"}}.dump()};
}

}  // namespace gm::reporter
