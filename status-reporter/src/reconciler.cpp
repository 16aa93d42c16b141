#include "reconciler.h"

#include <spdlog/spdlog.h>

namespace gm::reporter {

using nlohmann::json;

bool IsUnknownFieldError(const WriteResult& r) {
  return r.code == 422 && r.message.find("unknown field") != std::string::npos;
}

namespace {

Outcome Classify(const WriteResult& r, const std::string& what) {
  if (r.ok()) return Outcome::kDone;
  if (r.code == 404) return Outcome::kDrop;  // gone meanwhile: its watch event will clean up
  if (r.code == 0 || r.code == 409 || r.code == 429 || r.code >= 500) {
    spdlog::debug("{}: HTTP {} ({}), will retry", what, r.code, r.message);
    return Outcome::kRetry;
  }
  spdlog::error("{}: HTTP {}: {}", what, r.code,
                r.message);  // our patch is wrong: retrying cannot help
  return Outcome::kDrop;
}

// The stored object still holds what the status patch set: the CRD kept it.
bool StatusKept(const json& obj, const json& patch) {
  const json* st = obj.is_object() && obj.contains("status") ? &obj["status"] : nullptr;
  if (st == nullptr) return false;
  for (const auto& [group, fields] : patch["status"].items()) {
    for (const auto& [field, value] : fields.items()) {
      if (value.is_null()) continue;
      if (!st->contains(group) || !(*st)[group].contains(field)) return false;
    }
  }
  return true;
}

// Remembers the object a successful write answered with. An answer without
// usable metadata is skipped: the informer's cache will bring the change.
template <typename Facts>
void RememberAnswer(RecentWrites<Facts>& written, const std::string& key, const json& object,
                    Facts (*parse)(const json&)) {
  try {
    written.Remember(key, parse(object), Clock::now());
  } catch (const std::exception&) {
  }
}

}  // namespace

Reconciler::Reconciler(const ReportStore& store, const FactsSource& facts, ObjectWriter& writer,
                       ReporterMetrics& metrics, ReconcilerOptions options)
    : store_(store),
      facts_(facts),
      writer_(writer),
      mode_(options.reprobe, options.write_ratios,
            [&metrics](VmiRatioMode m) { metrics.SetVmiRatioMode(m); }) {}

Outcome Reconciler::Reconcile(const std::string& key) {
  if (mode_.mode() == VmiRatioMode::kOff) return Outcome::kDone;  // the switch is off
  const auto stored = store_.Get(key);
  if (!stored) return Outcome::kDrop;
  const Report& r = stored->report;
  const auto now = Clock::now();
  const std::string pod_key = Key(r.namespace_, r.pod_name);
  const auto vmi = written_vmis_.Newest(key, facts_.Vmi(key), now);
  const auto pod = written_pods_.Newest(pod_key, facts_.Pod(pod_key), now);
  if (!vmi || !pod || pod->uid != r.pod_uid || !IsActivePod(*vmi, *pod)) {
    return Outcome::kDrop;  // a migration or deletion overtook the report
  }
  if (const auto patch = PodPatch(*pod, r)) {
    const WriteResult res = writer_.PatchPod(pod->namespace_, pod->name, *patch);
    const Outcome o = Classify(res, "patch pod " + pod_key);
    if (o != Outcome::kDone) return o;
    RememberAnswer(written_pods_, pod_key, res.object, &PodFromJson);
  }
  return WriteVmi(*vmi, r);
}

Outcome Reconciler::WriteVmi(const VmiFacts& vmi, const Report& r) {
  const std::string what = "VMI " + Key(vmi.namespace_, vmi.name);
  const auto now = Clock::now();
  if (mode_.TryStatus(now)) {
    if (const auto patch = VmiStatusPatch(vmi, r)) {
      const WriteResult res = writer_.PatchVmiStatus(vmi.namespace_, vmi.name, *patch);
      if (IsUnknownFieldError(res) || (res.ok() && !StatusKept(res.object, *patch))) {
        // The CRD prunes the VEP 156 fields: the patch would keep nothing.
        mode_.Pruned(now);
      } else {
        const Outcome o = Classify(res, "patch status of " + what);
        if (o != Outcome::kDone) return o;
        mode_.Kept();
        RememberAnswer(written_vmis_, Key(vmi.namespace_, vmi.name), res.object, &VmiFromJson);
      }
    } else if (vmi.status_cpu_ratio || vmi.status_memory_ratio) {
      mode_.Kept();  // the VMI already holds the fields: the CRD keeps them
    }
  }
  // In status mode, annotations from an earlier annotation mode are no longer
  // the record: remove them. In annotation mode, write them.
  Report annotated = r;
  if (mode_.mode() == VmiRatioMode::kStatus) {
    annotated.cpu_allocation_ratio.reset();
    annotated.memory_overcommit_ratio.reset();
  }
  if (const auto patch = VmiAnnotationPatch(vmi, annotated)) {
    const WriteResult res = writer_.PatchVmi(vmi.namespace_, vmi.name, *patch);
    const Outcome o = Classify(res, "annotate " + what);
    if (o == Outcome::kDone)
      RememberAnswer(written_vmis_, Key(vmi.namespace_, vmi.name), res.object, &VmiFromJson);
    return o;
  }
  return Outcome::kDone;
}

}  // namespace gm::reporter
