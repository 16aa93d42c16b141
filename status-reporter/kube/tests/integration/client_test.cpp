#include "gm/kube/client.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "fixture.h"
#include "gm/kube/paths.h"

using namespace gm::kube;
using kube_it::Fixture;
using kube_it::kPods;
using kube_it::Pod;
using kube_it::SecondsSince;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kVmis = CollectionPath("kubevirt.io/v1", "virtualmachineinstances", "default");

// Every attempt the client reports to its observer.
struct Attempts {
  std::mutex mu;
  std::vector<std::pair<std::string, int>> seen;
  ClientOptions Options() {
    ClientOptions o;
    o.observer = [this](const std::string& verb, int code, double) {
      std::lock_guard<std::mutex> lock(mu);
      seen.emplace_back(verb, code);
    };
    return o;
  }
};

template <typename E>
E Caught(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  FAIL("the expected error was not thrown");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("create, get, update, patch and delete a pod, each failure has its type") {
  Fixture fx;
  Client client(fx.config());

  const auto created = client.Create(kPods, Pod("default", "web", {{"app", "web"}}));
  CHECK(created["metadata"]["name"] == "web");
  CHECK(created["status"]["phase"] == "Pending");
  const std::string path = ObjectPath("v1", "pods", "default", "web");
  auto pod = client.Get(path);
  CHECK(pod["metadata"]["uid"] == created["metadata"]["uid"]);

  const auto exists = Caught<Conflict>([&] { client.Create(kPods, Pod("default", "web")); });
  CHECK(exists.code() == 409);
  CHECK(exists.reason() == "AlreadyExists");

  pod["metadata"]["labels"]["tier"] = "front";
  const auto updated = client.Update(path, pod);
  CHECK(updated["metadata"]["labels"]["tier"] == "front");
  // The resourceVersion we sent is stale now.
  pod["metadata"]["labels"]["tier"] = "back";
  const auto stale = Caught<Conflict>([&] { client.Update(path, pod); });
  CHECK(stale.reason() == "Conflict");
  CHECK(stale.message().find("the object has been modified") != std::string::npos);

  const auto patched = client.Patch(path, {{"metadata", {{"annotations", {{"a", "1"}}}}}});
  CHECK(patched["metadata"]["annotations"]["a"] == "1");
  const auto failed_test = Caught<Invalid>([&] {
    client.Patch(
        path,
        nlohmann::json::array({{{"op", "test"}, {"path", "/metadata/name"}, {"value", "nope"}}}),
        kJsonPatch);
  });
  CHECK(failed_test.code() == 422);
  const auto bad_name =
      Caught<Invalid>([&] { client.Create(kPods, Pod("default", "Not_A_Name")); });
  CHECK(bad_name.reason() == "Invalid");

  client.Delete(path);
  const auto gone = Caught<NotFound>([&] { client.Get(path); });
  CHECK(gone.code() == 404);
  CHECK(gone.reason() == "NotFound");
  CHECK(gone.message() == "pods \"web\" not found");
}

TEST_CASE(
    "a pruned VMI status patch: Warning headers by default, 422 strict decoding error with "
    "Strict") {
  Fixture fx;
  Client client(fx.config());
  client.Create(kVmis, {{"apiVersion", "kubevirt.io/v1"},
                        {"kind", "VirtualMachineInstance"},
                        {"metadata", {{"name", "vm1"}}},
                        {"spec", {{"domain", {{"devices", nlohmann::json::object()}}}}}});
  const std::string status =
      ObjectPath("kubevirt.io/v1", "virtualmachineinstances", "default", "vm1", "status");
  const nlohmann::json ratios = {
      {"status",
       {{"memory", {{"guestCurrent", "2Gi"}, {"memoryOvercommitRatio", "1.5"}}},
        {"currentCPUTopology", {{"cores", 2}, {"cpuAllocationRatio", 10}}}}}};

  std::vector<std::string> warnings;
  const auto vmi = client.Patch(status, ratios, kMergePatch, {}, &warnings);
  CHECK(warnings ==
        std::vector<std::string>{R"(unknown field "status.currentCPUTopology.cpuAllocationRatio")",
                                 R"(unknown field "status.memory.memoryOvercommitRatio")"});
  CHECK(vmi["status"]["memory"]["guestCurrent"] == "2Gi");
  CHECK_FALSE(vmi["status"]["memory"].contains("memoryOvercommitRatio"));

  const auto strict = Caught<Invalid>([&] {
    client.Patch(status, ratios, kMergePatch, {{"fieldValidation", "Strict"}});
  });
  CHECK(strict.code() == 422);
  CHECK(strict.message().find("strict decoding error: unknown field") != std::string::npos);

  fx.Admin("POST", "/fixture/pruning", {{"enabled", false}});
  warnings = {"stale"};
  const auto kept =
      client.Patch(status, ratios, kMergePatch, {{"fieldValidation", "Strict"}}, &warnings);
  CHECK(warnings.empty());
  CHECK(kept["status"]["memory"]["memoryOvercommitRatio"] == "1.5");
}

TEST_CASE("429 with Retry-After: retried after the server's delay, one success") {
  Fixture fx;
  Attempts attempts;
  Client client(fx.config(), attempts.Options());
  fx.AddFault({{"verb", "get"}, {"resource", "pods"}, {"code", 429}, {"retryAfterSeconds", 1}});
  client.Create(kPods, Pod("default", "p"));
  fx.ResetRequests();

  const auto start = Clock::now();
  const auto pod = client.Get(ObjectPath("v1", "pods", "default", "p"));
  const double elapsed = SecondsSince(start);
  CHECK(pod["metadata"]["name"] == "p");
  CHECK(elapsed >= 1.0);
  CHECK(elapsed < 3.0);
  const auto gets = fx.Requests("get", "pods");
  REQUIRE(gets.size() == 2);
  CHECK(gets[0]["code"] == 429);
  CHECK(gets[1]["code"] == 200);
  CHECK(attempts.seen ==
        std::vector<std::pair<std::string, int>>{{"POST", 201}, {"GET", 429}, {"GET", 200}});
}

TEST_CASE("429 until the attempts run out: TooManyRequests, even for POST") {
  Fixture fx;
  ClientOptions options;
  options.retry.max_attempts = 3;
  Client client(fx.config(), options);
  fx.AddFault({{"resource", "pods"}, {"code", 429}, {"retryAfterSeconds", 0}, {"count", -1}});
  const auto busy = Caught<TooManyRequests>([&] { client.Create(kPods, Pod("default", "p")); });
  CHECK(busy.code() == 429);
  CHECK(fx.Requests("create", "pods").size() ==
        3);  // 429: the server did not act, so POST is retried
}

TEST_CASE("500 is retried with backoff for GET, not for POST") {
  Fixture fx;
  Attempts attempts;
  Client client(fx.config(), attempts.Options());
  client.Create(kPods, Pod("default", "p"));
  fx.AddFault({{"verb", "get"}, {"resource", "pods"}, {"code", 500}, {"count", 2}});
  const auto start = Clock::now();
  CHECK(client.Get(ObjectPath("v1", "pods", "default", "p"))["metadata"]["name"] == "p");
  CHECK(SecondsSince(start) >= 0.75);  // 250 ms + 500 ms of backoff
  CHECK(fx.Requests("get", "pods").size() == 3);

  fx.AddFault({{"verb", "create"}, {"resource", "pods"}, {"code", 500}});
  const auto internal = Caught<ServerError>([&] { client.Create(kPods, Pod("default", "q")); });
  CHECK(internal.code() == 500);
  CHECK(internal.reason() == "InternalError");
  CHECK(fx.Requests("create", "pods").size() == 2);  // the first create, then one try of the second
}

TEST_CASE("the client-side rate limit: 20 requests at qps 10, burst 1 take at least 1.9 s") {
  Fixture fx;
  Config config = fx.config();
  config.qps = 10;
  config.burst = 1;
  Client client(config);
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) client.Get("/api/v1/namespaces/default/pods");
  const double elapsed = SecondsSince(start);
  CHECK(elapsed >= 1.85);
  CHECK(elapsed < 4.0);
}

TEST_CASE("the rate limit is shared by concurrent requests") {
  Fixture fx;
  Config config = fx.config();
  config.qps = 20;
  config.burst = 2;
  Client client(config);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) client.Get("/api/v1/namespaces/default/pods");
    });
  }
  for (auto& t : threads) t.join();
  CHECK(SecondsSince(start) >= 0.85);  // 18 tokens after the burst at 20/s
}

TEST_CASE("no server: a TransportError after the retries, code 0 for each attempt") {
  // A port nobody listens on: bind one, then close it.
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool bound = ::bind(s, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
                     ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(s);
  REQUIRE(bound);  // else the port below would be 0, not a closed one
  Config config;
  config.server = "https://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  Attempts attempts;
  ClientOptions options = attempts.Options();
  options.retry.max_attempts = 2;
  options.retry.initial_backoff = std::chrono::milliseconds(10);
  Client client(config, options);
  const auto err = Caught<TransportError>([&] { client.Get("/api/v1/pods"); });
  CHECK(err.code() == 0);
  CHECK(std::string(err.what()).find("GET /api/v1/pods") != std::string::npos);
  CHECK(attempts.seen == std::vector<std::pair<std::string, int>>{{"GET", 0}, {"GET", 0}});
  // Nothing was sent, so even a POST may try again.
  attempts.seen.clear();
  CHECK_THROWS_AS(client.Create("/api/v1/namespaces/default/pods", Pod("default", "p")),
                  TransportError);
  CHECK(attempts.seen.size() == 2);
}

TEST_CASE("the TLS server is verified against the kubeconfig's CA") {
  Fixture fx;
  Fixture other;  // its own CA, which did not sign fx's certificate
  Config wrong_ca = fx.config();
  wrong_ca.ca_file = other.config().ca_file;
  ClientOptions options;
  options.retry.max_attempts = 1;
  const auto untrusted =
      Caught<TransportError>([&] { Client(wrong_ca, options).Get("/api/v1/pods"); });
  CHECK(std::string(untrusted.what()).find("certificate") != std::string::npos);

  // The same CA given in memory (as certificate-authority-data would) works.
  Config in_memory = fx.config();
  std::ifstream ca(in_memory.ca_file);
  in_memory.ca_pem.assign(std::istreambuf_iterator<char>(ca), {});
  in_memory.ca_file.clear();
  CHECK(Client(in_memory).Get("/api/v1/pods")["kind"] == "PodList");
}

TEST_CASE("a rotated token file is re-read, a 401 re-reads it at once and retries once") {
  Fixture fx;
  // Service-account tokens bound to pods: deleting the pod revokes its token.
  for (const char* name : {"rot-a", "rot-b", "rot-c"}) fx.Create(kPods, Pod("default", name));
  auto token_for = [&](const std::string& pod) {
    return fx
        .Admin("POST", "/fixture/tokens",
               {{"namespace", "default"}, {"serviceAccount", "default"}, {"podName", pod}})["token"]
        .get<std::string>();
  };
  const std::string token_file = fx.dir() + "/sa-token";
  auto write_token = [&](const std::string& token) {
    std::ofstream(token_file, std::ios::trunc) << token << "\n";
  };
  write_token(token_for("rot-a"));

  Config config = fx.config();
  config.token.clear();
  config.token_file = token_file;
  Attempts attempts;
  Client client(config, attempts.Options());
  const std::string path = ObjectPath("v1", "pods", "default", "rot-c");
  client.Get(path);
  CHECK(fx.Requests("get", "pods").back()["user"] == "system:serviceaccount:default:default");

  // Rotation as the kubelet does it: a new token in the file; the old one dies with its pod.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a visibly newer mtime
  write_token(token_for("rot-b"));
  client.Delete(ObjectPath("v1", "pods", "default", "rot-a"));
  CHECK(client.Get(path)["metadata"]["name"] == "rot-c");

  // A rotation the mtime rule cannot see (the old mtime put back): the 401
  // makes the client re-read the file and try again, once.
  struct stat before {};
  ::stat(token_file.c_str(), &before);
  write_token(token_for("rot-c"));
  const timespec times[2] = {before.st_mtim, before.st_mtim};
  ::utimensat(AT_FDCWD, token_file.c_str(), times, 0);
  client.Delete(ObjectPath("v1", "pods", "default", "rot-b"));
  attempts.seen.clear();
  CHECK(client.Get(path)["metadata"]["name"] == "rot-c");
  CHECK(attempts.seen == std::vector<std::pair<std::string, int>>{{"GET", 401}, {"GET", 200}});

  // A token that stays bad: one retry, then Unauthorized.
  write_token("garbage");
  CHECK_THROWS_AS(client.Get(path), Unauthorized);
}

TEST_CASE("Stop abandons a request in flight") {
  Fixture fx;
  Client client(fx.config());
  fx.AddFault({{"verb", "list"}, {"resource", "pods"}, {"delaySeconds", 5}});
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    client.Stop();
  });
  const auto start = Clock::now();
  CHECK_THROWS_AS(client.Get("/api/v1/pods"), Cancelled);
  CHECK(SecondsSince(start) < 3.0);  // not after the 5 s the server takes
  stopper.join();
}
