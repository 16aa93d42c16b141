#include "report_check.h"

namespace gm::reporter {

Verdict CheckReport(const Report& r, const TokenIdentity& who, const PodFacts* pod,
                    const VmiFacts* vmi) {
  if (who.pod_uid.empty() || who.pod_name.empty()) {
    return {403, "token_not_pod_bound", "the token is not bound to a pod"};
  }
  if (who.pod_uid != r.pod_uid || who.pod_name != r.pod_name || who.namespace_ != r.namespace_) {
    return {403, "token_mismatch",
            "the token belongs to pod " + who.namespace_ + "/" + who.pod_name + " (" + who.pod_uid +
                "), not to the pod the report names"};
  }
  if (pod == nullptr || pod->uid != r.pod_uid) {
    return {404, "unknown_pod",
            "pod " + Key(r.namespace_, r.pod_name) + " with uid " + r.pod_uid + " is not known"};
  }
  if (!pod->is_launcher)
    return {403, "not_launcher",
            "pod " + Key(pod->namespace_, pod->name) + " is not a virt-launcher pod"};
  if (pod->vmi_name != r.vmi_name) {
    return {403, "wrong_vmi",
            "pod " + Key(pod->namespace_, pod->name) + " runs VMI '" + pod->vmi_name + "', not '" +
                r.vmi_name + "'"};
  }
  if (vmi == nullptr)
    return {404, "unknown_vmi", "VMI " + Key(r.namespace_, r.vmi_name) + " is not known"};
  if (!IsActivePod(*vmi, *pod)) {
    return {409, "not_active_pod",
            "pod " + Key(pod->namespace_, pod->name) + " is not the current active pod of VMI " +
                Key(vmi->namespace_, vmi->name)};
  }
  return {202, "accepted", "accepted"};
}

}  // namespace gm::reporter
