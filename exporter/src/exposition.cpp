#include "exposition.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "gm/build_info.h"

namespace gm::exporter {

namespace {

prometheus::Registry& NewRegistry(std::shared_ptr<prometheus::Registry>& holder) {
  holder = std::make_shared<prometheus::Registry>();
  return *holder;
}

}  // namespace

SelfMetrics::SelfMetrics(const std::string& libvirt_version)
    : libvirt_up(prometheus::BuildGauge()
                     .Name("guest_exporter_libvirt_up")
                     .Help("1 when the exporter holds a working connection to libvirt, else 0.")
                     .Register(NewRegistry(registry_))
                     .Add({})),
      libvirt_connects_ok(prometheus::BuildCounter()
                              .Name("guest_exporter_libvirt_connects_total")
                              .Help("Attempts to connect to libvirt, by result.")
                              .Register(*registry_)
                              .Add({{"result", "ok"}})),
      libvirt_connects_failed(prometheus::BuildCounter()
                                  .Name("guest_exporter_libvirt_connects_total")
                                  .Help("Attempts to connect to libvirt, by result.")
                                  .Register(*registry_)
                                  .Add({{"result", "error"}})),
      libvirt_calls_hung(prometheus::BuildCounter()
                             .Name("guest_exporter_libvirt_calls_hung_total")
                             .Help("libvirt calls that ran past their deadline; while one hangs no "
                                   "further call is made and the data goes stale.")
                             .Register(*registry_)
                             .Add({})),
      poll_duration(prometheus::BuildHistogram()
                        .Name("guest_exporter_poll_duration_seconds")
                        .Help("Time taken by one load read of one domain (libvirt and agent).")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05,
                                                                         0.1, 0.5, 1, 5, 10, 30})),
      reports_ok(prometheus::BuildCounter()
                     .Name("guest_exporter_reports_total")
                     .Help("Reports pushed to the status-reporter, by result.")
                     .Register(*registry_)
                     .Add({{"result", "ok"}})),
      reports_failed(prometheus::BuildCounter()
                         .Name("guest_exporter_reports_total")
                         .Help("Reports pushed to the status-reporter, by result.")
                         .Register(*registry_)
                         .Add({{"result", "error"}})) {
  prometheus::BuildGauge()
      .Name("guest_exporter_build_info")
      .Help("Build of the running guest-exporter and the libvirt library it uses; always 1.")
      .Register(*registry_)
      .Add({{"version", kVersion}, {"revision", kRevision}, {"libvirt_version", libvirt_version}})
      .Set(1);
  polls_ = &prometheus::BuildCounter()
                .Name("guest_exporter_polls_total")
                .Help("Load reads of a domain, by result (ok, or the reason there is no load).")
                .Register(*registry_);
  for (Reason r : {Reason::kOk, Reason::kNoAgent, Reason::kAgentDisconnected, Reason::kAgentTimeout,
                   Reason::kAgentBusy, Reason::kCommandNotFound, Reason::kUnsupported,
                   Reason::kBadReply, Reason::kDomainNotRunning, Reason::kLibvirtError}) {
    polls_by_reason_[r] = &polls_->Add({{"result", std::string(ReasonName(r))}});
  }
}

void SelfMetrics::CountPoll(Reason reason) {
  if (auto it = polls_by_reason_.find(reason); it != polls_by_reason_.end())
    it->second->Increment();
}

namespace {

prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void AddGauge(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
              double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void AddCounter(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
                uint64_t value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = static_cast<double>(value);
  f.metric.push_back(std::move(m));
}

// The listeners' refusals: counted by the server thread, which also renders
// the page, so they are read here rather than mirrored into the registry.
void AppendHttpFamilies(const std::vector<HttpListenerStats>& http,
                        std::vector<prometheus::MetricFamily>& families) {
  if (http.empty()) return;
  // Short HELP texts: the page is served at every scrape; docs/metrics.md says the rest.
  auto refused = Family("guest_exporter_http_connections_refused_total",
                        "Connections closed at accept: the listener's budget was full.",
                        prometheus::MetricType::Counter);
  auto pauses = Family("guest_exporter_http_accept_pauses_total",
                       "Accept pauses: out of file descriptors.", prometheus::MetricType::Counter);
  auto timeouts = Family("guest_exporter_http_connections_timed_out_total",
                         "Connections closed by the request deadline or the idle timeout.",
                         prometheus::MetricType::Counter);
  for (const auto& l : http) {
    AddCounter(refused, {{"listener", l.listener}}, l.refused);
    AddCounter(pauses, {{"listener", l.listener}}, l.accept_pauses);
    AddCounter(timeouts, {{"listener", l.listener}, {"timeout", "request"}}, l.request_timeouts);
    AddCounter(timeouts, {{"listener", l.listener}, {"timeout", "idle"}}, l.idle_timeouts);
  }
  for (auto* f : {&refused, &pauses, &timeouts}) families.push_back(std::move(*f));
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
  using prometheus::MetricType;
  const std::string every = "; sampled from the guest agent every " +
                            std::to_string(interval.count()) +
                            "s, absent when the agent gives no load or the sample is stale.";
  auto load1 =
      Family("kubevirt_vmi_guest_load_1m",
             "Guest load average over 1 minute, in runnable threads" + every, MetricType::Gauge);
  auto load5 =
      Family("kubevirt_vmi_guest_load_5m",
             "Guest load average over 5 minutes, in runnable threads" + every, MetricType::Gauge);
  auto load15 =
      Family("kubevirt_vmi_guest_load_15m",
             "Guest load average over 15 minutes, in runnable threads" + every, MetricType::Gauge);
  auto status =
      Family("guest_exporter_guest_load_status",
             "Why a running domain has or lacks guest load: one series per domain with the "
             "reason label set (ok, agent_disconnected, command_not_found, stale, ...); always 1.",
             MetricType::Gauge);
  auto last =
      Family("guest_exporter_last_sample_timestamp_seconds",
             "Unix time of the last good load sample of a running domain.", MetricType::Gauge);
  auto vcpus = Family("guest_exporter_guest_vcpus", "Live vCPUs of the domain, from libvirt.",
                      MetricType::Gauge);
  auto memory = Family("guest_exporter_guest_memory_bytes",
                       "Live guest memory of the domain, from libvirt.", MetricType::Gauge);
  auto cpu_ratio = Family(
      "kubevirt_vmi_cpu_allocation_ratio",
      "Guest vCPUs divided by the compute container's CPU request in cores (see docs/ratios.md).",
      MetricType::Gauge);
  auto mem_ratio =
      Family("kubevirt_vmi_memory_overcommit_ratio",
             "Guest memory divided by the memory request without virtualization overhead (see "
             "docs/ratios.md).",
             MetricType::Gauge);

  for (const auto& d : domains) {
    std::vector<prometheus::ClientMetric::Label> id{
        {"namespace", d.identity.namespace_}, {"name", d.identity.name}, {"node", node}};
    if (d.load) {
      AddGauge(load1, id, d.load->load1m);
      AddGauge(load5, id, d.load->load5m);
      AddGauge(load15, id, d.load->load15m);
    }
    auto with_reason = id;
    with_reason.push_back({"reason", std::string(ReasonName(d.reason))});
    AddGauge(status, std::move(with_reason), 1);
    if (d.sample_wall_time) {
      AddGauge(last, id,
               std::chrono::duration<double>(d.sample_wall_time->time_since_epoch()).count());
    }
    AddGauge(vcpus, id, d.info.vcpus);
    AddGauge(memory, id, static_cast<double>(d.info.memory_kib) * 1024.0);
    const Ratios ratios = ComputeRatios(InputsFor(d, requests));
    if (ratios.cpu_allocation) AddGauge(cpu_ratio, id, *ratios.cpu_allocation);
    if (ratios.memory_overcommit) AddGauge(mem_ratio, id, *ratios.memory_overcommit);
  }

  std::vector<prometheus::MetricFamily> families;
  for (auto* f :
       {&load1, &load5, &load15, &status, &last, &vcpus, &memory, &cpu_ratio, &mem_ratio}) {
    if (!f->metric.empty()) families.push_back(std::move(*f));
  }
  auto own = self.registry().Collect();
  families.insert(families.end(), std::make_move_iterator(own.begin()),
                  std::make_move_iterator(own.end()));
  AppendHttpFamilies(http, families);
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace gm::exporter
