#include "exposition.h"

#include <fmt/format.h>

#include <cmath>
#include <iterator>

#include "gm/build_info.h"
#include "gm/prometheus_text.h"

namespace gm::exporter {

void Histogram::Observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < kBounds.size() && v > kBounds[i]) ++i;
  if (i < kBounds.size()) ++buckets_[i];
  ++count_;
  sum_ += v;
}

Histogram::Snapshot Histogram::Read() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) s.cumulative[i] = running += buckets_[i];
  s.count = count_;
  s.sum = sum_;
  return s;
}

SelfMetrics::SelfMetrics(std::string libvirt_version)
    : libvirt_version_(std::move(libvirt_version)) {}

void SelfMetrics::CountPoll(Reason reason) {
  for (size_t i = 0; i < kPollReasons.size(); ++i) {
    if (kPollReasons[i] == reason) polls_[i].Increment();
  }
}

std::vector<std::pair<Reason, uint64_t>> SelfMetrics::Polls() const {
  std::vector<std::pair<Reason, uint64_t>> out;
  for (size_t i = 0; i < kPollReasons.size(); ++i)
    out.emplace_back(kPollReasons[i], polls_[i].Value());
  return out;
}

namespace {

using Label = std::pair<std::string_view, std::string_view>;

// The Prometheus text format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): a HELP and
// a TYPE line per family, then one line per sample. Its only rules beyond
// plain text are the two escapes below and the spellings of special floats.
class TextWriter {
 public:
  explicit TextWriter(std::string& out) : out_(out) {}

  void Family(std::string_view name, std::string_view help, std::string_view type) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    AppendHelpText(out_, help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void Sample(std::string_view name, std::initializer_list<Label> labels, double value,
              std::string_view suffix = {}) {
    out_ += name;
    out_ += suffix;
    if (labels.size() != 0) {
      char sep = '{';
      for (const auto& [key, text] : labels) {
        out_ += sep;
        out_ += key;
        out_ += "=\"";
        AppendLabelValue(out_, text);
        out_ += '"';
        sep = ',';
      }
      out_ += '}';
    }
    out_ += ' ';
    Number(value);
    out_ += '\n';
  }

  // The shortest text that reads back as the same double (fmt's "{}", no
  // locale), with Prometheus' spellings of the special values.
  void Number(double v) {
    if (std::isnan(v)) {
      out_ += "NaN";
    } else if (std::isinf(v)) {
      out_ += v > 0 ? "+Inf" : "-Inf";
    } else {
      fmt::format_to(std::back_inserter(out_), "{}", v);
    }
  }

 private:
  std::string& out_;
};

std::string NumberText(double v) {
  std::string s;
  TextWriter(s).Number(v);
  return s;
}

// The exporter's own metrics, in a fixed order.
void WriteSelf(TextWriter& w, const SelfMetrics& self) {
  w.Family("guest_exporter_libvirt_up",
           "1 when the exporter holds a working connection to libvirt, else 0.", "gauge");
  w.Sample("guest_exporter_libvirt_up", {}, self.libvirt_up.Value());
  w.Family("guest_exporter_libvirt_connects_total", "Attempts to connect to libvirt, by result.",
           "counter");
  w.Sample("guest_exporter_libvirt_connects_total", {{"result", "error"}},
           static_cast<double>(self.libvirt_connects_failed.Value()));
  w.Sample("guest_exporter_libvirt_connects_total", {{"result", "ok"}},
           static_cast<double>(self.libvirt_connects_ok.Value()));
  w.Family("guest_exporter_libvirt_calls_hung_total",
           "libvirt calls that ran past their deadline; while one hangs no further call is made "
           "and the data goes stale.",
           "counter");
  w.Sample("guest_exporter_libvirt_calls_hung_total", {},
           static_cast<double>(self.libvirt_calls_hung.Value()));

  constexpr std::string_view kPoll = "guest_exporter_poll_duration_seconds";
  w.Family(kPoll, "Time taken by one load read of one domain (libvirt and agent).", "histogram");
  const auto h = self.poll_duration.Read();
  for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    const std::string le = NumberText(Histogram::kBounds[i]);
    w.Sample(kPoll, {{"le", le}}, static_cast<double>(h.cumulative[i]), "_bucket");
  }
  w.Sample(kPoll, {{"le", "+Inf"}}, static_cast<double>(h.count), "_bucket");
  w.Sample(kPoll, {}, h.sum, "_sum");
  w.Sample(kPoll, {}, static_cast<double>(h.count), "_count");

  w.Family("guest_exporter_reports_total", "Reports pushed to the status-reporter, by result.",
           "counter");
  w.Sample("guest_exporter_reports_total", {{"result", "error"}},
           static_cast<double>(self.reports_failed.Value()));
  w.Sample("guest_exporter_reports_total", {{"result", "ok"}},
           static_cast<double>(self.reports_ok.Value()));
  w.Family("guest_exporter_build_info",
           "Build of the running guest-exporter and the libvirt library it uses; always 1.",
           "gauge");
  w.Sample(
      "guest_exporter_build_info",
      {{"libvirt_version", self.libvirt_version()}, {"revision", kRevision}, {"version", kVersion}},
      1);
  w.Family("guest_exporter_polls_total",
           "Load reads of a domain, by result (ok, or the reason there is no load).", "counter");
  for (const auto& [reason, n] : self.Polls()) {
    w.Sample("guest_exporter_polls_total", {{"result", ReasonName(reason)}},
             static_cast<double>(n));
  }
}

// The listeners' refusals: counted by the server thread, which also renders
// the page, so they are read here rather than mirrored into counters.
void WriteHttp(TextWriter& w, const std::vector<HttpListenerStats>& http) {
  if (http.empty()) return;
  // Short HELP texts: the page is served at every scrape; docs/metrics.md says the rest.
  constexpr std::string_view kRefused = "guest_exporter_http_connections_refused_total";
  constexpr std::string_view kPauses = "guest_exporter_http_accept_pauses_total";
  constexpr std::string_view kTimeouts = "guest_exporter_http_connections_timed_out_total";
  w.Family(kRefused, "Connections closed at accept: the listener's budget was full.", "counter");
  for (const auto& l : http)
    w.Sample(kRefused, {{"listener", l.listener}}, static_cast<double>(l.refused));
  w.Family(kPauses, "Accept pauses: out of file descriptors.", "counter");
  for (const auto& l : http) {
    w.Sample(kPauses, {{"listener", l.listener}}, static_cast<double>(l.accept_pauses));
  }
  w.Family(kTimeouts, "Connections closed by the request deadline or the idle timeout.", "counter");
  for (const auto& l : http) {
    w.Sample(kTimeouts, {{"listener", l.listener}, {"timeout", "request"}},
             static_cast<double>(l.request_timeouts));
    w.Sample(kTimeouts, {{"listener", l.listener}, {"timeout", "idle"}},
             static_cast<double>(l.idle_timeouts));
  }
}

}  // namespace

RatioInputs InputsFor(const DomainView& d, const RatioInputs& requests) {
  RatioInputs in = requests;
  in.guest_vcpus = d.info.vcpus;
  in.guest_memory_bytes = static_cast<double>(d.info.memory_kib) * 1024.0;
  return in;
}

std::string RenderMetrics(const std::vector<DomainView>& domains, const std::string& node,
                          std::chrono::seconds interval, const RatioInputs& requests,
                          const SelfMetrics& self, const std::vector<HttpListenerStats>& http) {
  std::string out;
  out.reserve(4096 + domains.size() * 1024);
  TextWriter w(out);
  const std::string every = "; sampled from the guest agent every " +
                            std::to_string(interval.count()) +
                            "s, absent when the agent gives no load or the sample is stale.";
  // One family at a time over all domains; a family with no sample is left out.
  const auto family = [&](std::string_view name, const std::string& help, auto value_of) {
    bool any = false;
    for (const auto& d : domains) {
      const std::optional<double> v = value_of(d);
      if (!v) continue;
      if (!any) w.Family(name, help, "gauge");
      any = true;
      w.Sample(name,
               {{"namespace", d.identity.namespace_}, {"name", d.identity.name}, {"node", node}},
               *v);
    }
  };
  using V = std::optional<double>;
  family("kubevirt_vmi_guest_load_1m",
         "Guest load average over 1 minute, in runnable threads" + every,
         [](const DomainView& d) { return d.load ? V(d.load->load1m) : std::nullopt; });
  family("kubevirt_vmi_guest_load_5m",
         "Guest load average over 5 minutes, in runnable threads" + every,
         [](const DomainView& d) { return d.load ? V(d.load->load5m) : std::nullopt; });
  family("kubevirt_vmi_guest_load_15m",
         "Guest load average over 15 minutes, in runnable threads" + every,
         [](const DomainView& d) { return d.load ? V(d.load->load15m) : std::nullopt; });
  if (!domains.empty()) {
    constexpr std::string_view kStatus = "guest_exporter_guest_load_status";
    w.Family(kStatus,
             "Why a running domain has or lacks guest load: one series per domain with the "
             "reason label set (ok, agent_disconnected, command_not_found, stale, ...); always 1.",
             "gauge");
    for (const auto& d : domains) {
      w.Sample(kStatus,
               {{"namespace", d.identity.namespace_},
                {"name", d.identity.name},
                {"node", node},
                {"reason", ReasonName(d.reason)}},
               1);
    }
  }
  family("guest_exporter_last_sample_timestamp_seconds",
         "Unix time of the last good load sample of a running domain.", [](const DomainView& d) {
           return d.sample_wall_time
                      ? V(std::chrono::duration<double>(d.sample_wall_time->time_since_epoch())
                              .count())
                      : std::nullopt;
         });
  family("guest_exporter_guest_vcpus", "Live vCPUs of the domain, from libvirt.",
         [](const DomainView& d) { return V(d.info.vcpus); });
  family("guest_exporter_guest_memory_bytes", "Live guest memory of the domain, from libvirt.",
         [](const DomainView& d) { return V(static_cast<double>(d.info.memory_kib) * 1024.0); });
  family("kubevirt_vmi_cpu_allocation_ratio",
         "Guest vCPUs divided by the compute container's CPU request in cores (see "
         "docs/ratios.md).",
         [&](const DomainView& d) { return ComputeRatios(InputsFor(d, requests)).cpu_allocation; });
  family(
      "kubevirt_vmi_memory_overcommit_ratio",
      "Guest memory divided by the memory request without virtualization overhead (see "
      "docs/ratios.md).",
      [&](const DomainView& d) { return ComputeRatios(InputsFor(d, requests)).memory_overcommit; });
  WriteSelf(w, self);
  WriteHttp(w, http);
  return out;
}

}  // namespace gm::exporter
