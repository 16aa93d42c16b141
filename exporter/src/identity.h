#pragma once
// Which VMI a libvirt domain belongs to.

#include <optional>
#include <string>
#include <string_view>

namespace gm::exporter {

struct Identity {
  std::string namespace_;  // Kubernetes namespace ("" on a plain libvirt host)
  std::string name;        // VMI name (the domain name on a plain libvirt host)
  bool operator==(const Identity& o) const { return namespace_ == o.namespace_ && name == o.name; }
};

/// KubeVirt names domains `<namespace>_<vmi-name>`. Namespaces are DNS labels
/// and never hold '_', so the first '_' splits them. Returns nullopt when the
/// name does not have that form.
std::optional<Identity> ParseDomainName(std::string_view domain_name);

/// The identity to publish for a domain: `configured` when the injector set
/// namespace and name (a launcher pod holds exactly one domain), else the
/// parsed domain name, else {"", domain name} for plain libvirt hosts.
Identity ResolveIdentity(std::string_view domain_name, const std::optional<Identity>& configured);

}  // namespace gm::exporter
