// AdmissionReviews come from the API server, but carry whatever pod a user
// submitted: the webhook must answer every body (allowed, 400 or a patch)
// without crashing, and a patch it returns must be a JSON array of ops.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "admission.h"

namespace {

// Lookups answer at once, the way a healthy API server without a KubeVirt CR
// would: the fuzzer explores the webhook, not the network.
class NoLookups final : public gm::reporter::ClusterLookup {
 public:
  std::optional<std::string> VmiMemoryRequest(const std::string&, const std::string&, gm::reporter::Deadline) override {
    return std::nullopt;
  }
  std::optional<std::string> ClusterMemoryOvercommit(gm::reporter::Deadline) override { return std::nullopt; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const auto review = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  gm::reporter::InjectionConfig config;
  config.image = "registry.example/kubevirt-guest-metrics:0.1.0";
  config.reporter_url = "https://status-reporter.kubevirt-guest-metrics.svc:8443/v1/reports";
  NoLookups lookups;
  const auto result = gm::reporter::Admit(review, config, lookups,
                                          std::chrono::steady_clock::now() + std::chrono::seconds(1));
  if (result.http_status != 200 && result.http_status != 400) std::abort();
  if (result.decision.empty()) std::abort();
  if (result.http_status == 200) {
    const auto& response = result.body.at("response");
    if (response.contains("patch")) {
      // The patch travels base64-encoded; it must at least be a string.
      if (!response.at("patch").is_string()) std::abort();
    }
  }
  return 0;
}
