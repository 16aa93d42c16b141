#include "controller.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
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
#include "ingestion.h"
#include "injection_watch.h"
#include "metrics.h"
#include "reconciler.h"
#include "report_store.h"
#include "servers.h"
#include "token_cache.h"

namespace gm::reporter {

using nlohmann::json;

namespace {

// The leader's pod carries this label; the chart's HTTPS Service selects it.
constexpr const char* kLeaderLabel = "guestmetrics.kubevirt.io/leader";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

WriteResult Write(kube::Client& client, const std::string& path, const json& patch,
                  const kube::Query& query = {}) {
  try {
    return {200, "", client.Patch(path, patch, kube::kMergePatch, query)};
  } catch (const kube::ApiError& e) {
    return {e.code(), e.message(), {}};
  }
}

class KubeWriter final : public ObjectWriter {
 public:
  explicit KubeWriter(kube::Client& c) : c_(c) {}
  WriteResult PatchPod(const std::string& ns, const std::string& name, const json& patch) override {
    return Write(c_, kube::ObjectPath("v1", "pods", ns, name), patch);
  }
  WriteResult PatchVmiStatus(const std::string& ns, const std::string& name,
                             const json& patch) override {
    // Strict: a CRD that prunes the fields answers 422 instead of keeping nothing.
    return Write(c_,
                 kube::ObjectPath("kubevirt.io/v1", "virtualmachineinstances", ns, name, "status"),
                 patch, {{"fieldValidation", "Strict"}});
  }
  WriteResult PatchVmi(const std::string& ns, const std::string& name, const json& patch) override {
    return Write(c_, kube::ObjectPath("kubevirt.io/v1", "virtualmachineinstances", ns, name),
                 patch);
  }

 private:
  kube::Client& c_;
};

class KubeReviewer final : public TokenReviewer {
 public:
  KubeReviewer(kube::Client& c, std::string audience) : c_(c), audience_(std::move(audience)) {}
  ReviewResult Review(const std::string& token) override {
    kube::RequestSpec spec;
    spec.verb = "POST";
    spec.path = "/apis/authentication.k8s.io/v1/tokenreviews";
    spec.body = TokenReviewRequest(token, audience_).dump();
    spec.timeout = std::chrono::seconds(5);  // the sidecar waits on this answer
    try {
      return ParseTokenReview(json::parse(c_.Request(spec).body));
    } catch (const kube::ApiError& e) {
      return {true, false, {}, e.what()};
    } catch (const json::exception& e) {
      return {true, false, {}, std::string("bad TokenReview response: ") + e.what()};
    }
  }

 private:
  kube::Client& c_;
  const std::string audience_;
};

// The webhook's two lookups: the pod's VMI and the KubeVirt CR. They end by
// the admission's deadline (the API server's own timeout, less a margin), so
// the webhook answers in time
// whatever the API does. Their client makes one attempt per request: a
// retry after a 429's Retry-After would overrun that deadline.
class KubeLookup final : public ClusterLookup {
 public:
  explicit KubeLookup(kube::Client& c) : c_(c) {}
  std::optional<json> Vmi(const std::string& ns, const std::string& name,
                          Deadline deadline) override {
    return Get(kube::ObjectPath("kubevirt.io/v1", "virtualmachineinstances", ns, name), deadline);
  }
  std::optional<json> KubeVirts(Deadline deadline) override {
    return Get(kube::CollectionPath("kubevirt.io/v1", "kubevirts"), deadline);
  }

 private:
  // nullopt: not found; LookupFailed: no answer in time.
  std::optional<json> Get(const std::string& path, Deadline deadline) {
    using std::chrono::milliseconds;
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left < milliseconds(50))
      throw LookupFailed("GET " + path + ": no time left before the webhook's deadline");
    kube::RequestSpec spec;
    spec.path = path;
    spec.timeout = std::min<milliseconds>(left, std::chrono::seconds(2));
    spec.retry = false;
    try {
      json body = json::parse(c_.Request(spec).body);
      if (!body.is_object()) throw LookupFailed("GET " + path + ": the answer is not an object");
      return body;
    } catch (const kube::NotFound&) {
      return std::nullopt;
    } catch (const LookupFailed&) {
      throw;
    } catch (const std::exception& e) {
      throw LookupFailed("GET " + path + ": " + e.what());
    }
  }
  kube::Client& c_;
};

// `text` escaped as inside a JSON string: a peer's words in a log line.
std::string Escaped(const std::string& text) {
  const std::string quoted = json(text).dump(-1, ' ', false, json::error_handler_t::replace);
  return quoted.substr(1, quoted.size() - 2);
}

// Whether the API server has native sidecars (KEP-753); the webhook injects
// only while it does. --native-sidecars=auto reads /version at start and
// every 10 minutes (a server is upgraded in place); after a failed read it
// tries again with jittered backoff from 5 s up to that period, keeping what
// it knew, and logs once per run of failures. Until the first answer it
// does not know, and the webhook does not inject.
class SidecarSupport {
 public:
  SidecarSupport(kube::Client& c, const std::string& mode, ReporterMetrics& m)
      : c_(c), m_(m), by_version_(mode == "auto") {
    if (!by_version_)
      Set(mode == "true" ? NativeSidecars::kYes : NativeSidecars::kNo, "--native-sidecars=" + mode);
  }
  NativeSidecars Get() const { return state_.load(); }

  void Run(const std::atomic<bool>& stop) {
    using std::chrono::milliseconds;
    constexpr milliseconds kPeriod = std::chrono::minutes(10);
    constexpr milliseconds kFirstBackoff = std::chrono::seconds(5);
    if (!by_version_) return;
    std::mt19937 rng(std::random_device{}());
    milliseconds backoff = kFirstBackoff;
    bool failing = false;
    while (!stop) {
      milliseconds wait = kPeriod;
      try {
        kube::RequestSpec spec;
        spec.path = "/version";
        spec.timeout = std::chrono::seconds(5);
        spec.retry = false;
        spec.stop = &stop;
        const ServerVersion v =
            ParseServerVersion(json::parse(c_.Request(spec).body, nullptr, false));
        if (failing) spdlog::info("the API server's /version answers again");
        failing = false;
        backoff = kFirstBackoff;
        Set(NativeSidecarsByVersion(v), "the API server is " + Escaped(v.git_version));
      } catch (const kube::Cancelled&) {
        return;
      } catch (const std::exception& e) {
        if (!failing) {
          spdlog::warn(
              "cannot read the API server's /version, retrying with backoff (the webhook {}): {}",
              Get() == NativeSidecars::kYes ? "keeps injecting" : "injects nothing meanwhile",
              Escaped(e.what()));
        }
        failing = true;
        wait = milliseconds(
            std::uniform_int_distribution<int64_t>(backoff.count() / 2, backoff.count())(rng));
        backoff = std::min(backoff * 2, kPeriod);
      }
      for (const auto until = std::chrono::steady_clock::now() + wait;
           !stop && std::chrono::steady_clock::now() < until;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
  }

 private:
  // Logged once per change, not per pod.
  void Set(NativeSidecars now, const std::string& source) {
    m_.native_sidecars.Set(now == NativeSidecars::kYes ? 1 : 0);
    if (state_.exchange(now) == now) return;
    if (now == NativeSidecars::kYes) {
      spdlog::info("{}: it has native sidecars; the webhook injects guest-exporter", source);
    } else {
      spdlog::warn(
          "{}: it has no native sidecars (SidecarContainers, on by default from Kubernetes 1.29); "
          "the "
          "webhook admits launcher pods unchanged (decision no_native_sidecars)",
          source);
    }
  }

  kube::Client& c_;
  ReporterMetrics& m_;
  const bool by_version_;
  std::atomic<NativeSidecars> state_{NativeSidecars::kUnknown};
};

template <typename T>
std::function<T(const json&)> Safe(T (*parse)(const json&)) {
  // One malformed object must not stop the informer: keep an empty record.
  return [parse](const json& obj) {
    try {
      return parse(obj);
    } catch (const std::exception& e) {
      spdlog::warn("ignoring object: {}", e.what());
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
  std::unique_ptr<kube::LeaderElector> elector;
  std::unique_ptr<KubeWriter> writer;
  std::unique_ptr<KubeReviewer> reviewer;
  std::unique_ptr<KubeLookup> lookup;
  std::unique_ptr<SidecarSupport> sidecars;
  std::unique_ptr<InjectionWatch> injection_watch;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<Ingestion> ingestion;
  InjectionConfig injection;
  std::unique_ptr<Servers> servers;
  std::atomic<bool> stop{false};
  std::mutex writing_mu;
  std::condition_variable writing_cv;
  int writing = 0;  // reconciles in flight
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
    le.on_started_leading = [this] {
      spdlog::info("{} is now the leader", o.identity);
      metrics.leader.Set(1);
      LabelSelfAsLeader(true);
    };
    le.on_stopped_leading = [this] {
      spdlog::warn("{} stopped leading", o.identity);
      metrics.leader.Set(0);
      LabelSelfAsLeader(false);
      // The elector hands the Lease on only after this returns: let the
      // writes in flight end first, so two leaders never write at once.
      std::unique_lock lock(writing_mu);
      writing_cv.wait(lock, [this] { return writing == 0; });
    };
    elector = std::make_unique<kube::LeaderElector>(*client, le);

    writer = std::make_unique<KubeWriter>(*client);
    reviewer = std::make_unique<KubeReviewer>(*client, o.audience);
    lookup = std::make_unique<KubeLookup>(*lookup_client);
    sidecars = std::make_unique<SidecarSupport>(*lookup_client, o.native_sidecars, metrics);
    injection_watch =
        std::make_unique<InjectionWatch>(*lookup_client, o.webhook_configuration,
                                         [this] { return sidecars->Get() != NativeSidecars::kNo; });
    reconciler = std::make_unique<Reconciler>(store, *this, *writer, metrics);
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
    ep.metrics = [this] {
      ReturnFreedMemory();  // what the last page (megabytes at 10,000 VMs) left free
      metrics.queue_depth.Set(static_cast<double>(queue.Len()));
      const auto now = Clock::now();
      // Every running VMI's report state, on the leader (reports reach only it).
      std::optional<std::vector<VmiStateRow>> states;
      if (Serving()) {
        states = CurrentReportStates(
            vmis->List(), pods->List(), store, injection_watch->Get(),
            {std::chrono::seconds(o.sidecar_interval_seconds), o.silent_intervals}, now,
            WallClock::now());
      }
      return RenderReporterMetrics(store.Fresh(now), store, now, o.export_guest_load, metrics,
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

  // Labels this replica's own pod while it leads, and unlabels it when it
  // stops. Outside a cluster there is no such pod: the 404 is harmless.
  void LabelSelfAsLeader(bool leading) {
    const json patch = {
        {"metadata", {{"labels", {{kLeaderLabel, leading ? json("true") : json(nullptr)}}}}}};
    const WriteResult r =
        Write(*client, kube::ObjectPath("v1", "pods", o.namespace_, o.identity), patch);
    if (!r.ok())
      spdlog::debug("cannot label pod {}/{} as leader={}: {}", o.namespace_, o.identity, leading,
                    r.message);
  }

  // A pod or VMI changed: if the VMI has a report, check its record again.
  void Touch(const std::string& vmi_key) {
    if (store.Get(vmi_key)) queue.Add(vmi_key);
  }

  std::optional<PodFacts> Pod(const std::string& key) const override { return pods->Get(key); }
  std::optional<VmiFacts> Vmi(const std::string& key) const override { return vmis->Get(key); }

  void Worker() {
    std::string key;
    while (queue.Get(key)) {
      {
        // Checked and counted under one lock: on_stopped_leading, which runs
        // once IsLeader() is false, then sees every write that got past here.
        std::lock_guard lock(writing_mu);
        if (!elector->IsLeader()) {  // only the leader writes
          queue.Forget(key);
          queue.Done(key);
          continue;
        }
        ++writing;
      }
      const auto t0 = Clock::now();
      const Outcome out = reconciler->Reconcile(key);
      metrics.reconcile_duration.Observe(std::chrono::duration<double>(Clock::now() - t0).count());
      {
        std::lock_guard lock(writing_mu);
        --writing;
      }
      writing_cv.notify_all();
      if (out == Outcome::kRetry)
        queue.AddRateLimited(key);
      else
        queue.Forget(key);
      queue.Done(key);
    }
  }

  void Start() {
    LabelSelfAsLeader(false);  // a restarted leader must not keep attracting reports
    servers->Start();
    informer_threads.emplace_back([this] { pods->Run(stop); });
    informer_threads.emplace_back([this] { vmis->Run(stop); });
    informer_threads.emplace_back([this] { sidecars->Run(stop); });
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
    for (int i = 0; i < o.workers; ++i) worker_threads.emplace_back([this] { Worker(); });
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
