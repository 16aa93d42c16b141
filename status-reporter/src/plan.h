#pragma once
// What must be written so the launcher pod and the VMI carry a report's ratios.
// Pure: compares with the cached facts and returns merge patches, or nothing
// when everything already says so (writes are idempotent).

#include <nlohmann/json.hpp>
#include <optional>

#include "facts.h"
#include "gm/report.h"

namespace gm::reporter {

/// Where the VMI's ratios go: the VEP 156 status fields, or annotations when
/// the VMI CRD prunes those fields; kUnknown until the first status write
/// answers, kOff when the ratio feature is turned off (nothing is written).
enum class VmiRatioMode { kUnknown, kStatus, kAnnotations, kOff };
const char* VmiRatioModeName(VmiRatioMode m);

/// Merge patch for the pod's ratio annotations. A ratio the report lacks
/// removes its annotation: a value that is no longer true disappears.
std::optional<nlohmann::json> PodPatch(const PodFacts& pod, const Report& r);

/// Merge patch for the VMI's status subresource (kStatus mode).
std::optional<nlohmann::json> VmiStatusPatch(const VmiFacts& vmi, const Report& r);

/// Merge patch for the VMI's annotations (kAnnotations mode).
std::optional<nlohmann::json> VmiAnnotationPatch(const VmiFacts& vmi, const Report& r);

/// Ratios as written to status: rounded to three decimals, so that a re-read
/// value compares equal and no write repeats.
std::optional<double> RoundedRatio(const std::optional<double>& ratio);

}  // namespace gm::reporter
