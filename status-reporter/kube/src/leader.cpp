#include "gm/kube/leader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "detail/stop.h"
#include "gm/kube/microtime.h"
#include "gm/kube/paths.h"

namespace gm::kube {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kLeaseApi = "coordination.k8s.io/v1";

const LeaderElectionConfig& Validated(const LeaderElectionConfig& c) {
  if (c.lease_namespace.empty() || c.lease_name.empty() || c.identity.empty()) {
    throw std::invalid_argument(
        "leader election: the lease namespace, lease name and identity are required");
  }
  if (c.retry_period <= milliseconds::zero() || c.renew_deadline <= c.retry_period ||
      c.lease_duration <= c.renew_deadline || c.lease_duration < std::chrono::seconds(1)) {
    throw std::invalid_argument(
        "leader election: need lease duration (at least 1 s) > renew deadline > retry period > 0");
  }
  return c;
}

std::string StringOrEmpty(const nlohmann::json& spec, const char* field) {
  const auto it = spec.find(field);
  if (it == spec.end() || it->is_null()) return "";
  if (!it->is_string())
    throw std::invalid_argument(std::string("Lease spec.") + field + " is not a string");
  return it->get<std::string>();
}

int IntOrZero(const nlohmann::json& spec, const char* field) {
  const auto it = spec.find(field);
  if (it == spec.end() || it->is_null()) return 0;
  if (!it->is_number_integer())
    throw std::invalid_argument(std::string("Lease spec.") + field + " is not an integer");
  return it->get<int>();
}

void WriteRecord(nlohmann::json& lease, const LeaseRecord& r) {
  nlohmann::json& spec = lease["spec"];
  if (!spec.is_object()) spec = nlohmann::json::object();
  spec["holderIdentity"] = r.holder_identity;
  spec["leaseDurationSeconds"] = r.lease_duration_seconds;
  spec["acquireTime"] = r.acquire_time;
  spec["renewTime"] = r.renew_time;
  spec["leaseTransitions"] = r.lease_transitions;
}

}  // namespace

LeaseRecord LeaseRecordFromSpec(const nlohmann::json& spec) {
  LeaseRecord r;
  if (spec.is_null()) return r;
  if (!spec.is_object()) throw std::invalid_argument("Lease spec is not an object");
  r.holder_identity = StringOrEmpty(spec, "holderIdentity");
  r.lease_duration_seconds = IntOrZero(spec, "leaseDurationSeconds");
  r.acquire_time = StringOrEmpty(spec, "acquireTime");
  r.renew_time = StringOrEmpty(spec, "renewTime");
  r.lease_transitions = IntOrZero(spec, "leaseTransitions");
  return r;
}

LeaderElector::LeaderElector(Client& client, const LeaderElectionConfig& config)
    : client_(client),
      config_(Validated(config)),
      path_(ObjectPath(kLeaseApi, "leases", config_.lease_namespace, config_.lease_name)) {}

std::string LeaderElector::Leader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return observed_.holder_identity;
}

bool LeaderElector::ObservedHolderIsMe() const {
  std::lock_guard<std::mutex> lock(mu_);
  return observed_.holder_identity == config_.identity;
}

bool LeaderElector::ObservedLeaseValid(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  return observed_at_ + std::chrono::seconds(observed_.lease_duration_seconds) > now;
}

void LeaderElector::Observe(const nlohmann::json& lease, const LeaseRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  lease_ = lease;
  observed_ = record;
  observed_spec_ = lease.value("spec", nlohmann::json());
  observed_at_ = Clock::now();
}

nlohmann::json LeaderElector::Get(milliseconds timeout, const std::atomic<bool>* stop) {
  RequestSpec spec;
  spec.path = path_;
  spec.timeout = timeout;
  spec.retry = false;  // as for Put
  spec.stop = stop;
  return nlohmann::json::parse(client_.Request(spec).body);
}

nlohmann::json LeaderElector::Put(const LeaseRecord& record, milliseconds timeout,
                                  const std::atomic<bool>* stop) {
  nlohmann::json lease;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease = lease_;  // keeps metadata.resourceVersion: a concurrent writer makes this a 409
  }
  WriteRecord(lease, record);
  RequestSpec spec;
  spec.verb = "PUT";
  spec.path = path_;
  spec.body = lease.dump();
  spec.timeout = timeout;
  spec.retry = false;  // the election loop is the retry, bounded by its deadline
  spec.stop = stop;
  return nlohmann::json::parse(client_.Request(spec).body);
}

LeaderElector::Attempt LeaderElector::TryAcquireOrRenew(Clock::time_point deadline,
                                                        const std::atomic<bool>* stop) {
  const auto now = Clock::now();
  const auto timeout =
      std::min(client_.config().timeout, std::chrono::duration_cast<milliseconds>(deadline - now));
  if (timeout <= milliseconds::zero()) return Attempt::kFailed;
  const std::string now_text = FormatMicroTime(std::chrono::system_clock::now());
  LeaseRecord desired;
  desired.holder_identity = config_.identity;
  desired.lease_duration_seconds = static_cast<int>(
      std::chrono::duration_cast<std::chrono::seconds>(config_.lease_duration).count());
  desired.acquire_time = desired.renew_time = now_text;

  try {
    // Fast path: the leader renews on top of the Lease it last wrote.
    if (ObservedHolderIsMe() && ObservedLeaseValid(now)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        desired.acquire_time = observed_.acquire_time;
        desired.lease_transitions = observed_.lease_transitions;
      }
      try {
        Observe(Put(desired, timeout, stop), desired);
        return Attempt::kHeld;
      } catch (const Cancelled&) {
        throw;
      } catch (const ApiError& e) {
        spdlog::debug("kube leader election: renewing {} failed ({}); reading it again", path_,
                      e.what());
      }
    }

    nlohmann::json lease;
    try {
      lease = Get(timeout, stop);
    } catch (const NotFound&) {
      nlohmann::json fresh = {
          {"apiVersion", kLeaseApi},
          {"kind", "Lease"},
          {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}}};
      WriteRecord(fresh, desired);
      RequestSpec create;
      create.verb = "POST";
      create.path = CollectionPath(kLeaseApi, "leases", config_.lease_namespace);
      create.body = fresh.dump();
      create.timeout = timeout;
      create.stop = stop;
      Observe(nlohmann::json::parse(client_.Request(create).body), desired);
      return Attempt::kHeld;
    }

    const nlohmann::json spec = lease.value("spec", nlohmann::json());
    const LeaseRecord current = LeaseRecordFromSpec(spec);
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease_ = lease;
      // Expiry runs from when *we* saw the record change, not from its renewTime.
      if (spec != observed_spec_) {
        observed_ = current;
        observed_spec_ = spec;
        observed_at_ = now;
      }
    }
    const bool mine = current.holder_identity == config_.identity;
    if (!current.holder_identity.empty() && !mine && ObservedLeaseValid(now))
      return Attempt::kHeldByOther;
    if (mine) {
      desired.acquire_time = current.acquire_time;
      desired.lease_transitions = current.lease_transitions;
    } else {
      desired.lease_transitions = current.lease_transitions + 1;
    }
    Observe(Put(desired, timeout, stop), desired);
    return Attempt::kHeld;
  } catch (const Cancelled&) {
    return Attempt::kFailed;
  } catch (const Conflict& e) {
    spdlog::debug("kube leader election: lost a race for {}: {}", path_, e.what());
  } catch (const std::exception& e) {  // API errors, and a malformed Lease or answer
    spdlog::warn("kube leader election: {}: {}", path_, e.what());
  }
  return Attempt::kFailed;
}

bool LeaderElector::Acquire(const std::atomic<bool>& stop) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(1.0, 2.2);  // client-go's JitterFactor 1.2
  spdlog::info("kube leader election: {} campaigning for {}", config_.identity, path_);
  while (!stop) {
    if (TryAcquireOrRenew(Clock::now() + config_.renew_deadline, &stop) == Attempt::kHeld)
      return true;
    const auto pause =
        std::chrono::duration_cast<Clock::duration>(config_.retry_period * jitter(rng));
    if (!detail::SleepUnlessStopped(pause, {&stop})) break;
  }
  return false;
}

void LeaderElector::RenewUntilLost(const std::atomic<bool>& stop) {
  while (!stop) {
    const auto deadline = Clock::now() + config_.renew_deadline;
    Attempt attempt = Attempt::kFailed;
    while (!stop && Clock::now() < deadline) {
      attempt = TryAcquireOrRenew(deadline, &stop);
      if (attempt != Attempt::kFailed) break;
      detail::SleepUnlessStopped(
          std::min<Clock::duration>(config_.retry_period, deadline - Clock::now()), {&stop});
    }
    if (stop) return;
    if (attempt == Attempt::kHeldByOther) {
      spdlog::warn("kube leader election: {} now holds {}; stepping down", Leader(), path_);
      return;
    }
    if (attempt == Attempt::kFailed) {
      spdlog::warn("kube leader election: could not renew {} within {} ms; stepping down", path_,
                   config_.renew_deadline.count());
      return;
    }
    detail::SleepUnlessStopped(config_.retry_period, {&stop});
  }
}

void LeaderElector::Release() {
  LeaseRecord record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (observed_.holder_identity != config_.identity) return;
    record.lease_transitions = observed_.lease_transitions;
  }
  // As client-go's ReleaseOnCancel: no holder and a 1 s duration, so a
  // standby takes the Lease at its next try.
  record.lease_duration_seconds = 1;
  record.acquire_time = record.renew_time = FormatMicroTime(std::chrono::system_clock::now());
  const auto deadline = Clock::now() + client_.config().timeout;
  const auto time_left = [&] {
    return std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  };
  try {
    try {
      Observe(Put(record, time_left(), nullptr), record);
    } catch (const Conflict&) {
      // The stop can cut off a renewal the server committed, leaving us an
      // old resourceVersion: read the Lease again and release it if still ours.
      const nlohmann::json lease = Get(time_left(), nullptr);
      if (LeaseRecordFromSpec(lease.value("spec", nlohmann::json())).holder_identity !=
          config_.identity)
        return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        lease_ = lease;
      }
      Observe(Put(record, time_left(), nullptr), record);
    }
    spdlog::info("kube leader election: {} released {}", config_.identity, path_);
  } catch (const std::exception& e) {
    spdlog::warn("kube leader election: releasing {} failed: {}", path_, e.what());
  }
}

void LeaderElector::Run(const std::atomic<bool>& stop) {
  while (!stop) {
    if (!Acquire(stop)) break;
    spdlog::info("kube leader election: {} is the leader ({})", config_.identity, path_);
    leading_ = true;
    if (config_.on_started_leading) config_.on_started_leading();
    RenewUntilLost(stop);
    // The work stops before the Lease is handed back, so two leaders never overlap.
    leading_ = false;
    if (config_.on_stopped_leading) config_.on_stopped_leading();
    if (stop && config_.release_on_stop) Release();
  }
}

}  // namespace gm::kube
