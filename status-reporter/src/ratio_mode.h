#pragma once
// Where the VMI ratios go (VEP 156's status fields, or annotations where the
// VMI CRD prunes them), and when the reporter finds that out again: at the
// first write, whenever the VMI CRD changes (watched), and every `reprobe`
// period as a fallback for a watch that is forbidden or missed a change.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "plan.h"

namespace gm::reporter {

class RatioModeProbe {
 public:
  using Clock = std::chrono::steady_clock;
  /// `enabled` false: the ratio feature is off, the mode is kOff for good.
  /// `on_change` (may be empty) is called with each new mode, under no lock
  /// of the caller's.
  RatioModeProbe(Clock::duration reprobe, bool enabled,
                 std::function<void(VmiRatioMode)> on_change = {});

  VmiRatioMode mode() const;
  /// Whether the next VMI write tries the status fields: until the first
  /// answer and in status mode always; in annotation mode once per reprobe
  /// period, or once after SchemaChanged. Never when off.
  bool TryStatus(Clock::time_point now);
  /// A status write was pruned (strict 422, or a 200 that kept nothing).
  void Pruned(Clock::time_point now);
  /// A status write kept the fields, or the VMI already holds them.
  void Kept();
  /// The VMI CRD changed: the next write tries the status fields again.
  void SchemaChanged();

 private:
  void Set(VmiRatioMode m, std::unique_lock<std::mutex>& lock);

  const Clock::duration reprobe_;
  const std::function<void(VmiRatioMode)> on_change_;
  mutable std::mutex mu_;
  VmiRatioMode mode_;
  bool probe_now_ = false;
  Clock::time_point last_probe_{};
};

/// The name of KubeVirt's VMI CustomResourceDefinition.
inline constexpr const char* kVmiCrdName = "virtualmachineinstances.kubevirt.io";

/// What the reporter keeps of a CustomResourceDefinition.
struct CrdFacts {
  std::string name;
  int64_t generation = 0;  // metadata.generation: bumped by every spec (schema) change
  std::string resource_version;
};
/// Throws std::invalid_argument when metadata.name is missing.
CrdFacts CrdFromJson(const nlohmann::json& crd);

/// Says when the watched CRD's spec may have changed since it was last seen:
/// a newer generation, or — where the server gives none — another
/// resourceVersion. The first sighting is no change (the first write probes
/// anyway), nor is a relist that brings the same object again.
class CrdChangeDetector {
 public:
  bool Changed(const CrdFacts& crd);
  /// The CRD was deleted; it coming back is a change.
  void Gone();

 private:
  std::mutex mu_;
  bool seen_ = false;
  CrdFacts last_;
};

}  // namespace gm::reporter
