#include "identity.h"

namespace gm::exporter {

std::optional<Identity> ParseDomainName(std::string_view domain_name) {
  const auto sep = domain_name.find('_');
  if (sep == std::string_view::npos || sep == 0 || sep + 1 == domain_name.size())
    return std::nullopt;
  return Identity{std::string(domain_name.substr(0, sep)),
                  std::string(domain_name.substr(sep + 1))};
}

Identity ResolveIdentity(std::string_view domain_name, const std::optional<Identity>& configured) {
  if (configured) return *configured;
  if (auto parsed = ParseDomainName(domain_name)) return *parsed;
  return Identity{"", std::string(domain_name)};
}

}  // namespace gm::exporter
