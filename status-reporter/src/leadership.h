#pragma once
// What this replica does when it starts and stops leading: the leader metric,
// the label on its own pod that the chart's report/webhook Service selects,
// and, on stopping, waiting for the writes in flight before the Lease is
// handed on.

#include <string>

namespace prometheus {
class Gauge;
}

namespace gm::reporter {

class ObjectWriter;
class WriteGate;

/// The leader's pod carries this label ("true"); the chart's HTTPS Service selects it.
inline constexpr const char* kLeaderLabel = "guestmetrics.kubevirt.io/leader";

class Leadership {
 public:
  /// `pod_namespace`/`pod_name`: this replica's own pod (POD_NAMESPACE, POD_NAME).
  Leadership(ObjectWriter& writer, std::string pod_namespace, std::string pod_name,
             prometheus::Gauge& leader_metric, WriteGate& gate)
      : writer_(writer),
        namespace_(std::move(pod_namespace)),
        pod_(std::move(pod_name)),
        leader_metric_(leader_metric),
        gate_(gate) {}

  /// At start, before the election: a restarted leader's pod must not keep
  /// attracting reports it no longer serves.
  void Unlabel() { Label(false); }
  /// The elector's on_started_leading.
  void Started();
  /// The elector's on_stopped_leading; returns once no write is in flight
  /// (the elector releases the Lease only after it returns).
  void Stopped();

 private:
  // Outside a cluster there is no such pod: a failed label write is logged
  // at debug level and changes nothing else.
  void Label(bool leading);

  ObjectWriter& writer_;
  const std::string namespace_;
  const std::string pod_;
  prometheus::Gauge& leader_metric_;
  WriteGate& gate_;
};

}  // namespace gm::reporter
