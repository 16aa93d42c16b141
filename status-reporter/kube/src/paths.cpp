#include "gm/kube/paths.h"

#include <stdexcept>

namespace gm::kube {
namespace {

// Object names are DNS subdomains or path segments; anything that would
// change the URL's structure is refused rather than escaped.
const std::string& Segment(const std::string& s, const char* what) {
  if (s.empty() || s == "." || s == ".." || s.find_first_of("/?#% ") != std::string::npos) {
    throw std::invalid_argument(std::string("invalid ") + what + " \"" + s + "\" in an API path");
  }
  return s;
}

}  // namespace

std::string ApiPrefix(const std::string& api_version) {
  const auto slash = api_version.find('/');
  if (slash == std::string::npos) return "/api/" + Segment(api_version, "API version");
  return "/apis/" + Segment(api_version.substr(0, slash), "API group") + "/" +
         Segment(api_version.substr(slash + 1), "API version");
}

std::string CollectionPath(const std::string& api_version, const std::string& resource,
                           const std::string& ns) {
  std::string path = ApiPrefix(api_version);
  if (!ns.empty()) path += "/namespaces/" + Segment(ns, "namespace");
  return path + "/" + Segment(resource, "resource");
}

std::string ObjectPath(const std::string& api_version, const std::string& resource,
                       const std::string& ns, const std::string& name,
                       const std::string& subresource) {
  std::string path = CollectionPath(api_version, resource, ns) + "/" + Segment(name, "name");
  if (!subresource.empty()) path += "/" + Segment(subresource, "subresource");
  return path;
}

std::string ObjectKey(const nlohmann::json& object) {
  const auto meta = object.find("metadata");
  if (object.is_object() && meta != object.end() && meta->is_object()) {
    const auto name = meta->find("name");
    if (name != meta->end() && name->is_string() && !name->get_ref<const std::string&>().empty()) {
      const auto ns = meta->find("namespace");
      if (ns != meta->end() && ns->is_string() && !ns->get_ref<const std::string&>().empty()) {
        return ns->get<std::string>() + "/" + name->get<std::string>();
      }
      return name->get<std::string>();
    }
  }
  throw std::invalid_argument("object without metadata.name");
}

}  // namespace gm::kube
