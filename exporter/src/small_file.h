#pragma once
// Reading a small file whole (a token, a CA bundle) with read(2): no
// std::ifstream, whose first use initialises libstdc++'s locales, ~0.5 MiB of
// resident pages in every sidecar (docs/benchmarks.md).

#include <cstddef>
#include <string>

namespace gm::exporter {

/// Reads `fd` to its end into `out`. False, with `error` set (errno text, or
/// "larger than N bytes"), when it cannot be read or holds more than `max_bytes`.
bool ReadBounded(int fd, size_t max_bytes, std::string& out, std::string& error);

/// ReadBounded on the file at `path`.
bool ReadSmallFile(const std::string& path, size_t max_bytes, std::string& out, std::string& error);

}  // namespace gm::exporter
