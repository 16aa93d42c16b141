#include "detail/stop.h"

#include <algorithm>
#include <thread>

namespace gm::kube::detail {

bool AnyStopped(std::initializer_list<const std::atomic<bool>*> flags) {
  return std::any_of(flags.begin(), flags.end(),
                     [](const std::atomic<bool>* f) { return f && f->load(); });
}

bool SleepUnlessStopped(std::chrono::steady_clock::duration d,
                        std::initializer_list<const std::atomic<bool>*> flags) {
  constexpr auto kSlice = std::chrono::milliseconds(20);
  const auto until = std::chrono::steady_clock::now() + d;
  while (!AnyStopped(flags)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, kSlice));
  }
  return false;
}

}  // namespace gm::kube::detail
