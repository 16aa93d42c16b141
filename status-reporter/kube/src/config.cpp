#include "gm/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace gm::kube {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return out.str();
}

std::string Trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

// Standard alphabet with padding, as kubeconfig *-data fields are written.
// Line breaks are skipped like Go's decoder does; anything else is an error.
std::optional<std::string> Base64Decode(const std::string& in) {
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  bool padding = false;
  for (char c : in) {
    if (c == '\r' || c == '\n') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    if (padding) return std::nullopt;  // data after padding
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else
      return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFFu));
    }
  }
  if (bits >= 6) return std::nullopt;  // a lone trailing character
  return out;
}

// Reads one kubeconfig: every error names the file and the entry at fault.
class KubeconfigReader {
 public:
  KubeconfigReader(const std::string& origin, std::string base_dir)
      : origin_(origin), base_dir_(std::move(base_dir)) {}

  [[noreturn]] void Fail(const std::string& what) const {
    throw std::invalid_argument("kubeconfig " + origin_ + ": " + what);
  }

  // The `field` map ("cluster", "context", "user") of the entry named `name`
  // in the list `section` ("clusters", ...).
  YAML::Node Entry(const YAML::Node& root, const char* section, const char* field,
                   const std::string& name) const {
    const std::string singular(field);
    const YAML::Node list = root[section];
    if (list && !list.IsNull() && !list.IsSequence()) Fail(std::string(section) + " is not a list");
    if (list && list.IsSequence()) {
      for (const auto& item : list) {
        if (!item.IsMap() || String(item, "name", section) != name) continue;
        const YAML::Node body = item[field];
        if (!body || body.IsNull()) return YAML::Node(YAML::NodeType::Map);
        // NOLINTNEXTLINE(performance-inefficient-string-concatenation): once, as it fails
        if (!body.IsMap()) Fail(singular + " \"" + name + "\" is not a mapping");
        return body;
      }
    }
    Fail(singular + " \"" + name + "\" not found");
  }

  std::string String(const YAML::Node& map, const char* key, const std::string& where) const {
    const YAML::Node v = map[key];
    if (!v || v.IsNull()) return "";
    if (!v.IsScalar()) Fail(where + ": " + key + " is not a string");
    return v.Scalar();
  }

  bool Bool(const YAML::Node& map, const char* key, const std::string& where) const {
    const YAML::Node v = map[key];
    if (!v || v.IsNull()) return false;
    try {
      return v.as<bool>();
    } catch (const YAML::Exception&) {
      Fail(where + ": " + key + " is not a boolean");
    }
  }

  std::string Data(const YAML::Node& map, const char* key, const std::string& where) const {
    const std::string encoded = String(map, key, where);
    if (encoded.empty()) return "";
    auto decoded = Base64Decode(encoded);
    if (!decoded || decoded->empty()) Fail(where + ": " + key + " is not valid base64");
    return *decoded;
  }

  std::string Path(const YAML::Node& map, const char* key, const std::string& where) const {
    std::string path = String(map, key, where);  // not const: returned as is, moved
    if (path.empty() || path.front() == '/') return path;
    return base_dir_.empty() ? path : base_dir_ + "/" + path;
  }

 private:
  const std::string& origin_;
  const std::string base_dir_;
};

}  // namespace

Config ParseKubeconfig(const std::string& text, const std::string& origin,
                       const std::string& base_dir, const std::string& context) {
  KubeconfigReader r(origin, base_dir);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    r.Fail(std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsMap())
    r.Fail("not a kubeconfig (expected a mapping with clusters, contexts and users)");

  const std::string context_name =
      context.empty() ? r.String(root, "current-context", "top level") : context;
  if (context_name.empty()) r.Fail("no context given and current-context is not set");
  const std::string ctx_where = "context \"" + context_name + "\"";
  const YAML::Node ctx = r.Entry(root, "contexts", "context", context_name);
  const std::string cluster_name = r.String(ctx, "cluster", ctx_where);
  if (cluster_name.empty()) r.Fail(ctx_where + " names no cluster");

  Config c;
  c.default_namespace = r.String(ctx, "namespace", ctx_where);
  if (c.default_namespace.empty()) c.default_namespace = "default";

  const std::string cl_where = "cluster \"" + cluster_name + "\"";
  const YAML::Node cluster = r.Entry(root, "clusters", "cluster", cluster_name);
  c.server = r.String(cluster, "server", cl_where);
  if (c.server.empty()) r.Fail(cl_where + " has no server");
  if (c.server.rfind("https://", 0) != 0 && c.server.rfind("http://", 0) != 0) {
    r.Fail(cl_where + ": server \"" + c.server + "\" is not an http(s) URL");
  }
  c.ca_file = r.Path(cluster, "certificate-authority", cl_where);
  c.ca_pem = r.Data(cluster, "certificate-authority-data", cl_where);
  c.insecure_skip_tls_verify = r.Bool(cluster, "insecure-skip-tls-verify", cl_where);
  // The combinations client-go's validation refuses, refused here too.
  if (!c.ca_file.empty() && !c.ca_pem.empty()) {
    r.Fail(cl_where + ": certificate-authority and certificate-authority-data are both set");
  }
  if (c.insecure_skip_tls_verify && (!c.ca_file.empty() || !c.ca_pem.empty())) {
    r.Fail(cl_where + ": insecure-skip-tls-verify cannot be combined with a certificate authority");
  }

  const std::string user_name = r.String(ctx, "user", ctx_where);
  if (user_name.empty()) return c;  // anonymous
  const std::string u_where = "user \"" + user_name + "\"";
  const YAML::Node user = r.Entry(root, "users", "user", user_name);
  for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
    if (user[unsupported] && !user[unsupported].IsNull()) {
      r.Fail(u_where + ": " + unsupported +
             " is not supported; use a token, tokenFile or client certificate");
    }
  }
  c.token = r.String(user, "token", u_where);
  c.token_file = r.Path(user, "tokenFile", u_where);
  c.client_cert_file = r.Path(user, "client-certificate", u_where);
  c.client_cert_pem = r.Data(user, "client-certificate-data", u_where);
  c.client_key_file = r.Path(user, "client-key", u_where);
  c.client_key_pem = r.Data(user, "client-key-data", u_where);
  if (!c.client_cert_file.empty() && !c.client_cert_pem.empty()) {
    r.Fail(u_where + ": client-certificate and client-certificate-data are both set");
  }
  if (!c.client_key_file.empty() && !c.client_key_pem.empty()) {
    r.Fail(u_where + ": client-key and client-key-data are both set");
  }
  const bool has_cert = !c.client_cert_file.empty() || !c.client_cert_pem.empty();
  const bool has_key = !c.client_key_file.empty() || !c.client_key_pem.empty();
  if (has_cert != has_key)
    r.Fail(u_where + ": a client certificate needs both the certificate and the key");
  return c;
}

Config LoadKubeconfig(const std::string& path, const std::string& context) {
  auto text = ReadFile(path);
  if (!text) throw std::invalid_argument("kubeconfig " + path + ": cannot be read");
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  return ParseKubeconfig(*text, path, dir, context);
}

Config InClusterConfig(const std::string& dir) {
  // Read at start-up; nothing in the process calls setenv.
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");  // NOLINT(concurrency-mt-unsafe)
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");  // NOLINT(concurrency-mt-unsafe)
  if (!host || !*host || !port || !*port) {
    throw std::invalid_argument(
        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be "
        "set");
  }
  Config c;
  const std::string h(host);
  // An IPv6 address needs brackets in a URL.
  c.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  c.token_file = dir + "/token";
  c.ca_file = dir + "/ca.crt";
  auto token = ReadFile(c.token_file);
  if (!token || Trim(*token).empty()) {
    throw std::invalid_argument("in-cluster config: cannot read the service account token " +
                                c.token_file);
  }
  if (!ReadFile(c.ca_file))
    throw std::invalid_argument("in-cluster config: cannot read " + c.ca_file);
  auto ns = ReadFile(dir + "/namespace");
  c.default_namespace = ns && !Trim(*ns).empty() ? Trim(*ns) : "default";
  return c;
}

}  // namespace gm::kube
