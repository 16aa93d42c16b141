#include "kube_adapters.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "gm/kube/backoff.h"
#include "gm/kube/errors.h"
#include "gm/kube/paths.h"
#include "gm/logging.h"

namespace gm::reporter {

using nlohmann::json;

WriteResult Patch(kube::Client& client, const std::string& path, const json& patch,
                  const kube::Query& query) {
  try {
    return {200, "", client.Patch(path, patch, kube::kMergePatch, query)};
  } catch (const kube::ApiError& e) {
    return {e.code(), e.message(), {}};
  }
}

WriteResult KubeWriter::PatchPod(const std::string& ns, const std::string& name,
                                 const json& patch) {
  return Patch(c_, kube::ObjectPath("v1", "pods", ns, name), patch);
}

WriteResult KubeWriter::PatchVmiStatus(const std::string& ns, const std::string& name,
                                       const json& patch) {
  return Patch(c_,
               kube::ObjectPath("kubevirt.io/v1", "virtualmachineinstances", ns, name, "status"),
               patch, {{"fieldValidation", "Strict"}});
}

WriteResult KubeWriter::PatchVmi(const std::string& ns, const std::string& name,
                                 const json& patch) {
  return Patch(c_, kube::ObjectPath("kubevirt.io/v1", "virtualmachineinstances", ns, name), patch);
}

ReviewResult KubeReviewer::Review(const std::string& token) {
  kube::RequestSpec spec;
  spec.verb = "POST";
  spec.path = "/apis/authentication.k8s.io/v1/tokenreviews";
  spec.body = TokenReviewRequest(token, audience_).dump();
  spec.timeout = std::chrono::seconds(5);  // the sidecar waits on this answer
  try {
    return ParseTokenReview(json::parse(c_.Request(spec).body));
  } catch (const kube::ApiError& e) {
    return {true, false, {}, e.what()};
  } catch (const json::exception& e) {
    return {true, false, {}, std::string("bad TokenReview response: ") + e.what()};
  }
}

std::optional<json> KubeLookup::Vmi(const std::string& ns, const std::string& name,
                                    Deadline deadline) {
  return Get(kube::ObjectPath("kubevirt.io/v1", "virtualmachineinstances", ns, name), deadline);
}

std::optional<json> KubeLookup::KubeVirts(Deadline deadline) {
  return Get(kube::CollectionPath("kubevirt.io/v1", "kubevirts"), deadline);
}

std::optional<json> KubeLookup::Get(const std::string& path, Deadline deadline) {
  using std::chrono::milliseconds;
  const auto left =
      std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left < milliseconds(50))
    throw LookupFailed("GET " + path + ": no time left before the webhook's deadline");
  kube::RequestSpec spec;
  spec.path = path;
  spec.timeout = std::min<milliseconds>(left, std::chrono::seconds(2));
  spec.retry = false;
  try {
    json body = json::parse(c_.Request(spec).body);
    if (!body.is_object()) throw LookupFailed("GET " + path + ": the answer is not an object");
    return body;
  } catch (const kube::NotFound&) {
    return std::nullopt;
  } catch (const LookupFailed&) {
    throw;
  } catch (const std::exception& e) {
    throw LookupFailed("GET " + path + ": " + e.what());
  }
}

SidecarSupport::SidecarSupport(kube::Client& c, const std::string& mode, ReporterMetrics& m)
    : c_(c), m_(m), by_version_(mode == "auto") {
  if (!by_version_)
    Set(mode == "true" ? NativeSidecars::kYes : NativeSidecars::kNo, "--native-sidecars=" + mode);
}

void SidecarSupport::Run(const std::atomic<bool>& stop) {
  using std::chrono::milliseconds;
  constexpr milliseconds kPeriod = std::chrono::minutes(10);
  constexpr milliseconds kFirstBackoff = std::chrono::seconds(5);
  if (!by_version_) return;
  // Waits in [2.5 s, 5 s) after the first failure, doubling up to [period/2, period).
  kube::Backoff backoff(kFirstBackoff / 2, kPeriod / 2);
  bool failing = false;
  while (!stop) {
    kube::Backoff::Duration wait = kPeriod;
    try {
      kube::RequestSpec spec;
      spec.path = "/version";
      spec.timeout = std::chrono::seconds(5);
      spec.retry = false;
      spec.stop = &stop;
      const ServerVersion v =
          ParseServerVersion(json::parse(c_.Request(spec).body, nullptr, false));
      if (failing) spdlog::info("the API server's /version answers again");
      failing = false;
      backoff.Reset();
      Set(NativeSidecarsByVersion(v), "the API server is " + EscapeForLog(v.git_version));
    } catch (const kube::Cancelled&) {
      return;
    } catch (const std::exception& e) {
      if (!failing) {
        spdlog::warn(
            "cannot read the API server's /version, retrying with backoff (the webhook {}): {}",
            Get() == NativeSidecars::kYes ? "keeps injecting" : "injects nothing meanwhile",
            EscapeForLog(e.what()));
      }
      failing = true;
      wait = backoff.Next();
    }
    if (!kube::SleepUnlessStopped(wait, stop)) return;
  }
}

void SidecarSupport::Set(NativeSidecars now, const std::string& source) {
  m_.native_sidecars.Set(now == NativeSidecars::kYes ? 1 : 0);
  if (state_.exchange(now) == now) return;
  if (now == NativeSidecars::kYes) {
    spdlog::info("{}: it has native sidecars; the webhook injects guest-exporter", source);
  } else {
    spdlog::warn(
        "{}: it has no native sidecars (SidecarContainers, on by default from Kubernetes 1.29); "
        "the "
        "webhook admits launcher pods unchanged (decision no_native_sidecars)",
        source);
  }
}

}  // namespace gm::reporter
