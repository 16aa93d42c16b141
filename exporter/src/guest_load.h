#pragma once
// Guest load average: the value type, why it may be missing, and pure parsers
// for the two reply forms libvirt can give (typed params from
// virDomainGetGuestInfo, JSON from the agent's guest-get-load command).

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gm::exporter {

/// Load average as the guest kernel reports it, in runnable threads.
struct LoadAverage {
  double load1m = 0;
  double load5m = 0;
  double load15m = 0;
};

/// Why a domain has (or has no) load sample. Shown as the `reason` label.
enum class Reason {
  kOk,                 // a fresh sample is present
  kPending,            // domain seen, not polled yet
  kNoAgent,            // the domain has no guest-agent channel
  kAgentDisconnected,  // channel configured, agent not connected (booting, not installed, stopped)
  kAgentTimeout,       // the agent did not answer in time
  kAgentBusy,          // libvirt could not get the domain's agent job (another call holds it)
  kCommandNotFound,    // the agent lacks guest-get-load (qemu-guest-agent < 10.0)
  kUnsupported,        // this libvirt driver cannot ask the agent at all
  kBadReply,           // the reply did not hold a valid load average
  kDomainNotRunning,   // the domain stopped between listing and polling
  kLibvirtError,       // any other libvirt failure
  kStale,              // last sample older than the freshness bound
};

/// Stable lower_snake_case name of a reason, for labels and logs.
std::string_view ReasonName(Reason reason);

/// A sample or the reason there is none, with human-readable detail.
struct LoadResult {
  std::optional<LoadAverage> load;
  Reason reason = Reason::kPending;
  std::string detail;

  static LoadResult Ok(LoadAverage l) { return {l, Reason::kOk, {}}; }
  static LoadResult Fail(Reason r, std::string d) { return {std::nullopt, r, std::move(d)}; }
};

/// One typed parameter copied out of libvirt's virTypedParameter array.
struct TypedParam {
  std::string field;
  std::variant<int, unsigned, long long, unsigned long long, double, bool, std::string> value;
};

/// Upper bound for a plausible load average. Linux counts runnable and
/// uninterruptible tasks, which cannot exceed PID_MAX_LIMIT (2^22).
inline constexpr double kMaxPlausibleLoad = 4194304.0;

/// Parses `load.1m`, `load.5m`, `load.15m` (doubles) from virDomainGetGuestInfo
/// with VIR_DOMAIN_GUEST_INFO_LOAD. No load keys at all means the agent gave no
/// load (libvirt omits the info when the agent lacks the command).
LoadResult ParseGuestInfoLoad(const std::vector<TypedParam>& params);

/// Parses the agent's reply to {"execute":"guest-get-load"}:
/// {"return":{"load1m":…,"load5m":…,"load15m":…}}.
LoadResult ParseAgentLoadReply(std::string_view json);

}  // namespace gm::exporter
