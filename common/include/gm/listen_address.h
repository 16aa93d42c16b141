#pragma once
// The one parser for listen addresses ("host:port") of both binaries.

#include <cstdint>
#include <string>

namespace gm {

/// A parsed listen address. An empty host means every interface: listeners
/// bind the IPv6 wildcard with IPV6_V6ONLY off (dual-stack), and fall back
/// to 0.0.0.0 on a host without IPv6.
struct ListenAddress {
  std::string host;  // "", an IPv4 literal, an IPv6 literal without brackets, or a name
  uint16_t port = 0;
  bool operator==(const ListenAddress& o) const { return host == o.host && port == o.port; }
};

/// Parses ":port", "host:port", "[v6]:port". Port 0 asks for any free port.
/// Throws std::invalid_argument saying what is wrong: no port, a port that is
/// not a number in 0..65535, an IPv6 literal without brackets, an unclosed
/// bracket.
ListenAddress ParseListenAddress(const std::string& address);

/// "host:port" again, with brackets around an IPv6 literal; "[::]:port" for
/// the wildcard. For log lines.
std::string FormatListenAddress(const ListenAddress& address);

}  // namespace gm
