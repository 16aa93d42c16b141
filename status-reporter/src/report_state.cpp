#include "report_state.h"

namespace gm::reporter {

const char* StateName(ReportState s) {
  switch (s) {
    case ReportState::kReporting:
      return "reporting";
    case ReportState::kStarting:
      return "starting";
    case ReportState::kSilent:
      return "silent";
    case ReportState::kNotInjected:
      return "not_injected";
  }
  return "not_injected";
}

bool IsRunning(const VmiFacts& vmi) { return vmi.phase == "Running"; }

VmiReportState ReportStateOf(const PodFacts* pod, const std::optional<LastReport>& last,
                             const InjectionFacts& inj, const SilenceBound& bound,
                             WallClock::time_point now) {
  if (pod == nullptr) return {ReportState::kNotInjected, "no_launcher_pod"};
  // A report from an earlier pod (before a migration) says nothing about this one.
  const bool ours = last && last->pod_uid == pod->uid;
  // The sidecar's own interval where it said one: an operator may have
  // changed --sidecar-interval since this pod was injected.
  const auto interval = ours && last->interval ? *last->interval : bound.interval;
  const auto silence = interval * bound.intervals;
  // A fresh report from the pod proves a sidecar, whatever its spec shows
  // (one added by hand, or under a name the webhook no longer uses).
  if (ours && now - last->at <= silence) return {ReportState::kReporting, "report_accepted"};
  if (pod->has_sidecar) {
    if (ours)
      return {ReportState::kSilent, last->libvirt_up ? "stopped_reporting" : "libvirt_down"};
    // No creation time (never the case from a real API server): no grace.
    if (pod->created && now - *pod->created <= silence)
      return {ReportState::kStarting, "awaiting_first_report"};
    return {ReportState::kSilent, "never_reported"};
  }
  // Not injected. The owner's choices first, then the cluster's state.
  if (pod->opted_out) return {ReportState::kNotInjected, "opted_out"};
  if (inj.opted_out_namespaces.count(pod->namespace_))
    return {ReportState::kNotInjected, "namespace_opted_out"};
  if (!inj.webhook_installed) return {ReportState::kNotInjected, "injection_unknown"};
  if (!*inj.webhook_installed) return {ReportState::kNotInjected, "injection_off"};
  if (inj.webhook_created && pod->created && *pod->created < *inj.webhook_created)
    return {ReportState::kNotInjected, "pod_predates_install"};
  if (!inj.native_sidecars) return {ReportState::kNotInjected, "no_native_sidecars"};
  return {ReportState::kNotInjected, "webhook_skipped"};
}

std::vector<VmiStateRow> CurrentReportStates(
    const std::map<std::string, VmiFacts>& vmis, const std::map<std::string, PodFacts>& pods,
    const ReportStore& store, const InjectionFacts& injection, const SilenceBound& bound,
    Clock::time_point steady_now, WallClock::time_point wall_now) {
  const auto last_of = [&](const std::string& key) -> std::optional<LastReport> {
    const auto a = store.LastAccepted(key);
    if (!a) return std::nullopt;
    LastReport l{
        a->pod_uid,
        wall_now - std::chrono::duration_cast<WallClock::duration>(steady_now - a->received),
        std::nullopt, true};
    if (a->health) {
      if (a->health->interval_seconds > 0)
        l.interval = std::chrono::seconds(a->health->interval_seconds);
      l.libvirt_up = a->health->libvirt_up;
    }
    return l;
  };
  return ReportStates(vmis, pods, last_of, injection, bound, wall_now);
}

}  // namespace gm::reporter
