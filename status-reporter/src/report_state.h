#pragma once
// Whether each running VMI is measured: its report state, derived from the
// informers' facts and the time of its last accepted report. Pure: the
// caller passes the facts and the clock. A sidecar that cannot reach the
// reporter (bridge binding or Multus on the pod network, an egress
// NetworkPolicy) cannot say so itself; the reporter says it here, per VMI.

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "facts.h"
#include "report_store.h"

namespace gm::reporter {

using WallClock = std::chrono::system_clock;

/// Exactly one per running VMI.
enum class ReportState {
  kReporting,    // its active pod's sidecar had a report accepted within the silence bound
  kStarting,     // injected, no report yet, the pod younger than the silence bound
  kSilent,       // injected, no accepted report for longer than the silence bound
  kNotInjected,  // its active pod has no guest-exporter sidecar (reason says why)
};
const char* StateName(ReportState s);

/// The `reason` label of each state. For kReporting and kStarting one each;
/// kSilent: never_reported (this pod never got a report through),
/// stopped_reporting, libvirt_down; kNotInjected: the reasons below, in the order tried.
inline constexpr std::array<std::pair<ReportState, const char*>, 13> kReportStateReasons{{
    {ReportState::kReporting, "report_accepted"},
    {ReportState::kStarting, "awaiting_first_report"},
    {ReportState::kSilent, "never_reported"},
    {ReportState::kSilent, "stopped_reporting"},
    {ReportState::kSilent, "libvirt_down"},               // its last report said libvirt was down
    {ReportState::kNotInjected, "no_launcher_pod"},       // no active launcher pod in the cache
    {ReportState::kNotInjected, "opted_out"},             // pod label inject=false
    {ReportState::kNotInjected, "namespace_opted_out"},   // namespace label inject=false
    {ReportState::kNotInjected, "injection_off"},         // no webhook configuration installed
    {ReportState::kNotInjected, "pod_predates_install"},  // pod created before the webhook
    {ReportState::kNotInjected, "no_native_sidecars"},    // the API server has none
    {ReportState::kNotInjected, "injection_unknown"},     // the webhook's state is not read yet
    {ReportState::kNotInjected, "webhook_skipped"},  // failed open, timed out, or left it unchanged
}};

struct VmiReportState {
  ReportState state = ReportState::kNotInjected;
  const char* reason = "";
};

/// The last accepted report of a VMI.
struct LastReport {
  std::string pod_uid;
  WallClock::time_point at;
  std::optional<std::chrono::seconds> interval;  // as the sidecar said (health.intervalSeconds)
  bool libvirt_up = true;                        // as the sidecar said (health.libvirtUp)
};

/// What the reporter knows about injection, cluster-wide.
struct InjectionFacts {
  /// The MutatingWebhookConfiguration: nullopt until read; false when it is
  /// not installed (webhook.enabled=false); with its creationTimestamp.
  std::optional<bool> webhook_installed;
  std::optional<WallClock::time_point> webhook_created;
  /// false while the reporter believes the API server has no native sidecars.
  bool native_sidecars = true;
  std::set<std::string> opted_out_namespaces;  // labelled guestmetrics.kubevirt.io/inject=false
};

struct SilenceBound {
  std::chrono::seconds interval{120};  // the sidecars' report interval (--sidecar-interval)
  int intervals = 3;                   // silent after this many intervals without a report
};

/// The state of a running VMI. `active_pod`: its current active launcher pod
/// (IsActivePod), null when none is cached. `last`: its last accepted report,
/// counted only when it came from that pod.
VmiReportState ReportStateOf(const PodFacts* active_pod, const std::optional<LastReport>& last,
                             const InjectionFacts& injection, const SilenceBound& bound,
                             WallClock::time_point now);

/// True for VMIs the report states cover: status.phase Running.
bool IsRunning(const VmiFacts& vmi);

/// One VMI's row on /metrics.
struct VmiStateRow {
  std::string namespace_;
  std::string name;
  std::string node;
  VmiReportState state;
};

/// The rows for every running VMI. `vmis`, `pods`: (key, facts) pairs, an
/// informer's store or a copy of one; pods are matched to their VMI by
/// IsActivePod. `last_of` gives a VMI key's last accepted report.
template <typename Vmis, typename Pods, typename LastOf>
std::vector<VmiStateRow> ReportStates(const Vmis& vmis, const Pods& pods, LastOf last_of,
                                      const InjectionFacts& injection, const SilenceBound& bound,
                                      WallClock::time_point now) {
  std::multimap<std::string, const PodFacts*> by_vmi;
  for (const auto& [_, p] : pods) by_vmi.emplace(Key(p.namespace_, p.vmi_name), &p);
  std::vector<VmiStateRow> rows;
  rows.reserve(vmis.size());
  for (const auto& [_, v] : vmis) {
    if (!IsRunning(v)) continue;
    const std::string key = Key(v.namespace_, v.name);
    const PodFacts* active = nullptr;
    for (auto [it, end] = by_vmi.equal_range(key); it != end; ++it) {
      if (IsActivePod(v, *it->second)) active = it->second;
    }
    rows.push_back({v.namespace_, v.name, active ? active->node : v.node_name,
                    ReportStateOf(active, last_of(key), injection, bound, now)});
  }
  return rows;
}

/// ReportStates with the last accepted reports of `store`, whose steady-clock
/// times are read against `steady_now` / `wall_now`.
std::vector<VmiStateRow> CurrentReportStates(
    const std::map<std::string, VmiFacts>& vmis, const std::map<std::string, PodFacts>& pods,
    const ReportStore& store, const InjectionFacts& injection, const SilenceBound& bound,
    Clock::time_point steady_now, WallClock::time_point wall_now);

}  // namespace gm::reporter
