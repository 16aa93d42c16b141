#pragma once
// What the reporter knows about injection, cluster-wide, for the VMIs' report
// states (report_state.h): whether its MutatingWebhookConfiguration is
// installed and since when, and which namespaces opted out. Read every few
// minutes: a report state may lag a change by that much, never a VM.

#include <atomic>
#include <functional>
#include <mutex>
#include <string>

#include "gm/kube/client.h"
#include "report_state.h"

namespace gm::reporter {

class InjectionWatch {
 public:
  /// `webhook_configuration`: the MutatingWebhookConfiguration's name; empty
  /// means injection is on and its start unknown (no pod "predates" it).
  /// `native_sidecars`: whether the webhook injects at all now.
  InjectionWatch(kube::Client& client, std::string webhook_configuration,
                 std::function<bool()> native_sidecars);
  InjectionFacts Get() const;
  /// Reads until `stop`; run it on its own thread.
  void Run(const std::atomic<bool>& stop);

 private:
  void ReadOnce(const std::atomic<bool>& stop);

  kube::Client& client_;
  const std::string webhook_configuration_;
  std::function<bool()> native_sidecars_;
  mutable std::mutex mu_;
  InjectionFacts facts_;
};

}  // namespace gm::reporter
