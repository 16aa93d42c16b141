// AdmissionReviews come from the API server, but carry whatever pod a user
// submitted: the webhook must answer every body (allowed, 400 or a patch)
// without crashing, and a patch it returns must be one the API server
// applies and then accepts: a JSON array of ops that applies to the pod
// (nlohmann's json::patch, RFC 6902), adding no volume or container name the
// pod already has (validation.go refuses duplicates), with every mount of the
// sidecar naming a volume. Where the server has no native sidecars it must
// not patch at all.
#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "admission.h"
#include "gm/quantity.h"

namespace {

using nlohmann::json;

// Lookups answer at once, the way a healthy API server would: the VMI of a
// 2-vCPU VM with an IOThread pool and a KubeVirt CR, so that every pod the
// fuzzer makes up goes through gm::DeriveLauncherShape. The fuzzer explores
// the webhook, not the network.
class FixedLookups final : public gm::reporter::ClusterLookup {
 public:
  std::optional<json> Vmi(const std::string&, const std::string&, gm::reporter::Deadline) override {
    return json::parse(R"({"spec":{"domain":{"cpu":{"cores":2},"memory":{"guest":"2Gi"},
        "ioThreadsPolicy":"supplementalPool","ioThreads":{"supplementalPoolThreadCount":1}}}})");
  }
  std::optional<json> KubeVirts(gm::reporter::Deadline) override {
    return json::parse(R"({"items":[{"status":{"observedKubeVirtVersion":"v1.7.0"},
        "spec":{"configuration":{"developerConfiguration":{"memoryOvercommit":150}}}}]})");
  }
};

std::string Base64Decode(const std::string& in) {
  if (in.size() % 4 != 0) std::abort();
  std::string out(in.size() / 4 * 3 + 1, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) std::abort();
  out.resize(static_cast<size_t>(n));
  size_t pad = 0;
  while (pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  out.resize(out.size() - pad);
  return out;
}

const json& At(const json& j, const char* key) {
  static const json kNull;
  return j.is_object() && j.contains(key) ? j[key] : kNull;
}

// name -> how many of `lists` (arrays of objects under spec) carry it.
std::map<std::string, int> Names(const json& pod, std::initializer_list<const char*> lists) {
  std::map<std::string, int> out;
  for (const char* list : lists) {
    const json& items = At(At(pod, "spec"), list);
    if (!items.is_array()) continue;
    for (const auto& item : items) {
      const json& name = At(item, "name");
      if (name.is_string()) ++out[name.get<std::string>()];
    }
  }
  return out;
}

// What the patch added is new: no name it adds was in the pod, none twice.
void CheckNoNewDuplicates(const std::map<std::string, int>& before,
                          const std::map<std::string, int>& after) {
  for (const auto& [name, count] : after) {
    const auto it = before.find(name);
    const int had = it == before.end() ? 0 : it->second;
    if (count > had && (had != 0 || count - had > 1)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const auto review = json::parse(body, nullptr, /*allow_exceptions=*/false);
  gm::reporter::InjectionConfig config;
  config.image = "registry.example/kubevirt-guest-metrics:0.1.0";
  config.reporter_url = "https://status-reporter.kubevirt-guest-metrics.svc:8443/v1/reports";
  FixedLookups lookups;
  // A server with native sidecars, unless the body starts with a space (JSON
  // allows it; the seeds do not): then one without.
  const auto native = size > 0 && data[0] == ' ' ? gm::reporter::NativeSidecars::kNo
                                                 : gm::reporter::NativeSidecars::kYes;
  const auto result = gm::reporter::Admit(
      review, config, lookups, std::chrono::steady_clock::now() + std::chrono::seconds(1), native);
  if (result.http_status != 200 && result.http_status != 400) std::abort();
  if (result.decision.empty()) std::abort();
  if (result.http_status != 200) return 0;
  const auto& response = result.body.at("response");
  if (!response.contains("patch")) return 0;
  if (native != gm::reporter::NativeSidecars::kYes) std::abort();
  if (!response.at("patch").is_string() || response.value("patchType", "") != "JSONPatch")
    std::abort();

  const json patch =
      json::parse(Base64Decode(response.at("patch").get<std::string>()), nullptr, false);
  if (!patch.is_array()) std::abort();
  const json& pod = review.at("request").at("object");
  json out;
  try {
    out = pod.patch(patch);
  } catch (const json::exception&) {
    std::abort();  // a patch that does not apply: the API server would refuse it
  }
  CheckNoNewDuplicates(Names(pod, {"volumes"}), Names(out, {"volumes"}));
  CheckNoNewDuplicates(Names(pod, {"containers", "initContainers", "ephemeralContainers"}),
                       Names(out, {"containers", "initContainers", "ephemeralContainers"}));
  // The sidecar is the last init container; each of its mounts has a volume.
  const auto volumes = Names(out, {"volumes"});
  const json& sidecar = out.at("spec").at("initContainers").back();
  if (sidecar.at("name") != gm::reporter::kSidecarName) std::abort();
  for (const auto& mount : sidecar.at("volumeMounts")) {
    if (!volumes.count(mount.at("name").get<std::string>())) std::abort();
  }
  for (const char* probe : {"readinessProbe", "livenessProbe", "startupProbe"}) {
    if (sidecar.contains(probe)) std::abort();
  }
  // The guest's shares, whatever the pod says: quantities the sidecar takes
  // (its flags refuse anything else, and it would not start), above zero.
  for (const auto& e : sidecar.at("env")) {
    const std::string name = e.at("name").get<std::string>();
    if (name != "GUEST_EXPORTER_CPU_REQUEST" && name != "GUEST_EXPORTER_VMI_MEMORY_REQUEST")
      continue;
    std::string error;
    const auto v = gm::ParseQuantity(e.at("value").get<std::string>(), error);
    if (!v || !(*v > 0)) std::abort();
  }
  return 0;
}
