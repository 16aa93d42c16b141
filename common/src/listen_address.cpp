#include "gm/listen_address.h"

#include <stdexcept>

namespace gm {

ListenAddress ParseListenAddress(const std::string& address) {
  const auto fail = [&](const std::string& why) {
    return std::invalid_argument("listen address '" + address + "' " + why);
  };
  std::string host;
  std::string port_text;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string::npos) throw fail("has an unclosed '['");
    host = address.substr(1, close - 1);
    if (host.empty()) throw fail("has an empty IPv6 literal");
    if (close + 1 >= address.size() || address[close + 1] != ':')
      throw fail("has no ':port' after ']'");
    port_text = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) throw fail("has no ':port'");
    host = address.substr(0, colon);
    // "::1:80" is ambiguous; Go's net.SplitHostPort refuses it the same way.
    if (host.find(':') != std::string::npos)
      throw fail("has an IPv6 literal without brackets; write [addr]:port");
    port_text = address.substr(colon + 1);
  }
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos) {
    throw fail("has an invalid port '" + port_text + "'");
  }
  const unsigned long port = std::stoul(port_text);
  if (port > 65535) throw fail("has a port above 65535");
  return {host, static_cast<uint16_t>(port)};
}

std::string FormatListenAddress(const ListenAddress& a) {
  const std::string host = a.host.empty() ? "::" : a.host;
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(a.port);
}

}  // namespace gm
