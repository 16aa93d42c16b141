#pragma once
// A FactsSource over two maps: the informers' caches as the unit tests set them.

#include <map>
#include <optional>
#include <string>

#include "facts.h"

namespace gm::reporter::testing {

class MapFacts final : public FactsSource {
 public:
  std::map<std::string, PodFacts> pods;  // by "namespace/name"
  std::map<std::string, VmiFacts> vmis;  // by "namespace/name"
  std::optional<PodFacts> Pod(const std::string& key) const override { return Find(pods, key); }
  std::optional<VmiFacts> Vmi(const std::string& key) const override { return Find(vmis, key); }

 private:
  template <typename T>
  static std::optional<T> Find(const std::map<std::string, T>& m, const std::string& key) {
    const auto it = m.find(key);
    return it == m.end() ? std::nullopt : std::optional<T>(it->second);
  }
};

}  // namespace gm::reporter::testing
