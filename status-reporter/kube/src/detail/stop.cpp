#include "detail/stop.h"

#include <algorithm>
#include <thread>

#include "gm/kube/backoff.h"

namespace gm::kube::detail {

bool AnyStopped(std::initializer_list<const std::atomic<bool>*> flags) {
  return std::any_of(flags.begin(), flags.end(),
                     [](const std::atomic<bool>* f) { return f && f->load(); });
}

bool SleepUnlessStopped(std::chrono::steady_clock::duration d,
                        std::initializer_list<const std::atomic<bool>*> flags,
                        std::chrono::milliseconds slice) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!AnyStopped(flags)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, slice));
  }
  return false;
}

}  // namespace gm::kube::detail

namespace gm::kube {

bool SleepUnlessStopped(std::chrono::steady_clock::duration d, const std::atomic<bool>& stop) {
  return detail::SleepUnlessStopped(d, {&stop}, std::chrono::milliseconds(200));
}

}  // namespace gm::kube
