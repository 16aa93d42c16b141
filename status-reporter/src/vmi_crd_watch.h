#pragma once
// Watches KubeVirt's VMI CustomResourceDefinition (one object, by a
// metadata.name field selector) and calls back when its spec changes, so the
// reporter re-probes where VMI ratios go within seconds of a KubeVirt upgrade
// instead of at the next periodic re-probe. Without RBAC on the CRD (or
// without the CRD) it says so once and tries again every 10 minutes; the
// periodic re-probe covers that time.

#include <atomic>
#include <functional>

#include "gm/kube/client.h"

namespace gm::reporter {

class VmiCrdWatch {
 public:
  VmiCrdWatch(kube::Client& client, std::function<void()> on_change)
      : client_(client), on_change_(std::move(on_change)) {}
  /// Runs until `stop` is raised; run it on its own thread.
  void Run(const std::atomic<bool>& stop);

 private:
  kube::Client& client_;
  const std::function<void()> on_change_;
};

}  // namespace gm::reporter
