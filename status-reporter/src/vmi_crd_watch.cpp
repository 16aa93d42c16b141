#include "vmi_crd_watch.h"

#include <spdlog/spdlog.h>

#include "gm/kube/backoff.h"
#include "gm/kube/errors.h"
#include "gm/kube/informer.h"
#include "gm/kube/paths.h"
#include "gm/logging.h"
#include "ratio_mode.h"

namespace gm::reporter {

namespace {

constexpr const char* kCrdVersion = "apiextensions.k8s.io/v1";

}  // namespace

void VmiCrdWatch::Run(const std::atomic<bool>& stop) {
  using std::chrono::milliseconds;
  constexpr milliseconds kPeriod = std::chrono::minutes(10);
  constexpr milliseconds kFirstBackoff = std::chrono::seconds(5);
  const std::string field_selector = std::string("metadata.name=") + kVmiCrdName;
  // The informer's own list and watch would warn at every backoff (30 s) for
  // as long as RBAC forbids them or the CRD is missing: first read the CRD
  // by name, and only once that works, watch it.
  // Waits in [2.5 s, 5 s) after the first failure, doubling up to [period/2, period).
  kube::Backoff backoff(kFirstBackoff / 2, kPeriod / 2);
  bool failing = false;
  while (!stop) {
    kube::Backoff::Duration wait = kPeriod;
    try {
      kube::RequestSpec spec;
      spec.path = kube::ObjectPath(kCrdVersion, "customresourcedefinitions", "", kVmiCrdName);
      spec.timeout = std::chrono::seconds(10);
      spec.retry = false;
      spec.stop = &stop;
      client_.Request(spec);
      break;
    } catch (const kube::Cancelled&) {
      return;
    } catch (const std::exception& e) {
      // Forbidden (no RBAC on the CRD) and NotFound (no KubeVirt yet) last:
      // ask again at the period. Anything else: backoff.
      const auto* api = dynamic_cast<const kube::ApiError*>(&e);
      const bool lasting = api != nullptr && (api->code() == 403 || api->code() == 404);
      if (!failing && lasting) {
        spdlog::warn(
            "cannot read customresourcedefinitions {} (the chart's RBAC grants get/list/watch on "
            "it): VMI ratio mode is re-probed every 10 min instead of on CRD changes; asking again "
            "every 10 min: {}",
            kVmiCrdName, EscapeForLog(e.what()));
      } else if (!failing) {
        spdlog::warn("cannot read customresourcedefinitions {}, retrying with backoff: {}",
                     kVmiCrdName, EscapeForLog(e.what()));
      }
      failing = true;
      if (!lasting) wait = backoff.Next();
    }
    if (!kube::SleepUnlessStopped(wait, stop)) return;
  }
  if (stop) return;
  if (failing)
    spdlog::info("customresourcedefinitions {} can be read now: watching it", kVmiCrdName);

  CrdChangeDetector detector;
  kube::InformerOptions opts;
  opts.path = kube::CollectionPath(kCrdVersion, "customresourcedefinitions");
  opts.field_selector = field_selector;
  kube::Informer<CrdFacts> informer(
      client_, opts, &CrdFromJson,
      kube::InformerHandlers<CrdFacts>{
          [this, &detector](const std::string&, const CrdFacts& crd) {
            if (!detector.Changed(crd)) return;
            spdlog::info(
                "the VMI CRD changed (generation {}, resourceVersion {}): re-probing "
                "where VMI ratios go",
                crd.generation, EscapeForLog(crd.resource_version));
            on_change_();
          },
          [&detector](const std::string&) { detector.Gone(); }});
  informer.Run(stop);
}

}  // namespace gm::reporter
