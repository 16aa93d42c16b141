#pragma once
// Sleeping that a stop flag cuts short. The flags are plain atomics the
// callers already own, so waiting polls them in short slices.

#include <atomic>
#include <chrono>
#include <initializer_list>

namespace gm::kube::detail {

/// True when any of the (possibly null) flags is raised.
bool AnyStopped(std::initializer_list<const std::atomic<bool>*> flags);

/// Sleeps for `d`; returns false early (within one `slice`, 20 ms unless
/// given) when a flag is raised.
bool SleepUnlessStopped(std::chrono::steady_clock::duration d,
                        std::initializer_list<const std::atomic<bool>*> flags,
                        std::chrono::milliseconds slice = std::chrono::milliseconds(20));

}  // namespace gm::kube::detail
