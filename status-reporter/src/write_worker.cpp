#include "write_worker.h"

#include <prometheus/histogram.h>

#include <chrono>

#include "reconciler.h"

namespace gm::reporter {

bool WriteGate::Enter() {
  std::lock_guard lock(mu_);
  if (!is_leader_()) return false;
  ++in_flight_;
  return true;
}

void WriteGate::Leave() {
  {
    std::lock_guard lock(mu_);
    --in_flight_;
  }
  idle_cv_.notify_all();
}

void WriteGate::WaitIdle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
}

int WriteGate::in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}

void RunWriteWorker(KeyQueue& queue, WriteGate& gate,
                    const std::function<Outcome(const std::string& key)>& reconcile,
                    prometheus::Histogram* duration) {
  std::string key;
  while (queue.Get(key)) {
    if (!gate.Enter()) {  // only the leader writes
      queue.Forget(key);
      queue.Done(key);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const Outcome out = reconcile(key);
    if (duration != nullptr) {
      duration->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    gate.Leave();
    if (out == Outcome::kRetry)
      queue.AddRateLimited(key);
    else
      queue.Forget(key);
    queue.Done(key);
  }
}

}  // namespace gm::reporter
