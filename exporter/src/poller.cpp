#include "poller.h"

#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "gm/errno_text.h"
#include "libvirt_hypervisor.h"

namespace gm::exporter {

using std::chrono::steady_clock;

namespace {
void IgnoreLibvirtError(void*, virErrorPtr) {}  // errors are read per call, not printed
void NoopTimer(int, void*) {}
}  // namespace

Poller::Poller(PollerConfig config, LoadCache& cache, SelfMetrics& metrics)
    : config_(std::move(config)), cache_(cache), metrics_(metrics) {
  hang_timer_fd_.Reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!hang_timer_fd_)
    throw std::runtime_error(std::string("timerfd_create: ") + gm::ErrnoText(errno));
}

Poller::~Poller() { Stop(); }

void Poller::CallBegins() {
  call_started_ns_ = steady_clock::now().time_since_epoch().count();
  itimerspec t{};
  t.it_value.tv_sec = static_cast<time_t>(config_.call_deadline.count());
  timerfd_settime(hang_timer_fd_.get(), 0, &t, nullptr);
}

void Poller::CallEnds() {
  call_started_ns_ = 0;
  const itimerspec off{};
  timerfd_settime(hang_timer_fd_.get(), 0, &off, nullptr);  // also clears an expiry not yet read
}

void Poller::OnHangTimer() {
  uint64_t expirations = 0;
  [[maybe_unused]] const auto n = ::read(hang_timer_fd_.get(), &expirations, sizeof expirations);
  CheckHung(config_.call_deadline);
}

void Poller::Start() {
  virSetErrorFunc(nullptr, IgnoreLibvirtError);
  // The default event loop must exist before any connection is opened, or
  // keepalive and domain events never run.
  if (virEventRegisterDefaultImpl() != 0)
    throw std::runtime_error("cannot start libvirt's event loop");
  // A disabled timer that Stop() fires, so virEventRunDefaultImpl() returns and
  // the thread sees stop_. No periodic wake-up: the sidecar idles for real.
  wake_timer_ = virEventAddTimeout(-1, NoopTimer, nullptr, nullptr);
  event_thread_ = std::thread([this] { EventLoop(); });
  poll_thread_ = std::thread([this] { PollLoop(); });
}

void Poller::Stop() {
  if (stop_.exchange(true)) return;
  cv_.notify_all();
  if (wake_timer_ >= 0) virEventUpdateTimeout(wake_timer_, 0);
  if (poll_thread_.joinable()) poll_thread_.join();
  if (event_thread_.joinable()) event_thread_.join();
}

void Poller::EventLoop() {
  while (!stop_) {
    if (virEventRunDefaultImpl() < 0) {
      spdlog::error("libvirt event loop failed: {}", LastLibvirtError().message);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void Poller::WaitFor(steady_clock::duration d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_ || connection_lost_ || !due_.empty(); });
}

void Poller::MarkDue(const std::string& domain) {
  {
    std::lock_guard lock(mu_);
    due_.insert(domain);
  }
  cv_.notify_all();
}

void Poller::WaitBeforeReconnect(steady_clock::duration d) {
  // Only Stop() ends this wait early. The connection-lost flag must not: it
  // stays set until a connect succeeds, and waking on it turned the backoff
  // into a busy loop (over 20,000 connects a second with libvirt gone).
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

steady_clock::duration Poller::Jittered(steady_clock::duration backoff) {
  // "Equal jitter": between half and all of the backoff, so that the sidecars
  // of every VM on a node do not reconnect in step after a restart of it.
  std::uniform_real_distribution<double> half_to_one(0.5, 1.0);
  return std::chrono::duration_cast<steady_clock::duration>(backoff * half_to_one(rng_));
}

void Poller::PollLoop() {
  const auto initial = std::chrono::duration_cast<steady_clock::duration>(config_.initial_backoff);
  const auto max_backoff = std::chrono::duration_cast<steady_clock::duration>(config_.max_backoff);
  auto backoff = std::min(initial, max_backoff);
  bool wait_first = false;  // false only for the very first connect
  while (!stop_) {
    if (conn_ == nullptr) {
      if (wait_first) {
        WaitBeforeReconnect(Jittered(backoff));
        backoff = std::min(backoff * 2, max_backoff);
        if (stop_) break;
      }
      wait_first = true;
      if (!Connect()) {
        metrics_.libvirt_connects_failed.Increment();
        continue;
      }
      metrics_.libvirt_connects_ok.Increment();
    }
    bool lost;
    {
      std::lock_guard lock(mu_);
      lost = connection_lost_;
    }
    if (lost) {
      spdlog::warn("libvirt connection to {} lost; reconnecting with backoff up to {} s",
                   config_.uri, config_.max_backoff.count());
      Disconnect();
      continue;
    }
    PollOnce();
    if (config_.on_change) config_.on_change();
    if (conn_ == nullptr) continue;  // the poll found the connection broken
    // Only a connection that served a poll resets the backoff: a daemon that
    // accepts and then drops every connection still gets the capped backoff.
    backoff = std::min(initial, max_backoff);
    auto next = steady_clock::now() + config_.interval;
    for (const auto& [name, at] : next_read_) next = std::min(next, at);
    WaitFor(next - steady_clock::now());
  }
  Disconnect();
}

bool Poller::Connect() {
  CallBegins();
  virConnectPtr conn = virConnectOpen(config_.uri.c_str());
  CallEnds();
  const auto now = steady_clock::now();
  if (conn == nullptr) {
    // One warning per burst of failures, a reminder every few minutes while
    // it lasts, and a summary at the next success; each attempt at debug.
    const std::string error = LastLibvirtError().message;
    if (failed_attempts_++ == 0) {
      first_failure_ = last_failure_log_ = now;
      spdlog::warn("cannot connect to libvirt at {}: {}; retrying with backoff up to {} s",
                   config_.uri, error, config_.max_backoff.count());
    } else if (now - last_failure_log_ >= kFailureReminder) {
      last_failure_log_ = now;
      spdlog::warn("still cannot connect to libvirt at {} after {} failed attempts in {} s: {}",
                   config_.uri, failed_attempts_,
                   std::chrono::duration_cast<std::chrono::seconds>(now - first_failure_).count(),
                   error);
    } else {
      spdlog::debug("cannot connect to libvirt at {}: {}", config_.uri, error);
    }
    return false;
  }
  if (virConnectSetKeepAlive(conn, config_.keepalive_interval_seconds, config_.keepalive_count) <
      0) {
    // Local drivers (test, embed) have no keepalive; that is fine.
    spdlog::debug("keepalive not available on {}: {}", config_.uri, LastLibvirtError().message);
  }
  virConnectRegisterCloseCallback(conn, OnClose, this, nullptr);
  lifecycle_cb_ =
      virConnectDomainEventRegisterAny(conn, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                       VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle), this, nullptr);
  agent_cb_ =
      virConnectDomainEventRegisterAny(conn, nullptr, VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                                       VIR_DOMAIN_EVENT_CALLBACK(OnAgentLifecycle), this, nullptr);
  if (lifecycle_cb_ < 0 || agent_cb_ < 0) {
    spdlog::warn("domain events unavailable on {} ({}); changes are seen at the next poll",
                 config_.uri, LastLibvirtError().message);
  }
  {
    std::lock_guard lock(mu_);
    connection_lost_ = false;
  }
  conn_ = conn;
  hv_ = std::make_unique<LibvirtHypervisor>(conn, [this](bool entering) {
    if (entering) {
      CallBegins();
    } else {
      CallEnds();
    }
  });
  // A reconnect may reach an upgraded libvirt: ask for LOAD again.
  method_ = LoadMethod::kGuestInfo;
  next_read_.clear();
  metrics_.libvirt_up.Set(1);
  if (failed_attempts_ > 0) {
    spdlog::info("connected to libvirt at {} after {} failed attempts in {} s", config_.uri,
                 failed_attempts_,
                 std::chrono::duration_cast<std::chrono::seconds>(now - first_failure_).count());
  } else {
    spdlog::info("connected to libvirt at {}", config_.uri);
  }
  failed_attempts_ = 0;
  return true;
}

void Poller::Disconnect() {
  if (conn_ == nullptr) return;
  metrics_.libvirt_up.Set(0);
  if (lifecycle_cb_ >= 0) virConnectDomainEventDeregisterAny(conn_, lifecycle_cb_);
  if (agent_cb_ >= 0) virConnectDomainEventDeregisterAny(conn_, agent_cb_);
  virConnectUnregisterCloseCallback(conn_, OnClose);
  lifecycle_cb_ = agent_cb_ = -1;
  hv_.reset();
  virConnectClose(conn_);
  conn_ = nullptr;
  std::lock_guard lock(mu_);
  connection_lost_ = false;  // this connection's loss is handled; the next one reports its own
}

void Poller::PollOnce() {
  auto domains = hv_->RunningDomains();
  if (!domains.ok) {
    spdlog::warn("cannot list domains: {}", domains.error.message);
    Disconnect();
    return;
  }
  const auto now = steady_clock::now();
  std::set<std::string> running;
  for (const auto& d : domains.value) {
    running.insert(d.name);
    cache_.Observe(d, ResolveIdentity(d.name, config_.identity), now);
  }
  cache_.RetainOnly(running);
  for (auto it = next_read_.begin(); it != next_read_.end();) {
    it = running.count(it->first) ? std::next(it) : next_read_.erase(it);
  }
  std::set<std::string> due;
  {
    std::lock_guard lock(mu_);
    due.swap(due_);
  }
  for (const auto& d : domains.value) {
    if (stop_) return;
    const auto next = next_read_.find(d.name);
    if (next != next_read_.end() && next->second > now && !due.count(d.name)) continue;
    const auto started = steady_clock::now();
    const auto result = ReadLoad(*hv_, d.name, method_, config_.agent_timeout_seconds);
    const auto finished = steady_clock::now();
    metrics_.poll_duration.Observe(std::chrono::duration<double>(finished - started).count());
    metrics_.CountPoll(result.reason);
    cache_.Record(d.name, result, finished, std::chrono::system_clock::now());
    next_read_[d.name] = finished + config_.interval;
    if (result.reason == Reason::kOk) {
      spdlog::debug("{}: load {:.2f} {:.2f} {:.2f}", d.name, result.load->load1m,
                    result.load->load5m, result.load->load15m);
    } else {
      spdlog::debug("{}: no load ({}): {}", d.name, ReasonName(result.reason), result.detail);
    }
  }
}

void Poller::CheckHung(steady_clock::duration deadline) {
  const int64_t started = call_started_ns_;
  if (started == 0 || hung_counted_for_ns_ == started) return;
  if (steady_clock::now().time_since_epoch().count() - started < deadline.count()) return;
  hung_counted_for_ns_ = started;
  metrics_.libvirt_calls_hung.Increment();
  spdlog::warn("a libvirt call has run longer than {} s; no further call is made until it returns",
               std::chrono::duration_cast<std::chrono::seconds>(deadline).count());
}

void Poller::OnClose(virConnectPtr, int reason, void* opaque) {
  auto* self = static_cast<Poller*>(opaque);
  spdlog::warn("libvirt closed the connection (reason {})", reason);
  {
    std::lock_guard lock(self->mu_);
    self->connection_lost_ = true;
  }
  self->cv_.notify_all();
}

int Poller::OnLifecycle(virConnectPtr, virDomainPtr dom, int event, int, void* opaque) {
  auto* self = static_cast<Poller*>(opaque);
  const std::string name = virDomainGetName(dom);
  switch (event) {
    case VIR_DOMAIN_EVENT_STOPPED:
    case VIR_DOMAIN_EVENT_UNDEFINED:
    case VIR_DOMAIN_EVENT_CRASHED:
      spdlog::info("domain {} stopped", name);
      self->cache_.Remove(name);
      if (self->config_.on_change) self->config_.on_change();
      break;
    case VIR_DOMAIN_EVENT_STARTED:
    case VIR_DOMAIN_EVENT_RESUMED:
      spdlog::info("domain {} started", name);
      self->MarkDue(name);
      break;
    default:
      break;
  }
  return 0;
}

void Poller::OnAgentLifecycle(virConnectPtr, virDomainPtr dom, int state, int, void* opaque) {
  auto* self = static_cast<Poller*>(opaque);
  const std::string name = virDomainGetName(dom);
  if (state == VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED) {
    spdlog::info("guest agent of {} connected", name);
    self->MarkDue(name);
  } else {
    spdlog::info("guest agent of {} disconnected", name);
    self->cache_.Record(name, LoadResult::Fail(Reason::kAgentDisconnected, "agent disconnected"),
                        steady_clock::now(), std::chrono::system_clock::now());
  }
}

}  // namespace gm::exporter
