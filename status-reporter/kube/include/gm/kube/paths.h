#pragma once
// REST paths of Kubernetes resources, and the keys informers file objects under.

#include <nlohmann/json.hpp>
#include <string>

namespace gm::kube {

/// "/api/v1" for the core group ("v1"), "/apis/GROUP/VERSION" otherwise
/// (e.g. "kubevirt.io/v1").
std::string ApiPrefix(const std::string& api_version);

/// The collection of `resource` (plural, e.g. "pods") in `ns`, or in all
/// namespaces when `ns` is empty. Throws std::invalid_argument on a name
/// that cannot be a path segment.
std::string CollectionPath(const std::string& api_version, const std::string& resource,
                           const std::string& ns = "");

/// One object, or its `subresource` (e.g. "status").
std::string ObjectPath(const std::string& api_version, const std::string& resource,
                       const std::string& ns, const std::string& name,
                       const std::string& subresource = "");

/// "namespace/name", or "name" for a cluster-scoped object (client-go's
/// MetaNamespaceKeyFunc). Throws std::invalid_argument without metadata.name.
std::string ObjectKey(const nlohmann::json& object);

}  // namespace gm::kube
