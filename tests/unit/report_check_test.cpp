// Whose report the status-reporter accepts (report_check): only the VMI's
// current active launcher pod's, with that pod's own token.

#include "report_check.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "facts.h"
#include "reporter_fixtures.h"

using namespace gm::reporter;
using nlohmann::json;
using namespace reporter_fixtures;

TEST_CASE("a report from the VMI's active pod, with that pod's token, is accepted") {
  const auto pod = PodFromJson(kPod);
  const auto vmi = VmiFromJson(kVmi);
  const auto v = CheckReport(Report1(), kWho, &pod, &vmi);
  CHECK(v.http_status == 202);
  CHECK(v.accepted());
}

TEST_CASE("reports are refused with a reason and nothing else happens") {
  const auto pod = PodFromJson(kPod);
  const auto vmi = VmiFromJson(kVmi);
  auto r = Report1();

  CHECK(CheckReport(r, {"team-a", "default", "", ""}, &pod, &vmi).reason == "token_not_pod_bound");
  CHECK(CheckReport(r, {"team-a", "default", "other-pod", "pod-uid-2"}, &pod, &vmi).reason ==
        "token_mismatch");
  CHECK(CheckReport(r, kWho, nullptr, &vmi).http_status == 404);
  CHECK(CheckReport(r, kWho, &pod, nullptr).reason == "unknown_vmi");

  auto not_launcher = pod;
  not_launcher.is_launcher = false;
  CHECK(CheckReport(r, kWho, &not_launcher, &vmi).reason == "not_launcher");

  r.vmi_name = "vm-2";  // the token's pod runs vm-1
  const auto wrong = CheckReport(r, kWho, &pod, &vmi);
  CHECK(wrong.http_status == 403);
  CHECK(wrong.message.find("runs VMI 'vm-1'") != std::string::npos);
}

TEST_CASE("during and after a migration only the pod on the VMI's node is active") {
  auto source = PodFromJson(kPod);
  auto target = source;
  target.name = "virt-launcher-vm-1-fghij";
  target.uid = "pod-uid-2";
  target.node = "node-2";
  auto vmi = VmiFromJson(kVmi);
  vmi.active_pods["pod-uid-2"] = "node-2";  // migration in flight: both listed
  CHECK(IsActivePod(vmi, source));
  CHECK_FALSE(IsActivePod(vmi, target));
  const TokenIdentity target_who{"team-a", "default", target.name, target.uid};
  auto r = Report1();
  r.pod_name = target.name;
  r.pod_uid = target.uid;
  CHECK(CheckReport(r, target_who, &target, &vmi).reason == "not_active_pod");

  vmi.node_name = "node-2";  // completed
  vmi.active_pods.erase("pod-uid-1");
  CHECK(CheckReport(r, target_who, &target, &vmi).accepted());
  CHECK_FALSE(IsActivePod(vmi, source));
  source.deleting = true;
  CHECK_FALSE(IsActivePod(vmi, source));
}
