#include "report_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "gm/logging.h"
#include "small_file.h"

namespace gm::exporter {

using std::chrono::steady_clock;

Report BuildReport(const DomainView& d, const std::string& node, const PodRef& pod,
                   const RatioInputs& requests, std::chrono::system_clock::time_point now) {
  Report r;
  r.namespace_ = d.identity.namespace_;
  r.vmi_name = d.identity.name;
  r.pod_name = pod.name;
  r.pod_uid = pod.uid;
  r.node = node;
  r.vcpus = d.info.vcpus;
  r.memory_bytes = static_cast<double>(d.info.memory_kib) * 1024.0;
  r.load_reason = std::string(ReasonName(d.reason));
  if (d.load && d.sample_wall_time) {
    const double age =
        std::max(0.0, std::chrono::duration<double>(now - *d.sample_wall_time).count());
    r.load = ReportLoad{d.load->load1m, d.load->load5m, d.load->load15m, age};
  }
  const Ratios ratios = ComputeRatios(InputsFor(d, requests));
  // A ratio the reporter would refuse (gm::kMinRatio..kMaxRatio) would get the
  // whole report refused at every send; it is left out instead, like a ratio
  // whose inputs are missing.
  const auto sane = [](std::optional<double> v) {
    return v && *v >= kMinRatio && *v <= kMaxRatio ? v : std::nullopt;
  };
  r.cpu_allocation_ratio = sane(ratios.cpu_allocation);
  r.memory_overcommit_ratio = sane(ratios.memory_overcommit);
  r.memory_request_source = MemoryRequestSourceName(ratios.memory_source);
  return r;
}

bool ReportChanged(const Report& a, const Report& b) {
  const auto load_differs = [](const std::optional<ReportLoad>& x,
                               const std::optional<ReportLoad>& y) {
    if (x.has_value() != y.has_value()) return true;
    return x && (x->load1m != y->load1m || x->load5m != y->load5m || x->load15m != y->load15m);
  };
  // libvirt going down or up is news for the reporter's /metrics; the
  // failure count is not (it travels with the next report anyway).
  const bool up_a = !a.health || a.health->libvirt_up, up_b = !b.health || b.health->libvirt_up;
  return up_a != up_b || a.namespace_ != b.namespace_ || a.vmi_name != b.vmi_name ||
         a.pod_uid != b.pod_uid || a.vcpus != b.vcpus || a.memory_bytes != b.memory_bytes ||
         a.load_reason != b.load_reason || load_differs(a.load, b.load) ||
         a.cpu_allocation_ratio != b.cpu_allocation_ratio ||
         a.memory_overcommit_ratio != b.memory_overcommit_ratio;
}

// --- HTTPS sender -----------------------------------------------------------

HttpsReportSender::HttpsReportSender(const HttpsTarget& target)
    : HttpsReportSender(target,
                        std::make_unique<CurlTransport>(TlsTrust{target.ca_pem, target.ca_file})) {}

HttpsReportSender::HttpsReportSender(HttpsTarget target, std::unique_ptr<HttpTransport> transport)
    : target_(std::move(target)), transport_(std::move(transport)) {}

SendResult HttpsReportSender::Send(const std::string& body) {
  std::vector<std::string> headers{"Content-Type: application/json"};
  if (!target_.token_file.empty()) {
    // A projected token is about a kilobyte; a file far larger is not one.
    std::string token, why;
    const bool read = ReadSmallFile(target_.token_file, 64 << 10, token, why);
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
      token.pop_back();
    if (!read || token.empty())
      return {false, "cannot read token file " + target_.token_file, "token_unreadable"};
    // A token is one visible-ASCII word; anything else would corrupt (or
    // inject into) the request head, so it is refused, never sent.
    for (const char c : token) {
      if (c <= ' ' || c > '~')
        return {false, "token file " + target_.token_file + " holds a character a token cannot",
                "token_unreadable"};
    }
    headers.push_back("Authorization: Bearer " + token);
  }
  const HttpExchange ex = transport_->Post(target_.url, headers, body, target_.timeout);
  if (ex.status == 0) return {false, "POST " + target_.url + ": " + ex.error, "unreachable"};
  if (ex.status / 100 != 2) {
    // The reply is the peer's text: escaped, so it cannot forge log lines.
    return {
        false,
        "POST " + target_.url + ": HTTP " + std::to_string(ex.status) + ": " +
            EscapeForLog(ex.body),
        ex.status >= 100 && ex.status <= 599 ? "http_" + std::to_string(ex.status) : "unreachable"};
  }
  return {true, {}};
}

// --- loop -------------------------------------------------------------------

ReportLoop::ReportLoop(ReportLoopConfig config, ReportSender& sender, const LoadCache& cache,
                       SelfMetrics& metrics)
    : config_(std::move(config)),
      start_ms_(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count())),
      sender_(sender),
      cache_(cache),
      metrics_(metrics) {}

ReportLoop::~ReportLoop() { Stop(); }

void ReportLoop::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void ReportLoop::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReportLoop::Notify() {
  {
    std::lock_guard lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();
}

steady_clock::time_point ReportLoop::RunOnce(steady_clock::time_point now) {
  auto next = now + config_.interval;
  const auto wall = std::chrono::system_clock::now();
  std::set<std::string> seen;
  for (const auto& d : cache_.Snapshot(now)) {
    seen.insert(d.domain);
    auto& st = domains_[d.domain];
    Report report = BuildReport(d, config_.node, config_.pod, config_.requests, wall);
    report.health = ReportHealth{metrics_.libvirt_up.Value() > 0.5,
                                 static_cast<uint32_t>(std::clamp<int64_t>(
                                     config_.interval.count(), 1, kMaxReportIntervalSeconds)),
                                 0, ""};
    const bool changed = !st.last_sent || ReportChanged(*st.last_sent, report);
    const bool heartbeat_due = now >= st.last_sent_at + config_.interval;
    const bool backing_off = now < st.retry_at;
    if (backing_off) {
      next = std::min(next, st.retry_at);
      continue;
    }
    if (!changed && !heartbeat_due) {
      next = std::min(next, st.last_sent_at + config_.interval);
      continue;
    }
    // Every attempt gets the next number, so a retry is newer than anything
    // the reporter may have taken from an attempt whose answer was lost.
    Report numbered = report;
    numbered.order = ReportOrder{start_ms_, ++sequence_};
    // What failed since the last delivery: the reporter shows it per VM.
    numbered.health->failed_attempts = static_cast<uint64_t>(st.failures);
    numbered.health->last_error = st.last_error;
    const SendResult res = sender_.Send(EncodeReport(numbered));
    if (res.ok) {
      metrics_.reports_ok.Increment();
      if (st.failures > 0) {
        spdlog::info("report for {} delivered again after {} failed attempts", d.domain,
                     st.failures);
      }
      st.failures = 0;
      st.last_error.clear();
      st.last_sent = report;
      st.last_sent_at = now;
      st.backoff = std::chrono::milliseconds(0);
      next = std::min(next, now + config_.interval);
    } else {
      metrics_.reports_failed.Increment();
      st.last_error = res.error_class.empty() ? "unreachable" : res.error_class;
      st.backoff = st.backoff.count() == 0 ? config_.initial_backoff
                                           : std::min(st.backoff * 2, config_.max_backoff);
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(st.backoff * Jitter());
      st.retry_at = now + wait;
      next = std::min(next, st.retry_at);
      // Once per burst: a reporter outage must not fill the log of every sidecar.
      if (st.failures++ == 0) {
        spdlog::warn(
            "report for {} not delivered (retrying with backoff up to {} ms; logged again when it "
            "gets through): {}",
            d.domain, config_.max_backoff.count(), res.error);
      } else {
        spdlog::debug("report for {} not delivered (attempt {}, retry in {} ms): {}", d.domain,
                      st.failures, wait.count(), res.error);
      }
    }
  }
  for (auto it = domains_.begin(); it != domains_.end();) {
    it = seen.count(it->first) ? std::next(it) : domains_.erase(it);
  }
  return next;
}

double ReportLoop::Jitter() {
  if (config_.jitter) return std::clamp(config_.jitter(), 0.5, 1.0);
  static thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

void ReportLoop::Loop() {
  while (true) {
    const auto next = RunOnce(steady_clock::now());
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, next, [this] { return stop_ || notified_; });
    if (stop_) return;
    notified_ = false;
  }
}

}  // namespace gm::exporter
