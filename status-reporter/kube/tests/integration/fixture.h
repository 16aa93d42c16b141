#pragma once
// Runs tests/apiserver/fixture.py for one test: started in the constructor
// (on a free port, in a fresh state directory), stopped in the destructor
// (and by the kernel if this process dies first).

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gm/kube/client.h"
#include "gm/kube/paths.h"

namespace kube_it {

class Fixture {
 public:
  explicit Fixture(const std::vector<std::string>& extra_args = {"--bookmark-interval", "0.3"});
  ~Fixture();
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  /// The client configuration from the fixture's kubeconfig (admin token).
  gm::kube::Config config() const;
  const std::string& dir() const { return dir_; }
  int port() const { return port_; }

  /// A fixture admin call (/fixture/...), outside any client under test.
  nlohmann::json Admin(const std::string& verb, const std::string& path,
                       const nlohmann::json& body = nullptr);
  void AddFault(const nlohmann::json& fault) { Admin("POST", "/fixture/faults", fault); }
  /// The API request log, optionally only the requests with this verb and resource.
  std::vector<nlohmann::json> Requests(const std::string& verb = "",
                                       const std::string& resource = "");
  void ResetRequests() { Admin("POST", "/fixture/requests/reset"); }

  /// Creates objects through the admin client (pods, leases, VMIs ...).
  nlohmann::json Create(const std::string& collection_path, const nlohmann::json& object);

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string kubeconfig_;
  std::unique_ptr<gm::kube::Client> admin_;
};

/// A minimal pod.
nlohmann::json Pod(const std::string& ns, const std::string& name,
                   const nlohmann::json& labels = nlohmann::json::object());

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

double SecondsSince(std::chrono::steady_clock::time_point start);

// The namespace every test works in.
inline const std::string kPods = gm::kube::CollectionPath("v1", "pods", "default");

}  // namespace kube_it
