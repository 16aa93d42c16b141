#include "gm/kube/workqueue.h"

#include <algorithm>
#include <cmath>

namespace gm::kube {

RateLimiter::RateLimiter(RateLimiterOptions options)
    : options_(options), bucket_(options.qps, options.burst) {}

RateLimiter::Clock::duration RateLimiter::When(const std::string& key, Clock::time_point now) {
  int failures;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failures = failures_[key]++;
  }
  // In double seconds first: base * 2^failures overflows any integer duration quickly.
  const double base = std::chrono::duration<double>(options_.base_delay).count();
  const double max = std::chrono::duration<double>(options_.max_delay).count();
  const double backoff = base > 0 ? std::min(base * std::pow(2.0, failures), max) : 0.0;
  const auto item_delay =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(backoff));
  return std::max(item_delay, bucket_.Reserve(now));
}

void RateLimiter::Forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.erase(key);
}

int RateLimiter::NumRequeues(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

WorkQueue::WorkQueue(RateLimiterOptions options) : limiter_(options) {}

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_ || !dirty_.insert(key).second) return;
  if (processing_.count(key)) return;  // Done() queues it again
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::PromoteDueLocked(Clock::time_point now) {
  while (!waiting_.empty() && waiting_.begin()->first <= now) {
    const std::string key = waiting_.begin()->second;
    waiting_.erase(waiting_.begin());
    due_.erase(key);
    AddLocked(key);
  }
}

void WorkQueue::Add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, Clock::duration delay) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  if (delay <= Clock::duration::zero()) {
    AddLocked(key);
    return;
  }
  const auto at = Clock::now() + delay;
  auto pending = due_.find(key);
  if (pending != due_.end()) {
    if (pending->second <= at) return;
    waiting_.erase({pending->second, key});
  }
  due_[key] = at;
  waiting_.emplace(at, key);
  cv_.notify_all();  // a waiting Get may have to wake up earlier now
}

void WorkQueue::AddRateLimited(const std::string& key) { AddAfter(key, limiter_.When(key)); }

void WorkQueue::Forget(const std::string& key) { limiter_.Forget(key); }

int WorkQueue::NumRequeues(const std::string& key) const { return limiter_.NumRequeues(key); }

bool WorkQueue::Get(std::string& key) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    PromoteDueLocked(Clock::now());
    if (!queue_.empty()) break;
    if (shutting_down_) return false;
    if (waiting_.empty()) {
      cv_.wait(lock);
    } else {
      // A copy: wait_until reads its deadline again after waking, and while
      // it waits (unlocked) another thread may erase that entry.
      const Clock::time_point next_due = waiting_.begin()->first;
      cv_.wait_until(lock, next_due);
    }
  }
  key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  return true;
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  processing_.erase(key);
  if (dirty_.count(key)) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  waiting_.clear();
  due_.clear();
  cv_.notify_all();
}

bool WorkQueue::ShuttingDown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutting_down_;
}

std::size_t WorkQueue::Len() {
  std::lock_guard<std::mutex> lock(mu_);
  PromoteDueLocked(Clock::now());
  return queue_.size();
}

}  // namespace gm::kube
