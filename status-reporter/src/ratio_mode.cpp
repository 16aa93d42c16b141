#include "ratio_mode.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace gm::reporter {

RatioModeProbe::RatioModeProbe(Clock::duration reprobe, bool enabled,
                               std::function<void(VmiRatioMode)> on_change)
    : reprobe_(reprobe),
      on_change_(std::move(on_change)),
      mode_(enabled ? VmiRatioMode::kUnknown : VmiRatioMode::kOff) {
  if (on_change_) on_change_(mode_);
}

VmiRatioMode RatioModeProbe::mode() const {
  std::lock_guard lock(mu_);
  return mode_;
}

bool RatioModeProbe::TryStatus(Clock::time_point now) {
  std::lock_guard lock(mu_);
  switch (mode_) {
    case VmiRatioMode::kOff:
      return false;
    case VmiRatioMode::kUnknown:
    case VmiRatioMode::kStatus:
      return true;
    case VmiRatioMode::kAnnotations:
      break;
  }
  if (!probe_now_ && now - last_probe_ < reprobe_) return false;
  // One write probes; the others keep writing annotations until it answers.
  probe_now_ = false;
  last_probe_ = now;
  return true;
}

void RatioModeProbe::Pruned(Clock::time_point now) {
  std::unique_lock lock(mu_);
  if (mode_ == VmiRatioMode::kOff) return;
  last_probe_ = now;
  Set(VmiRatioMode::kAnnotations, lock);
}

void RatioModeProbe::Kept() {
  std::unique_lock lock(mu_);
  if (mode_ == VmiRatioMode::kOff) return;
  Set(VmiRatioMode::kStatus, lock);
}

void RatioModeProbe::SchemaChanged() {
  std::lock_guard lock(mu_);
  probe_now_ = true;
}

void RatioModeProbe::Set(VmiRatioMode m, std::unique_lock<std::mutex>& lock) {
  const VmiRatioMode was = mode_;
  mode_ = m;
  lock.unlock();
  if (was == m) return;
  spdlog::info("VMI ratios are now written as {}", VmiRatioModeName(m));
  if (on_change_) on_change_(m);
}

CrdFacts CrdFromJson(const nlohmann::json& crd) {
  const auto meta = crd.is_object() ? crd.find("metadata") : crd.end();
  if (!crd.is_object() || meta == crd.end() || !meta->is_object() || !meta->contains("name") ||
      !(*meta)["name"].is_string()) {
    throw std::invalid_argument("the CustomResourceDefinition has no metadata.name");
  }
  CrdFacts f;
  f.name = (*meta)["name"].get<std::string>();
  if (const auto g = meta->find("generation"); g != meta->end() && g->is_number_integer())
    f.generation = g->get<int64_t>();
  if (const auto rv = meta->find("resourceVersion"); rv != meta->end() && rv->is_string())
    f.resource_version = rv->get<std::string>();
  return f;
}

bool CrdChangeDetector::Changed(const CrdFacts& crd) {
  std::lock_guard lock(mu_);
  const bool first = !seen_;
  const bool changed = crd.generation > 0 || last_.generation > 0
                           ? crd.generation != last_.generation
                           : crd.resource_version != last_.resource_version;
  seen_ = true;
  last_ = crd;
  return !first && changed;
}

void CrdChangeDetector::Gone() {
  std::lock_guard lock(mu_);
  last_ = CrdFacts{};
}

}  // namespace gm::reporter
