#include "controller.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "admission.h"
#include "facts.h"
#include "gm/kube/client.h"
#include "gm/kube/config.h"
#include "gm/kube/informer.h"
#include "gm/kube/leader.h"
#include "gm/kube/paths.h"
#include "gm/kube/workqueue.h"
#include "gm/listen_address.h"
#include "gm/logging.h"
#include "injection_watch.h"
#include "kube_adapters.h"
#include "leadership.h"
#include "metrics.h"
#include "reconciler.h"
#include "report_intake.h"
#include "report_store.h"
#include "servers.h"
#include "token_cache.h"
#include "vmi_crd_watch.h"
#include "write_worker.h"

namespace gm::reporter {

using nlohmann::json;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <typename T>
std::function<T(const json&)> Safe(T (*parse)(const json&)) {
  // One malformed object must not stop the informer: keep an empty record.
  return [parse](const json& obj) {
    try {
      return parse(obj);
    } catch (const std::exception& e) {
      spdlog::warn("ignoring object: {}", EscapeForLog(e.what()));
      return T{};
    }
  };
}

}  // namespace

struct Controller::Impl final : FactsSource {
  ControllerOptions o;
  ReporterMetrics metrics;
  ReportStore store;
  TokenCache tokens;
  std::unique_ptr<kube::Client> client;
  // The webhook's lookups have their own client: one attempt per request
  // (RequestSpec::retry=false would still retry a 429, overrunning the API
  // server's timeout) and their own rate budget, so an admission call never
  // queues behind the writers' backlog.
  std::unique_ptr<kube::Client> lookup_client;
  std::unique_ptr<kube::Informer<PodFacts>> pods;
  std::unique_ptr<kube::Informer<VmiFacts>> vmis;
  kube::WorkQueue queue;
  KubeKeyQueue worker_queue{queue};
  std::unique_ptr<kube::LeaderElector> elector;
  std::unique_ptr<WriteGate> gate;
  std::unique_ptr<KubeWriter> writer;
  std::unique_ptr<Leadership> leadership;
  std::unique_ptr<KubeReviewer> reviewer;
  std::unique_ptr<KubeLookup> lookup;
  std::unique_ptr<SidecarSupport> sidecars;
  std::unique_ptr<InjectionWatch> injection_watch;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<VmiCrdWatch> crd_watch;
  std::unique_ptr<Ingestion> ingestion;
  InjectionConfig injection;
  std::unique_ptr<Servers> servers;
  std::atomic<bool> stop{false};
  std::vector<std::thread> informer_threads;
  std::vector<std::thread> worker_threads;
  std::thread election_thread;

  explicit Impl(ControllerOptions opts)
      : o(std::move(opts)), store(std::chrono::seconds(o.report_max_age_seconds)) {
    kube::Config cfg =
        o.kubeconfig.empty() ? kube::InClusterConfig() : kube::LoadKubeconfig(o.kubeconfig);
    cfg.qps = o.qps;
    cfg.burst = o.burst;
    cfg.user_agent = "kubevirt-guest-metrics-status-reporter";
    kube::ClientOptions copts;
    copts.observer = [this](const std::string& verb, int code, double) {
      metrics.CountApiRequest(verb, code);
    };
    client = std::make_unique<kube::Client>(cfg, copts);
    kube::ClientOptions lookup_opts = copts;
    lookup_opts.retry.max_attempts = 1;
    lookup_client = std::make_unique<kube::Client>(cfg, lookup_opts);

    kube::InformerOptions pod_opts;
    pod_opts.path = kube::CollectionPath("v1", "pods");
    pod_opts.label_selector = "kubevirt.io=virt-launcher";
    // Pages of 100: a page's JSON is parsed whole before the facts are kept,
    // and 500 launcher pods are several MiB; both informers list at once.
    pod_opts.page_size = 100;
    pods = std::make_unique<kube::Informer<PodFacts>>(
        *client, pod_opts, Safe(&PodFromJson),
        kube::InformerHandlers<PodFacts>{
            [this](const std::string&, const PodFacts& p) { Touch(Key(p.namespace_, p.vmi_name)); },
            nullptr});
    kube::InformerOptions vmi_opts;
    vmi_opts.path = kube::CollectionPath("kubevirt.io/v1", "virtualmachineinstances");
    vmi_opts.page_size = 100;
    vmis = std::make_unique<kube::Informer<VmiFacts>>(
        *client, vmi_opts, Safe(&VmiFromJson),
        kube::InformerHandlers<VmiFacts>{
            [this](const std::string& key, const VmiFacts&) { Touch(key); },
            [this](const std::string& key) { store.Erase(key); }});

    kube::LeaderElectionConfig le;
    le.lease_namespace = o.namespace_;
    le.lease_name = o.lease_name;
    le.identity = o.identity;
    le.lease_duration = std::chrono::seconds(o.lease_duration_seconds);
    le.renew_deadline = std::chrono::seconds(o.renew_deadline_seconds);
    le.retry_period = std::chrono::seconds(o.retry_period_seconds);
    le.on_started_leading = [this] { leadership->Started(); };
    // The elector hands the Lease on only after this returns, once the
    // writes in flight have ended: two leaders never write at once.
    le.on_stopped_leading = [this] { leadership->Stopped(); };
    elector = std::make_unique<kube::LeaderElector>(*client, le);
    gate = std::make_unique<WriteGate>([this] { return elector->IsLeader(); });

    writer = std::make_unique<KubeWriter>(*client);
    leadership =
        std::make_unique<Leadership>(*writer, o.namespace_, o.identity, metrics.leader, *gate);
    reviewer = std::make_unique<KubeReviewer>(*client, o.audience);
    lookup = std::make_unique<KubeLookup>(*lookup_client);
    sidecars = std::make_unique<SidecarSupport>(*lookup_client, o.native_sidecars, metrics);
    injection_watch =
        std::make_unique<InjectionWatch>(*lookup_client, o.webhook_configuration,
                                         [this] { return sidecars->Get() != NativeSidecars::kNo; });
    ReconcilerOptions ropts;
    ropts.write_ratios = o.write_ratios;
    reconciler = std::make_unique<Reconciler>(store, *this, *writer, metrics, ropts);
    if (o.write_ratios) crd_watch = std::make_unique<VmiCrdWatch>(*client, [this] { Reprobe(); });
    ingestion =
        std::make_unique<Ingestion>([this] { return Serving(); }, *reviewer, tokens, *this, store,
                                    [this](const std::string& key) { queue.Add(key); }, metrics);

    injection.image = o.sidecar_image;
    injection.reporter_url = o.sidecar_reporter_url;
    if (!o.sidecar_ca_file.empty()) injection.reporter_ca_pem = ReadFile(o.sidecar_ca_file);
    injection.audience = o.audience;
    injection.interval_seconds = o.sidecar_interval_seconds;
    injection.cpu = o.sidecar_cpu;
    injection.memory = o.sidecar_memory;
    injection.token_expiration_seconds = o.sidecar_token_expiration_seconds;
    injection.listen_address = o.sidecar_listen_address;

    ServersConfig sc;
    sc.https = ParseListenAddress(o.https_address);
    sc.http = ParseListenAddress(o.metrics_address);
    sc.tls_cert_file = o.tls_cert_file;
    sc.tls_key_file = o.tls_key_file;
    Endpoints ep;
    ep.ingestion = ingestion.get();
    ep.counters = &metrics;  // what the listeners refuse or cut
    ep.metrics = [this] {
      ReturnFreedMemory();  // what the last page (megabytes at 10,000 VMs) left free
      metrics.queue_depth.Set(static_cast<double>(queue.Len()));
      const auto now = Clock::now();
      // Every running VMI's report state, on the leader (reports reach only it).
      // Read in the informers' stores, not copied: at 10,000 VMIs a copy of
      // both is megabytes on every scrape.
      std::optional<std::vector<VmiStateRow>> states;
      if (Serving()) {
        const InjectionFacts injection_facts = injection_watch->Get();
        const SilenceBound bound{std::chrono::seconds(o.sidecar_interval_seconds),
                                 o.silent_intervals};
        const auto wall_now = WallClock::now();
        states = vmis->Read([&](const auto& vmi_store) {
          return pods->Read([&](const auto& pod_store) {
            return CurrentReportStates(vmi_store, pod_store, store, injection_facts, bound, now,
                                       wall_now);
          });
        });
      }
      return RenderReporterMetrics(store, now, o.export_guest_load, metrics, o.write_ratios,
                                   states ? &*states : nullptr);
    };
    // Ready = caches synced, i.e. able to take over at once. Standbys are
    // Ready so that rollouts finish and a PodDisruptionBudget can protect the
    // leader; they are not *serving*: reports to a standby get 503
    // not_leader, status_reporter_leader is 0 there, and the Service that
    // carries reports and webhook calls selects the leader by its label.
    ep.ready = [this] { return Synced(); };
    ep.admit = [this](const std::string& body, Deadline deadline) {
      const json review = json::parse(body, nullptr, false);
      AdmissionResult r = Admit(review, injection, *lookup, deadline, sidecars->Get());
      metrics.CountAdmission(r.decision);
      if (r.detail.empty())
        spdlog::debug("admission: {}", r.decision);
      else
        spdlog::warn("admission: {}: {}", r.decision, r.detail);
      return r;
    };
    servers = std::make_unique<Servers>(sc, ep);
  }

  bool Synced() const { return pods->HasSynced() && vmis->HasSynced(); }
  bool Serving() const { return elector->IsLeader() && Synced(); }

  // glibc keeps freed heap for reuse; after the big transient buffers (list
  // pages, /metrics pages) that is most of the heap. Give it back.
  static void ReturnFreedMemory() { malloc_trim(0); }

  // The VMI CRD changed: find out where ratios go now, with every VMI that
  // has a report, rather than at each VMI's next report.
  void Reprobe() {
    reconciler->SchemaChanged();
    const auto keys =
        store.WithFresh(Clock::now(), [](const std::vector<const StoredReport*>& fresh) {
          std::vector<std::string> out;
          out.reserve(fresh.size());
          for (const StoredReport* s : fresh)
            out.push_back(Key(s->report.namespace_, s->report.vmi_name));
          return out;
        });
    for (const auto& key : keys) queue.Add(key);  // outside the store's lock
  }

  // A pod or VMI changed: if the VMI has a report, check its record again.
  void Touch(const std::string& vmi_key) {
    if (store.Get(vmi_key)) queue.Add(vmi_key);
  }

  std::optional<PodFacts> Pod(const std::string& key) const override { return pods->Get(key); }
  std::optional<VmiFacts> Vmi(const std::string& key) const override { return vmis->Get(key); }

  void Start() {
    leadership->Unlabel();
    servers->Start();
    informer_threads.emplace_back([this] { pods->Run(stop); });
    informer_threads.emplace_back([this] { vmis->Run(stop); });
    informer_threads.emplace_back([this] { sidecars->Run(stop); });
    if (crd_watch) informer_threads.emplace_back([this] { crd_watch->Run(stop); });
    informer_threads.emplace_back([this] { injection_watch->Run(stop); });
    informer_threads.emplace_back([this] {
      // Polls, so that a stop before the first sync (API unreachable) is not held up.
      while (!stop) {
        if (pods->WaitForSync(std::chrono::milliseconds(200)) &&
            vmis->WaitForSync(std::chrono::milliseconds(200))) {
          metrics.caches_synced.Set(1);
          spdlog::info("caches synced: {} launcher pods, {} VMIs", pods->Size(), vmis->Size());
          ReturnFreedMemory();  // the list pages are gone; only the facts stay
          return;
        }
      }
    });
    election_thread = std::thread([this] { elector->Run(stop); });
    for (int i = 0; i < o.workers; ++i) {
      worker_threads.emplace_back([this] {
        RunWriteWorker(
            worker_queue, *gate,
            [this](const std::string& key) { return reconciler->Reconcile(key); },
            &metrics.reconcile_duration);
      });
    }
  }

  void Stop() {
    stop = true;
    queue.ShutDown();
    servers->Stop();
    // The writers finish first, then the elector hands the Lease back — it
    // needs the client for that — so no write follows the release and a
    // standby leads at its next try instead of after the lease duration.
    // Only then are the client's remaining requests (the watches) cut.
    JoinAll(worker_threads);
    if (election_thread.joinable()) election_thread.join();
    client->Stop();
    lookup_client->Stop();
    JoinAll(informer_threads);
  }

  static void JoinAll(std::vector<std::thread>& threads) {
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
  }
};

Controller::Controller(ControllerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Controller::~Controller() { impl_->Stop(); }
void Controller::Start() { impl_->Start(); }
void Controller::Stop() { impl_->Stop(); }
int Controller::https_port() const { return impl_->servers->https_port(); }
int Controller::http_port() const { return impl_->servers->http_port(); }

}  // namespace gm::reporter
