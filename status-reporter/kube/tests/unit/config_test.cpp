#include "gm/kube/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

using gm::kube::Config;
using gm::kube::InClusterConfig;
using gm::kube::LoadKubeconfig;
using gm::kube::ParseKubeconfig;

namespace {

// "hello" / "cert" / "key" in base64.
constexpr const char* kTwoContexts = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://dev.example:6443
    certificate-authority: certs/ca.crt
- name: prod-cluster
  cluster:
    server: https://prod.example:6443/
    certificate-authority-data: aGVsbG8=
contexts:
- name: dev
  context: {cluster: dev-cluster, user: dev-user, namespace: team-a}
- name: prod
  context: {cluster: prod-cluster, user: prod-user}
users:
- name: dev-user
  user:
    token: abc.def
- name: prod-user
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
)";

// The error message ParseKubeconfig throws for `text`.
std::string ErrorOf(const std::string& text, const std::string& context = "") {
  try {
    ParseKubeconfig(text, "/x", "/dir", context);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

std::string WithUser(const std::string& user_body) {
  return "current-context: c\n"
         "clusters: [{name: k, cluster: {server: 'https://k:6443'}}]\n"
         "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
         "users:\n- name: u\n  user:\n" +
         user_body;
}

std::string WithCluster(const std::string& cluster_body) {
  return "current-context: c\n"
         "clusters:\n- name: k\n  cluster:\n" +
         cluster_body + "contexts: [{name: c, context: {cluster: k}}]\n";
}

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/kube-config-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(path + "/" + name) << text;
  }
  std::string path;
};

}  // namespace

TEST_CASE(
    "kubeconfig: the current context's cluster, user and namespace, relative paths from the file's "
    "directory") {
  const Config c = ParseKubeconfig(kTwoContexts, "/home/me/.kube/config", "/home/me/.kube");
  CHECK(c.server == "https://dev.example:6443");
  CHECK(c.ca_file == "/home/me/.kube/certs/ca.crt");
  CHECK(c.ca_pem.empty());
  CHECK(c.token == "abc.def");
  CHECK(c.token_file.empty());
  CHECK(c.default_namespace == "team-a");
  CHECK_FALSE(c.insecure_skip_tls_verify);
}

TEST_CASE("kubeconfig: an explicit context, *-data fields are decoded into memory, not files") {
  const Config c = ParseKubeconfig(kTwoContexts, "/x", "/dir", "prod");
  CHECK(c.server == "https://prod.example:6443/");
  CHECK(c.ca_pem == "hello");
  CHECK(c.ca_file.empty());
  CHECK(c.client_cert_pem == "cert");
  CHECK(c.client_key_pem == "key");
  CHECK(c.client_cert_file.empty());
  CHECK(c.token.empty());
  CHECK(c.default_namespace == "default");
}

TEST_CASE(
    "kubeconfig: tokenFile, client certificate files, insecure-skip-tls-verify, anonymous user") {
  Config c = ParseKubeconfig(
      WithUser("    tokenFile: tok\n    client-certificate: /abs/c.pem\n    client-key: k.pem\n"),
      "/x", "/dir");
  CHECK(c.token_file == "/dir/tok");
  CHECK(c.client_cert_file == "/abs/c.pem");
  CHECK(c.client_key_file == "/dir/k.pem");

  c = ParseKubeconfig(
      WithCluster("    server: http://127.0.0.1:8080\n    insecure-skip-tls-verify: true\n"), "/x",
      "/dir");
  CHECK(c.insecure_skip_tls_verify);
  CHECK(c.server == "http://127.0.0.1:8080");
  CHECK(c.token.empty());
}

TEST_CASE("kubeconfig: bad files say what is wrong and where") {
  CHECK(ErrorOf(kTwoContexts, "foo") == "kubeconfig /x: context \"foo\" not found");
  CHECK(ErrorOf("clusters: []\n") ==
        "kubeconfig /x: no context given and current-context is not set");
  CHECK(ErrorOf("current-context: c\ncontexts: [{name: c, context: {cluster: nope}}]\n") ==
        "kubeconfig /x: cluster \"nope\" not found");
  CHECK(ErrorOf("current-context: c\nclusters: [{name: k, cluster: {server: 'https://k'}}]\n"
                "contexts: [{name: c, context: {cluster: k, user: ghost}}]\n") ==
        "kubeconfig /x: user \"ghost\" not found");
  CHECK(ErrorOf("current-context: c\ncontexts: [{name: c, context: {user: u}}]\n") ==
        "kubeconfig /x: context \"c\" names no cluster");
  CHECK(ErrorOf("current-context: c\ncontexts: {c: 1}\n") ==
        "kubeconfig /x: contexts is not a list");
  CHECK(ErrorOf(WithCluster("    certificate-authority: ca.crt\n")) ==
        "kubeconfig /x: cluster \"k\" has no server");
  CHECK(ErrorOf(WithCluster("    server: k8s.example:6443\n")) ==
        "kubeconfig /x: cluster \"k\": server \"k8s.example:6443\" is not an http(s) URL");
  CHECK(ErrorOf(WithCluster(
            "    server: https://k\n    certificate-authority-data: '!!notbase64'\n")) ==
        "kubeconfig /x: cluster \"k\": certificate-authority-data is not valid base64");
  CHECK(ErrorOf(WithCluster("    server: https://k\n    certificate-authority: a\n    "
                            "certificate-authority-data: aGVsbG8=\n")) ==
        "kubeconfig /x: cluster \"k\": certificate-authority and certificate-authority-data are "
        "both set");
  CHECK(ErrorOf(WithCluster("    server: https://k\n    certificate-authority: a\n    "
                            "insecure-skip-tls-verify: true\n")) ==
        "kubeconfig /x: cluster \"k\": insecure-skip-tls-verify cannot be combined with a "
        "certificate authority");
  CHECK(ErrorOf(WithCluster("    server: https://k\n    insecure-skip-tls-verify: maybe\n")) ==
        "kubeconfig /x: cluster \"k\": insecure-skip-tls-verify is not a boolean");
  CHECK(ErrorOf(WithUser("    exec: {command: aws}\n")) ==
        "kubeconfig /x: user \"u\": exec is not supported; use a token, tokenFile or client "
        "certificate");
  CHECK(ErrorOf(WithUser("    client-certificate: c.pem\n")) ==
        "kubeconfig /x: user \"u\": a client certificate needs both the certificate and the key");
  CHECK(ErrorOf(WithUser("    token: [a, b]\n")) ==
        "kubeconfig /x: user \"u\": token is not a string");
  CHECK(ErrorOf("- just\n- a list\n") ==
        "kubeconfig /x: not a kubeconfig (expected a mapping with clusters, contexts and users)");
  CHECK(ErrorOf("").find("not a kubeconfig") != std::string::npos);
  const std::string yaml_error = ErrorOf("current-context: [unclosed\n");
  CHECK(yaml_error.rfind("kubeconfig /x: not valid YAML: ", 0) == 0);
}

TEST_CASE("kubeconfig: LoadKubeconfig reads the file and resolves paths against its directory") {
  TempDir dir;
  dir.Write("config", WithUser("    tokenFile: token\n"));
  const Config c = LoadKubeconfig(dir.path + "/config");
  CHECK(c.server == "https://k:6443");
  CHECK(c.token_file == dir.path + "/token");
  CHECK_THROWS_WITH_AS(LoadKubeconfig(dir.path + "/missing"),
                       ("kubeconfig " + dir.path + "/missing: cannot be read").c_str(),
                       std::invalid_argument);
}

TEST_CASE(
    "in-cluster config: service host and port, token file (re-read later), CA and namespace") {
  TempDir dir;
  dir.Write("token", "t0ken\n");
  dir.Write("ca.crt", "-----BEGIN CERTIFICATE-----\n");
  dir.Write("namespace", "kubevirt\n");
  // The environment is InClusterConfig's input; no other thread runs in this
  // test case, so nothing reads it while it changes.
  // NOLINTBEGIN(concurrency-mt-unsafe)
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
  CHECK_THROWS_AS(InClusterConfig(dir.path), std::invalid_argument);

  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  Config c = InClusterConfig(dir.path);
  CHECK(c.server == "https://10.96.0.1:443");
  CHECK(c.token_file == dir.path + "/token");
  CHECK(c.token.empty());
  CHECK(c.ca_file == dir.path + "/ca.crt");
  CHECK(c.default_namespace == "kubevirt");

  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  CHECK(InClusterConfig(dir.path).server == "https://[fd00::1]:443");

  std::filesystem::remove(dir.path + "/token");
  CHECK_THROWS_AS(InClusterConfig(dir.path), std::invalid_argument);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
  // NOLINTEND(concurrency-mt-unsafe)
}
