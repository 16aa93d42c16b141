#pragma once
// One launcher pod, its VMI, the report its sidecar sends and the identity its
// token proves: the literal inputs that the status-reporter's unit tests of
// facts, plans and report checks share.

#include <nlohmann/json.hpp>

#include "gm/report.h"
#include "report_check.h"

namespace reporter_fixtures {

using gm::reporter::TokenIdentity;
using nlohmann::json;

inline const json kPod = json::parse(R"({
  "metadata": {"name": "virt-launcher-vm-1-abcde", "namespace": "team-a", "uid": "pod-uid-1",
               "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "vmi-uid-1"},
               "annotations": {"kubevirt.io/domain": "vm-1", "unrelated": "x"}},
  "spec": {"nodeName": "node-1", "containers": [{"name": "compute"}]},
  "status": {"phase": "Running"}})");

inline const json kVmi = json::parse(R"({
  "metadata": {"name": "vm-1", "namespace": "team-a", "uid": "vmi-uid-1"},
  "spec": {"domain": {"resources": {"requests": {"memory": "4Gi"}}}},
  "status": {"nodeName": "node-1", "activePods": {"pod-uid-1": "node-1"}, "phase": "Running",
             "memory": {"guestCurrent": "6Gi"}}})");

inline gm::Report Report1() {
  gm::Report r;
  r.namespace_ = "team-a";
  r.vmi_name = "vm-1";
  r.pod_name = "virt-launcher-vm-1-abcde";
  r.pod_uid = "pod-uid-1";
  r.node = "node-1";
  r.vcpus = 2;
  r.cpu_allocation_ratio = 10.0;
  r.memory_overcommit_ratio = 1.5;
  return r;
}

inline const TokenIdentity kWho{"team-a", "default", "virt-launcher-vm-1-abcde", "pod-uid-1"};

}  // namespace reporter_fixtures
