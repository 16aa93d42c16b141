#include "identity.h"

#include <doctest/doctest.h>

using namespace gm::exporter;

TEST_CASE("domain names split on the first underscore") {
  CHECK(ParseDomainName("default_fedora") == Identity{"default", "fedora"});
  // VMI names cannot hold '_' today, but the split must not depend on it.
  CHECK(ParseDomainName("ns_vm_with_underscores") == Identity{"ns", "vm_with_underscores"});
  CHECK_FALSE(ParseDomainName("plain"));
  CHECK_FALSE(ParseDomainName("_name"));
  CHECK_FALSE(ParseDomainName("ns_"));
  CHECK_FALSE(ParseDomainName(""));
}

TEST_CASE("identity: configured beats parsed beats the bare domain name") {
  const Identity configured{"team-a", "vm-1"};
  CHECK(ResolveIdentity("default_other", configured) == configured);
  CHECK(ResolveIdentity("default_other", std::nullopt) == Identity{"default", "other"});
  CHECK(ResolveIdentity("webserver", std::nullopt) == Identity{"", "webserver"});
}
