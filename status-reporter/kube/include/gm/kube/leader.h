#pragma once
// Leader election on a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection package does it: a candidate takes the Lease when it is
// absent, released (no holder) or expired, where "expired" is judged by the
// candidate's own clock from the moment it last saw the record change, so
// the hosts' clocks need not agree.

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "gm/kube/client.h"

namespace gm::kube {

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;
  std::string identity;  ///< unique per candidate, e.g. the pod name
  /// How long the others wait, after the Lease last changed, before taking it.
  std::chrono::milliseconds lease_duration{15000};
  /// How long the leader keeps trying to renew before it stops leading.
  std::chrono::milliseconds renew_deadline{10000};
  /// Pause between attempts to acquire or renew.
  std::chrono::milliseconds retry_period{2000};
  /// On a graceful stop, hand the Lease back (no holder) so a standby takes
  /// over at its next try instead of after lease_duration.
  bool release_on_stop = true;
  /// Called on the elector's thread. on_started_leading should start the
  /// work and return; on_stopped_leading must stop it before it returns.
  std::function<void()> on_started_leading;
  std::function<void()> on_stopped_leading;
};

/// The Lease fields the election uses (LeaderElectionRecord).
struct LeaseRecord {
  std::string holder_identity;
  int lease_duration_seconds = 0;
  std::string acquire_time;  ///< MicroTime, passed through
  std::string renew_time;
  int lease_transitions = 0;
};

/// The record in a Lease's spec. Missing fields take their zero values;
/// fields of the wrong type throw std::invalid_argument.
LeaseRecord LeaseRecordFromSpec(const nlohmann::json& spec);

class LeaderElector {
 public:
  /// Throws std::invalid_argument unless names and identity are set and
  /// lease_duration > renew_deadline > retry_period > 0, with a lease
  /// duration of at least 1 s (the Lease stores whole seconds).
  LeaderElector(Client& client, const LeaderElectionConfig& config);

  /// Campaigns, leads while the Lease can be renewed, and campaigns again
  /// after losing it, until `stop` is raised. Then, if leading, it calls
  /// on_stopped_leading and releases the Lease before returning.
  void Run(const std::atomic<bool>& stop);

  /// True between on_started_leading and on_stopped_leading.
  bool IsLeader() const { return leading_; }
  /// The holder last seen in the Lease ("" when none).
  std::string Leader() const;

 private:
  enum class Attempt { kHeld, kHeldByOther, kFailed };

  bool Acquire(const std::atomic<bool>& stop);
  void RenewUntilLost(const std::atomic<bool>& stop);
  Attempt TryAcquireOrRenew(std::chrono::steady_clock::time_point deadline,
                            const std::atomic<bool>* stop);
  nlohmann::json Get(std::chrono::milliseconds timeout, const std::atomic<bool>* stop);
  nlohmann::json Put(const LeaseRecord& record, std::chrono::milliseconds timeout,
                     const std::atomic<bool>* stop);
  void Observe(const nlohmann::json& lease, const LeaseRecord& record);
  bool ObservedHolderIsMe() const;
  bool ObservedLeaseValid(std::chrono::steady_clock::time_point now) const;
  void Release();

  Client& client_;
  const LeaderElectionConfig config_;
  const std::string path_;
  std::atomic<bool> leading_{false};

  mutable std::mutex mu_;
  nlohmann::json lease_;          // the Lease as last read or written: the base of the next PUT
  LeaseRecord observed_;          // its record ...
  nlohmann::json observed_spec_;  // ... as sent by the server, to notice changes
  std::chrono::steady_clock::time_point
      observed_at_{};  // when the record last changed, by our clock
};

}  // namespace gm::kube
