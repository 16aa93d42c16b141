#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gm {

/// Parses a Kubernetes resource quantity ("200m", "2", "1.5", "4Gi", "512Mi",
/// "1e3", "100k") into base units (cores or bytes). Returns nullopt with
/// `error` set for anything the Kubernetes quantity grammar does not accept,
/// and for negative values: a request is never negative.
std::optional<double> ParseQuantity(std::string_view text, std::string& error);

}  // namespace gm
