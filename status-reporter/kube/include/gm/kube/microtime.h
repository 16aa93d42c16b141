#pragma once
// metav1.MicroTime: the Lease's acquireTime and renewTime.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace gm::kube {

/// RFC 3339 in UTC with exactly six fractional digits, as the API server
/// writes MicroTime: "2024-05-01T12:00:00.123456Z".
std::string FormatMicroTime(std::chrono::system_clock::time_point t);

/// Parses RFC 3339: "Z" or a ±hh:mm offset, a fraction of up to nine digits
/// or none. nullopt for anything malformed or out of range.
std::optional<std::chrono::system_clock::time_point> ParseMicroTime(std::string_view text);

}  // namespace gm::kube
