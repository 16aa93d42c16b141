#include "injection_watch.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "gm/kube/backoff.h"
#include "gm/kube/errors.h"
#include "gm/kube/paths.h"
#include "gm/logging.h"

namespace gm::reporter {

using nlohmann::json;
using std::chrono::milliseconds;

InjectionWatch::InjectionWatch(kube::Client& client, std::string webhook_configuration,
                               std::function<bool()> native_sidecars)
    : client_(client),
      webhook_configuration_(std::move(webhook_configuration)),
      native_sidecars_(std::move(native_sidecars)) {
  if (webhook_configuration_.empty()) facts_.webhook_installed = true;
}

InjectionFacts InjectionWatch::Get() const {
  InjectionFacts f;
  {
    std::lock_guard lock(mu_);
    f = facts_;
  }
  f.native_sidecars = native_sidecars_();
  return f;
}

void InjectionWatch::ReadOnce(const std::atomic<bool>& stop) {
  kube::RequestSpec spec;
  spec.timeout = std::chrono::seconds(10);
  spec.stop = &stop;
  if (!webhook_configuration_.empty()) {
    spec.path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/" +
                webhook_configuration_;
    std::optional<WallClock::time_point> created;
    bool installed = true;
    try {
      const json mwc = json::parse(client_.Request(spec).body);
      created = ParseApiTime(mwc.at("metadata").value("creationTimestamp", ""));
    } catch (const kube::NotFound&) {
      installed = false;  // webhook.enabled=false: the chart leaves it out
    }
    std::lock_guard lock(mu_);
    facts_.webhook_installed = installed;
    facts_.webhook_created = created;
  }
  // Namespaces that opted out never reach the webhook (its namespaceSelector).
  spec.path = "/api/v1/namespaces";
  spec.query = {{"labelSelector", "guestmetrics.kubevirt.io/inject=false"}};
  const json list = json::parse(client_.Request(spec).body);
  std::set<std::string> names;
  for (const auto& ns : list.at("items"))
    names.insert(ns.at("metadata").at("name").get<std::string>());
  std::lock_guard lock(mu_);
  facts_.opted_out_namespaces = std::move(names);
}

void InjectionWatch::Run(const std::atomic<bool>& stop) {
  constexpr milliseconds kPeriod = std::chrono::minutes(5);
  constexpr milliseconds kFirstBackoff = std::chrono::seconds(5);
  // Waits in [2.5 s, 5 s) after the first failure, doubling up to [period/2, period).
  kube::Backoff backoff(kFirstBackoff / 2, kPeriod / 2);
  bool failing = false;
  while (!stop) {
    kube::Backoff::Duration wait = kPeriod;
    try {
      ReadOnce(stop);
      if (failing) spdlog::info("the webhook configuration and opted-out namespaces read again");
      failing = false;
      backoff.Reset();
    } catch (const kube::Cancelled&) {
      return;
    } catch (const std::exception& e) {
      // Once per run of failures; the report states keep what was known.
      if (!failing) {
        spdlog::warn(
            "cannot read the webhook configuration or the opted-out namespaces, retrying with "
            "backoff (report states keep what they knew): {}",
            EscapeForLog(e.what()));
      }
      failing = true;
      wait = backoff.Next();
    }
    if (!kube::SleepUnlessStopped(wait, stop)) return;
  }
}

}  // namespace gm::reporter
