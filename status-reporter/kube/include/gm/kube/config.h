#pragma once
// Where the API server is and how to authenticate to it: from the pod's
// service account (in-cluster) or from a kubeconfig file.

#include <chrono>
#include <string>

namespace gm::kube {

struct Config {
  std::string server;      ///< "https://host:port", optionally with a path prefix
  std::string ca_file;     ///< CA bundle to verify the server with (a file) ...
  std::string ca_pem;      ///< ... or in memory; neither: the system's CAs
  std::string token;       ///< bearer token ...
  std::string token_file;  ///< ... or a file holding it, re-read as it rotates (wins over `token`)
  std::string client_cert_file, client_key_file;  ///< client certificate (PEM files) ...
  std::string client_cert_pem, client_key_pem;    ///< ... or in memory
  bool insecure_skip_tls_verify = false;
  std::chrono::milliseconds timeout{10000};  ///< per attempt, connection included
  double qps = 20;  ///< client-side rate limit shared by all requests; <= 0: none
  int burst = 40;
  std::string user_agent;         ///< empty: "kubevirt-guest-metrics"
  std::string default_namespace;  ///< the context's or the pod's namespace, else "default"
};

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The configuration a pod gets from its service account: KUBERNETES_SERVICE_HOST
/// and KUBERNETES_SERVICE_PORT, `dir`/token (as token_file: projected tokens
/// rotate), `dir`/ca.crt and `dir`/namespace. Throws std::invalid_argument
/// when not in a cluster or the token or CA cannot be read.
Config InClusterConfig(const std::string& dir = kServiceAccountDir);

/// Parses kubeconfig text. `origin` names it in error messages, relative
/// file paths are resolved against `base_dir`, and `context` empty means
/// current-context. Supports the server, certificate-authority(-data),
/// insecure-skip-tls-verify, token, tokenFile, client-certificate(-data) and
/// client-key(-data). Throws std::invalid_argument saying what is wrong and
/// where, e.g. `kubeconfig /x: context "foo" not found`; exec and
/// auth-provider plugins and basic auth are refused that way too.
Config ParseKubeconfig(const std::string& text, const std::string& origin,
                       const std::string& base_dir, const std::string& context = "");

/// Reads and parses the kubeconfig file at `path` (see ParseKubeconfig).
Config LoadKubeconfig(const std::string& path, const std::string& context = "");

}  // namespace gm::kube
