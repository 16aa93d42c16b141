#pragma once
// Waiting between attempts: exponential backoff with jitter, and a sleep that a
// stop flag cuts short. The informers' reflector uses both; so do the
// reporter's own background pollers (/version, the VMI CRD, the webhook
// configuration), so that every retry loop backs off the same way.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>

namespace gm::kube {

/// Exponential backoff with jitter: each Next() waits a random time in
/// [d, 2d), then doubles d up to `max`, like client-go's backoff manager, so
/// that many replicas do not retry in step. Reset() after a success.
class Backoff {
 public:
  using Duration = std::chrono::steady_clock::duration;

  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), current_(initial), rng_(std::random_device{}()) {}

  Duration Next() {
    const double factor = std::uniform_real_distribution<double>(1.0, 2.0)(rng_);
    const auto wait = std::chrono::duration_cast<Duration>(current_ * factor);
    current_ = std::min(current_ * 2, max_);
    return wait;
  }
  void Reset() { current_ = initial_; }

 private:
  const std::chrono::milliseconds initial_, max_;
  std::chrono::milliseconds current_;
  std::mt19937 rng_;
};

/// Sleeps for `d`; returns false early, within 200 ms, once `stop` is raised.
/// For background pollers that wait minutes: coarse slices keep them from
/// waking the process 50 times a second.
bool SleepUnlessStopped(std::chrono::steady_clock::duration d, const std::atomic<bool>& stop);

}  // namespace gm::kube
