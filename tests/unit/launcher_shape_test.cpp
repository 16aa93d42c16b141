// Table tests for gm::DeriveLauncherShape: one case per VM shape and KubeVirt
// version range. Each expected value is worked from KubeVirt's own rule, cited
// as FILE@TAG FUNCTION with
//   RR  = pkg/virt-controller/services/renderresources.go
//   TPL = pkg/virt-controller/services/template.go
//   DEF = pkg/defaults/defaults.go (v1.6+) / pkg/virt-api/webhooks/defaults.go (v1.3–v1.5)
// The pods below are what those rules render (and what the API server's
// defaulting makes of them) for the VMI next to them.
#include "gm/launcher_shape.h"

#include <doctest/doctest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

using namespace gm;
using nlohmann::json;

namespace {

constexpr double Mi = 1048576.0;
constexpr double Gi = 1073741824.0;

// A VMI as the API returns it: spec.domain (already through KubeVirt's
// mutating webhook), and metadata.annotations.
json Vmi(json domain, json annotations = json::object()) {
  return {{"apiVersion", "kubevirt.io/v1"},
          {"kind", "VirtualMachineInstance"},
          {"metadata", {{"name", "vm1"}, {"namespace", "ns"}, {"annotations", annotations}}},
          {"spec", {{"domain", domain}}}};
}

json Cpu(unsigned sockets, unsigned cores = 1, unsigned threads = 1) {
  return {{"sockets", sockets}, {"cores", cores}, {"threads", threads}};
}

// The launcher pod: compute first (an image whose tag names the version), the
// compute container's resources, and pod annotations.
json Pod(const std::string& version, json requests, json limits = json::object(),
         json annotations = json::object()) {
  json compute = {{"name", "compute"},
                  {"image", "quay.io/kubevirt/virt-launcher:" + version},
                  {"resources", {{"requests", requests}, {"limits", limits}}}};
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", "virt-launcher-vm1-abcde"}, {"annotations", annotations}}},
          {"spec", {{"containers", json::array({compute})}}}};
}

ShapeOptions Version(const char* v) {
  ShapeOptions o;
  o.kubevirt_version = ParseKubeVirtVersion(v);
  REQUIRE(o.kubevirt_version);
  return o;
}

std::string Notes(const LauncherShape& s) {
  std::string out;
  for (const auto& n : s.notes) out += n + "\n";
  return out;
}

}  // namespace

// ------------------------------------------------------------------ CPU

TEST_CASE(
    "launcher shape: default cpuAllocationRatio 10 gives 100m per vCPU - ratio 10.0 "
    "(RR@v1.3.0 - v1.5.2 - v1.9.0 WithoutDedicatedCPU: request = vCPUs / ratio)") {
  // 2 vCPUs / 10 = "200m" in every version (no IOThread pool).
  for (const char* v : {"v1.3.0", "v1.5.0", "v1.5.2", "v1.7.0", "v1.9.0"}) {
    CAPTURE(v);
    const auto s = DeriveLauncherShape(Vmi({{"cpu", Cpu(2)}}),
                                       Pod(v, {{"cpu", "200m"}, {"memory", "2400Mi"}}));
    CHECK(s.kubevirt.source == "compute image tag");
    CHECK(s.cpu_rule == CpuShareRule::kAllocationRatio);
    CHECK(s.render_vcpus == 2);
    REQUIRE(s.vcpu_cpu_request);
    CHECK(*s.vcpu_cpu_request == doctest::Approx(0.2));
    CHECK(*s.CpuRequestPerVcpu() == doctest::Approx(0.1));
    CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
    CHECK(s.notes.empty());
  }
}

TEST_CASE("launcher shape: a VMI without spec.domain.cpu renders 1 vCPU (RR@v1.3.0 calcVCPUs)") {
  const auto s = DeriveLauncherShape(Vmi(json::object()), Pod("v1.4.0", {{"cpu", "100m"}}));
  CHECK(s.render_vcpus == 1);
  CHECK(*s.CpuAllocationRatio(1) == doctest::Approx(10.0));
}

TEST_CASE(
    "launcher shape: custom cpuAllocationRatio 4 (RR@v1.9.0 WithoutDedicatedCPU: 4 vCPUs / 4 = 1 "
    "core)") {
  ShapeOptions o = Version("v1.9.0");
  o.cluster_cpu_allocation_ratio = 4;
  const auto s = DeriveLauncherShape(Vmi({{"cpu", Cpu(2, 2)}}), Pod("v1.9.0", {{"cpu", "1"}}), o);
  CHECK(s.render_vcpus == 4);
  CHECK(*s.vcpu_cpu_request == doctest::Approx(1.0));
  CHECK(*s.expected_cpu_request == doctest::Approx(1.0));
  CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(4.0));
  CHECK(s.notes.empty());
}

TEST_CASE(
    "launcher shape: a request that is not vCPUs / cpuAllocationRatio is noted - still used") {
  ShapeOptions o = Version("v1.9.0");
  o.cluster_cpu_allocation_ratio = 10;
  const auto s = DeriveLauncherShape(Vmi({{"cpu", Cpu(2)}}), Pod("v1.9.0", {{"cpu", "250m"}}), o);
  CHECK(*s.vcpu_cpu_request == doctest::Approx(0.25));
  CHECK(Notes(s).find("cpuAllocationRatio") != std::string::npos);
}

TEST_CASE(
    "launcher shape: explicit requests.cpu is the vCPUs' whole share - no pool added "
    "(RR@v1.9.0 Requests(): the VMI's requests override the calculated ones)") {
  // 4 vCPUs on 500m: 8.0. With a 2-thread pool on v1.9 the request stays 500m
  // (WithoutDedicatedCPU only writes calculatedRequests, which vmRequests override).
  json domain = {{"cpu", Cpu(4)},
                 {"resources", {{"requests", {{"cpu", "500m"}, {"memory", "4Gi"}}}}}};
  for (bool pool : {false, true}) {
    CAPTURE(pool);
    if (pool) {
      domain["ioThreadsPolicy"] = "supplementalPool";
      domain["ioThreads"] = {{"supplementalPoolThreadCount", 2}};
    }
    const auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.9.0", {{"cpu", "500m"}}));
    CHECK(s.cpu_rule == CpuShareRule::kExplicitRequest);
    CHECK(*s.vcpu_cpu_request == doctest::Approx(0.5));
    CHECK(s.iothread_cpus == 0);
    CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(8.0));
    CHECK(s.notes.empty());
  }
}

TEST_CASE(
    "launcher shape: a VMI CPU limit without request becomes the request "
    "(DEF@v1.3.0 and @v1.9.0 setDefaultResourceRequests)") {
  // Mutated VMI (request copied from the limit) and one seen before mutation
  // give the same: 2 vCPUs on 2 cores = 1.0.
  const json mutated = {{"cpu", Cpu(2)},
                        {"resources", {{"requests", {{"cpu", "2"}}}, {"limits", {{"cpu", "2"}}}}}};
  const json unmutated = {{"cpu", Cpu(2)}, {"resources", {{"limits", {{"cpu", "2"}}}}}};
  // A zero request counts as none (DEF tests Requests.Cpu().IsZero()).
  const json zero = {{"cpu", Cpu(2)},
                     {"resources", {{"requests", {{"cpu", "0"}}}, {"limits", {{"cpu", "2"}}}}}};
  for (const json& d : {mutated, unmutated, zero}) {
    const auto s = DeriveLauncherShape(Vmi(d), Pod("v1.3.0", {{"cpu", "2"}}, {{"cpu", "2"}}));
    CHECK(s.cpu_rule == CpuShareRule::kExplicitRequest);
    CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(1.0));
  }
}

TEST_CASE(
    "launcher shape: auto CPU limits leave the request alone "
    "(TPL@v1.9.0 doesVMIRequireAutoCPULimits / RR@v1.9.0 WithoutDedicatedCPU withCPULimits: limit "
    "= "
    "vCPUs + pool)") {
  // Namespace matched by autoCPULimitNamespaceLabelSelector, or a ResourceQuota
  // with limits.cpu: 2 vCPUs get limit "2" and request "200m" — ratio 10.
  auto s =
      DeriveLauncherShape(Vmi({{"cpu", Cpu(2)}}), Pod("v1.9.0", {{"cpu", "200m"}}, {{"cpu", "2"}}));
  CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
  // With a 1-thread pool: limit "3", request "300m"; the vCPUs' share is 200m.
  s = DeriveLauncherShape(Vmi({{"cpu", Cpu(2)},
                               {"ioThreadsPolicy", "supplementalPool"},
                               {"ioThreads", {{"supplementalPoolThreadCount", 1}}}}),
                          Pod("v1.9.0", {{"cpu", "300m"}}, {{"cpu", "3"}}));
  CHECK(*s.vcpu_cpu_request == doctest::Approx(0.2));
  CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
}

TEST_CASE(
    "launcher shape: dedicatedCpuPlacement gives each vCPU a whole CPU - ratio 1.0 "
    "(RR@v1.3.0 WithCPUPinning: limit = vCPUs - request defaulted from it / RR@v1.5.2: request = "
    "limit = vCPUs)") {
  for (const char* v : {"v1.3.0", "v1.5.0", "v1.5.2", "v1.9.0"}) {
    CAPTURE(v);
    json cpu = Cpu(4);
    cpu["dedicatedCpuPlacement"] = true;
    const auto s = DeriveLauncherShape(Vmi({{"cpu", cpu}}), Pod(v, {{"cpu", "4"}}, {{"cpu", "4"}}));
    CHECK(s.cpu_rule == CpuShareRule::kDedicated);
    CHECK(s.dedicated);
    CHECK(*s.vcpu_cpu_request == doctest::Approx(4.0));
    CHECK(*s.expected_cpu_request == doctest::Approx(4.0));
    CHECK(*s.CpuRequestPerVcpu() == doctest::Approx(1.0));
    CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(1.0));
    CHECK(s.notes.empty());
  }
}

TEST_CASE(
    "launcher shape: isolateEmulatorThread adds one CPU the vCPUs do not get "
    "(RR@v1.3.0 and @v1.9.0 WithCPUPinning)") {
  // 4 vCPUs + 1 emulator CPU = request 5; the vCPUs' share is 4: ratio 1.0, not 0.8.
  json cpu = Cpu(4);
  cpu["dedicatedCpuPlacement"] = true;
  cpu["isolateEmulatorThread"] = true;
  for (const char* v : {"v1.3.0", "v1.9.0"}) {
    CAPTURE(v);
    const auto s = DeriveLauncherShape(Vmi({{"cpu", cpu}}), Pod(v, {{"cpu", "5"}}, {{"cpu", "5"}}));
    CHECK(s.emulator_cpus == 1);
    CHECK(*s.expected_cpu_request == doctest::Approx(5.0));
    CHECK(*s.vcpu_cpu_request == doctest::Approx(4.0));
    CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(1.0));
    CHECK(s.notes.empty());
  }
}

TEST_CASE(
    "launcher shape: even-parity annotation completes the CPU count with a second emulator CPU "
    "(RR@v1.3.0 WithCPUPinning: 2 when vCPUs % 2 == 0)") {
  const json ann = {{"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity", ""}};
  json cpu = Cpu(4);
  cpu["dedicatedCpuPlacement"] = true;
  cpu["isolateEmulatorThread"] = true;
  // 4 vCPUs: even, so 2 emulator CPUs, request 6.
  auto s =
      DeriveLauncherShape(Vmi({{"cpu", cpu}}, ann), Pod("v1.3.0", {{"cpu", "6"}}, {{"cpu", "6"}}));
  CHECK(s.emulator_cpus == 2);
  CHECK(*s.expected_cpu_request == doctest::Approx(6.0));
  CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(1.0));
  // 3 vCPUs: odd, so 1, request 4.
  cpu["sockets"] = 3;
  s = DeriveLauncherShape(Vmi({{"cpu", cpu}}, ann), Pod("v1.3.0", {{"cpu", "4"}}, {{"cpu", "4"}}));
  CHECK(s.emulator_cpus == 1);
  CHECK(*s.vcpu_cpu_request == doctest::Approx(3.0));
  CHECK(s.notes.empty());
}

TEST_CASE(
    "launcher shape: dedicated CPUs with an IOThread pool and the emulator thread - per version "
    "(RR@v1.5.0 WithCPUPinning+WithIOThreads / RR@v1.5.2/v1.9.0 WithCPUPinning with "
    "getIOThreadsCount)") {
  const json ann = {{"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity", ""}};
  json cpu = Cpu(2);
  cpu["dedicatedCpuPlacement"] = true;
  cpu["isolateEmulatorThread"] = true;
  const json domain = {{"cpu", cpu},
                       {"ioThreadsPolicy", "supplementalPool"},
                       {"ioThreads", {{"supplementalPoolThreadCount", 1}}}};
  SUBCASE(
      "v1.9.0 with parity: (2 + 1 + additionalCPUs 1) % 2 == 0, so 2 emulator CPUs: request 2 + 1 "
      "+ 2 = 5") {
    const auto s =
        DeriveLauncherShape(Vmi(domain, ann), Pod("v1.9.0", {{"cpu", "5"}}, {{"cpu", "5"}}));
    CHECK(s.iothread_cpus == 1);
    CHECK(s.emulator_cpus == 2);
    CHECK(*s.expected_cpu_request == doctest::Approx(5.0));
    CHECK(*s.vcpu_cpu_request == doctest::Approx(2.0));
    CHECK(s.notes.empty());
  }
  SUBCASE("v1.9.0 without parity: 2 + 1 + 1 = 4") {
    const auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.9.0", {{"cpu", "4"}}, {{"cpu", "4"}}));
    CHECK(s.emulator_cpus == 1);
    CHECK(*s.expected_cpu_request == doctest::Approx(4.0));
    CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(1.0));
  }
  SUBCASE(
      "v1.5.0 with parity: (2 + 1) % 2 != 0, so 1 emulator CPU; the pool goes to the limit: 2 + 1 "
      "+ 1 = 4") {
    const auto s =
        DeriveLauncherShape(Vmi(domain, ann), Pod("v1.5.0", json::object(), {{"cpu", "4"}}));
    CHECK(s.emulator_cpus == 1);
    CHECK(s.iothread_cpus == 1);
    CHECK(*s.compute_cpu_request ==
          doctest::Approx(4.0));  // the limit, as Kubernetes defaults the request
    CHECK(*s.vcpu_cpu_request == doctest::Approx(2.0));
    CHECK(s.notes.empty());
  }
  SUBCASE("unknown version: what else the request holds differs, the vCPUs' share does not") {
    json pod = Pod("v1.9.0", {{"cpu", "5"}});
    pod["spec"]["containers"][0]["image"] = "registry.local/virt-launcher@sha256:0123";
    const auto s = DeriveLauncherShape(Vmi(domain, ann), pod);
    CHECK(s.kubevirt.source == "unknown");
    CHECK_FALSE(s.expected_cpu_request);
    CHECK(*s.vcpu_cpu_request == doctest::Approx(2.0));
  }
}

TEST_CASE(
    "launcher shape: KubeVirt's own WithCPUPinning table - where no parity CPUs come from the "
    "policy "
    "(renderresources_test.go@v1.9.0 entries: 5 vCPUs + 2 IOThreads → 8 - 6 + 2 → 10 with "
    "parity)") {
  // Those entries call WithCPUPinning with additionalCPUs 0, which is what TPL
  // passes when ioThreadsPolicy is not supplementalPool: the pool is still
  // counted (getIOThreadsCount), and the parity test sees N + pool only.
  const json ann = {{"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity", ""}};
  for (const auto& entry : {std::pair<unsigned, const char*>{5, "8"}, {6, "10"}}) {
    const unsigned vcpus = entry.first;
    const char* expected = entry.second;
    CAPTURE(vcpus);
    json cpu = Cpu(vcpus);
    cpu["dedicatedCpuPlacement"] = true;
    cpu["isolateEmulatorThread"] = true;
    const json domain = {{"cpu", cpu},
                         {"ioThreadsPolicy", "auto"},
                         {"ioThreads", {{"supplementalPoolThreadCount", 2}}}};
    const auto s = DeriveLauncherShape(Vmi(domain, ann), Pod("v1.9.0", {{"cpu", expected}}));
    CHECK(*s.expected_cpu_request == doctest::Approx(std::stod(expected)));
    CHECK(*s.vcpu_cpu_request == doctest::Approx(vcpus));
    CHECK(s.notes.empty());
  }
}

TEST_CASE(
    "launcher shape: the issue's example - 2 vCPUs and a 1-thread IOThread pool give 10.0 - not "
    "6.67 "
    "(RR@v1.5.2 and @v1.9.0 WithoutDedicatedCPU: request = (2 + 1) / 10 = 300m)") {
  const json domain = {{"cpu", Cpu(2)},
                       {"ioThreadsPolicy", "supplementalPool"},
                       {"ioThreads", {{"supplementalPoolThreadCount", 1}}}};
  for (const char* v : {"v1.5.2", "v1.6.0", "v1.9.0"}) {
    CAPTURE(v);
    const auto s = DeriveLauncherShape(Vmi(domain), Pod(v, {{"cpu", "300m"}}));
    CHECK(s.iothread_cpus == 1);
    CHECK(*s.vcpu_cpu_request == doctest::Approx(0.2));  // 300m × 2 / 3
    CHECK(*s.CpuRequestPerVcpu() == doctest::Approx(0.1));
    CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
    CHECK(2 / *s.compute_cpu_request ==
          doctest::Approx(6.667).epsilon(0.001));  // the old, wrong figure
  }
}

TEST_CASE(
    "launcher shape: on v1.5.0–v1.5.1 the IOThread pool is in the CPU limit only "
    "(RR@v1.5.0 WithIOThreads adds it to vmLimits / WithoutDedicatedCPU counts vCPUs only)") {
  const json domain = {{"cpu", Cpu(2)},
                       {"ioThreadsPolicy", "supplementalPool"},
                       {"ioThreads", {{"supplementalPoolThreadCount", 1}}}};
  const auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.5.1", {{"cpu", "200m"}}, {{"cpu", "1"}}));
  CHECK(s.iothread_cpus == 0);
  CHECK(*s.vcpu_cpu_request == doctest::Approx(0.2));
  CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
  CHECK(Notes(s).find("limit") != std::string::npos);
}

TEST_CASE(
    "launcher shape: an IOThread pool with an unknown version needs the cluster's "
    "cpuAllocationRatio "
    "(RR changed at v1.5.2)") {
  const json domain = {{"cpu", Cpu(2)},
                       {"ioThreadsPolicy", "supplementalPool"},
                       {"ioThreads", {{"supplementalPoolThreadCount", 1}}}};
  json pod = Pod("x", {{"cpu", "300m"}});
  pod["spec"]["containers"][0]["image"] = "registry.local/virt-launcher:latest";
  auto s = DeriveLauncherShape(Vmi(domain), pod);
  CHECK(s.cpu_rule == CpuShareRule::kNone);
  CHECK_FALSE(s.vcpu_cpu_request);
  CHECK(s.cpu_why.find("v1.5.2") != std::string::npos);

  ShapeOptions o;
  o.cluster_cpu_allocation_ratio = 10;
  s = DeriveLauncherShape(Vmi(domain), pod, o);  // 300m = (2 + 1) / 10: the newer rule
  CHECK(*s.vcpu_cpu_request == doctest::Approx(0.2));
  pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "200m";  // 2 / 10: the older rule
  s = DeriveLauncherShape(Vmi(domain), pod, o);
  CHECK(*s.vcpu_cpu_request == doctest::Approx(0.2));
  CHECK(s.iothread_cpus == 0);
  pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "1";  // neither
  s = DeriveLauncherShape(Vmi(domain), pod, o);
  CHECK_FALSE(s.vcpu_cpu_request);
}

TEST_CASE(
    "launcher shape: ioThreadsPolicy shared/auto and per-disk dedicatedIOThread add no CPU "
    "(RR@v1.9.0: only supplementalPoolThreadCount is counted)") {
  for (const char* policy : {"shared", "auto"}) {
    CAPTURE(policy);
    const json domain = {
        {"cpu", Cpu(2)},
        {"ioThreadsPolicy", policy},
        {"devices", {{"disks", json::array({{{"name", "d"}, {"dedicatedIOThread", true}}})}}}};
    const auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.9.0", {{"cpu", "200m"}}));
    CHECK(s.iothread_cpus == 0);
    CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
  }
  // getIOThreadsCount (RR@v1.5.2+) reads the count whatever the policy: with
  // policy auto and a count of 2 the request is (2 + 2) / 10 = 400m.
  const json domain = {{"cpu", Cpu(2)},
                       {"ioThreadsPolicy", "auto"},
                       {"ioThreads", {{"supplementalPoolThreadCount", 2}}}};
  const auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.9.0", {{"cpu", "400m"}}));
  CHECK(s.iothread_cpus == 2);
  CHECK(*s.CpuAllocationRatio(2) == doctest::Approx(10.0));
}

TEST_CASE("launcher shape: live vCPUs over the render-time share show CPU hotplug") {
  // 2 vCPUs rendered at 200m; 2 more hot-plugged: 4 / 0.2 = 20.0. Dedicated: 1.0 while live =
  // rendered.
  auto s = DeriveLauncherShape(Vmi({{"cpu", Cpu(2)}}), Pod("v1.9.0", {{"cpu", "200m"}}));
  CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(20.0));
  CHECK_FALSE(s.CpuAllocationRatio(0));
}

// ------------------------------------------------------------------ memory

TEST_CASE(
    "launcher shape: compute memory request minus the overhead annotation "
    "(TPL@v1.8.0 kubevirt.io/memory-overhead-bytes / RR@v1.9.0 WithMemoryOverhead)") {
  // 4Gi + 300Mi in the pod, 300Mi of it overhead: 4Gi; guest 6Gi gives 1.5.
  const json pod = Pod("v1.9.0", {{"cpu", "200m"}, {"memory", "4396Mi"}}, json::object(),
                       {{"kubevirt.io/memory-overhead-bytes", "314572800"}});
  const auto s = DeriveLauncherShape(Vmi({{"cpu", Cpu(2)}, {"memory", {{"guest", "6Gi"}}}}), pod);
  CHECK(s.memory_rule == GuestMemoryRule::kComputeMinusOverhead);
  CHECK(*s.memory_overhead == doctest::Approx(300 * Mi));
  CHECK(*s.guest_memory_request == doctest::Approx(4 * Gi));
  CHECK(*s.MemoryOvercommitRatio(6 * Gi) == doctest::Approx(1.5));
}

TEST_CASE(
    "launcher shape: overcommitGuestOverhead keeps the overhead out of the request "
    "(RR@v1.9.0 WithMemoryOverhead: added only when !OvercommitGuestOverhead)") {
  // The annotation still says 300Mi, but the compute request (4Gi) holds none
  // of it: 4Gi, not 3.7Gi; guest 6Gi gives 1.5.
  const json pod = Pod("v1.9.0", {{"memory", "4Gi"}}, json::object(),
                       {{"kubevirt.io/memory-overhead-bytes", "314572800"}});
  const json domain = {
      {"memory", {{"guest", "6Gi"}}},
      {"resources", {{"overcommitGuestOverhead", true}, {"requests", {{"memory", "4Gi"}}}}}};
  const auto s = DeriveLauncherShape(Vmi(domain), pod);
  CHECK(s.memory_rule == GuestMemoryRule::kComputeOverheadNotAdded);
  CHECK(*s.guest_memory_request == doctest::Approx(4 * Gi));
  CHECK(*s.MemoryOvercommitRatio(6 * Gi) == doctest::Approx(1.5));
  CHECK(s.notes.empty());
  // Before v1.8 (no annotation) the VMI's request says the same.
  const auto old = DeriveLauncherShape(Vmi(domain), Pod("v1.5.0", {{"memory", "4Gi"}}));
  CHECK(old.memory_rule == GuestMemoryRule::kVmiRequest);
  CHECK(*old.guest_memory_request == doctest::Approx(4 * Gi));
}

TEST_CASE(
    "launcher shape: hugepages from v1.8 on - the compute memory request is the overhead alone "
    "(RR@v1.9.0 WithHugePages: hugepages-<size> = request - memory = overhead)") {
  // guest 4Gi on 1Gi pages, no VMI request (DEF@v1.9.0 sets none; RR WithMemoryRequests
  // uses guest): hugepages-1Gi 4Gi, memory 300Mi = overhead. 4Gi + 0 → ratio 1.0.
  const json domain = {{"memory", {{"guest", "4Gi"}, {"hugepages", {{"pageSize", "1Gi"}}}}}};
  const json pod =
      Pod("v1.9.0", {{"memory", "300Mi"}, {"hugepages-1Gi", "4Gi"}}, {{"hugepages-1Gi", "4Gi"}},
          {{"kubevirt.io/memory-overhead-bytes", "314572800"}});
  const auto s = DeriveLauncherShape(Vmi(domain), pod);
  CHECK(s.memory_rule == GuestMemoryRule::kHugepagesPlusRest);
  CHECK(*s.hugepages_request == doctest::Approx(4 * Gi));
  CHECK(*s.guest_memory_request == doctest::Approx(4 * Gi));
  CHECK(*s.MemoryOvercommitRatio(4 * Gi) == doctest::Approx(1.0));
  CHECK(s.notes.empty());
}

TEST_CASE(
    "launcher shape: hugepages with a request above guest memory "
    "(RR@v1.9.0 WithHugePages: hugepages = guest - memory = request − guest + overhead)") {
  // request 6Gi, guest 4Gi on 2Mi pages: hugepages-2Mi 4Gi, memory 2Gi + 300Mi.
  // The guest's request is 6Gi: 4Gi of guest on it gives 0.667.
  const json domain = {{"memory", {{"guest", "4Gi"}, {"hugepages", {{"pageSize", "2Mi"}}}}},
                       {"resources", {{"requests", {{"memory", "6Gi"}}}}}};
  const json pod =
      Pod("v1.9.0", {{"memory", "2348Mi"}, {"hugepages-2Mi", "4Gi"}}, {{"hugepages-2Mi", "4Gi"}},
          {{"kubevirt.io/memory-overhead-bytes", "314572800"}});
  const auto s = DeriveLauncherShape(Vmi(domain), pod);
  CHECK(*s.guest_memory_request == doctest::Approx(6 * Gi));
  CHECK(*s.MemoryOvercommitRatio(4 * Gi) == doctest::Approx(0.6667).epsilon(0.001));
  CHECK(s.notes.empty());
}

TEST_CASE(
    "launcher shape: hugepages before v1.8 use the VMI's request "
    "(DEF@v1.5.0 sets it / RR@v1.5.0 WithHugePages: hugepages-<size> = min(request - guest))") {
  const json domain = {{"memory", {{"guest", "4Gi"}, {"hugepages", {{"pageSize", "1Gi"}}}}},
                       {"resources", {{"requests", {{"memory", "4Gi"}}}}}};
  const json pod =
      Pod("v1.5.0", {{"memory", "300Mi"}, {"hugepages-1Gi", "4Gi"}}, {{"hugepages-1Gi", "4Gi"}});
  const auto s = DeriveLauncherShape(Vmi(domain), pod);
  CHECK(s.memory_rule == GuestMemoryRule::kVmiRequest);
  CHECK(*s.guest_memory_request == doctest::Approx(4 * Gi));
  CHECK(*s.MemoryOvercommitRatio(4 * Gi) == doctest::Approx(1.0));
  CHECK(s.notes.empty());
}

TEST_CASE(
    "launcher shape: guest memory differing from the request (DEF@v1.5.0: the user's request is "
    "kept)") {
  // guest 4Gi on a 2Gi request: 2.0.
  const json domain = {{"memory", {{"guest", "4Gi"}}},
                       {"resources", {{"requests", {{"memory", "2Gi"}}}}}};
  const auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.5.0", {{"memory", "2348Mi"}}));
  CHECK(s.memory_rule == GuestMemoryRule::kVmiRequest);
  CHECK(*s.MemoryOvercommitRatio(4 * Gi) == doctest::Approx(2.0));
}

TEST_CASE(
    "launcher shape: a memory limit without request (DEF@v1.5.0 copies it / RR@v1.7.0 "
    "WithMemoryRequests uses it)") {
  // v1.5: the mutated VMI carries request = limit = 2Gi.
  const json mutated = {
      {"memory", {{"guest", "2Gi"}}},
      {"resources", {{"requests", {{"memory", "2Gi"}}}, {"limits", {{"memory", "2Gi"}}}}}};
  auto s = DeriveLauncherShape(Vmi(mutated),
                               Pod("v1.5.0", {{"memory", "2348Mi"}}, {{"memory", "2348Mi"}}));
  CHECK(s.memory_rule == GuestMemoryRule::kVmiRequest);
  CHECK(*s.guest_memory_request == doctest::Approx(2 * Gi));
  // v1.7: the VMI keeps only the limit; the renderer makes it the request.
  const json limit_only = {{"memory", {{"guest", "2Gi"}}},
                           {"resources", {{"limits", {{"memory", "2Gi"}}}}}};
  s = DeriveLauncherShape(Vmi(limit_only),
                          Pod("v1.7.0", {{"memory", "2348Mi"}}, {{"memory", "2348Mi"}}));
  CHECK(s.memory_rule == GuestMemoryRule::kVmiLimit);
  CHECK(*s.guest_memory_request == doctest::Approx(2 * Gi));
  CHECK(s.notes.empty());
}

TEST_CASE(
    "launcher shape: no request - no limit - no annotation: guest × 100 / memoryOvercommit "
    "(RR@v1.7.0 WithMemoryRequests)") {
  const json domain = {{"memory", {{"guest", "6Gi"}}}};
  auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.7.0", {{"memory", "4396Mi"}}));
  CHECK(s.memory_rule == GuestMemoryRule::kNone);
  CHECK(s.memory_why.find("memoryOvercommit") != std::string::npos);
  ShapeOptions o;
  o.cluster_memory_overcommit = 150;
  s = DeriveLauncherShape(Vmi(domain), Pod("v1.7.0", {{"memory", "4396Mi"}}), o);
  CHECK(s.memory_rule == GuestMemoryRule::kGuestOvercommit);
  CHECK(*s.guest_memory_request == doctest::Approx(4 * Gi));  // 6Gi × 100 / 150
  CHECK(*s.MemoryOvercommitRatio(6 * Gi) == doctest::Approx(1.5));
}

TEST_CASE(
    "launcher shape: v1.6.2 alone scaled the VMI's request at rendering "
    "(RR@v1.6.2 WithMemoryOvercommit - reverted in v1.6.3)") {
  // DEF@v1.6.2 set request = guest = 6Gi; the pod got 6Gi × 100 / 150 = 4Gi + overhead.
  const json domain = {{"memory", {{"guest", "6Gi"}}},
                       {"resources", {{"requests", {{"memory", "6Gi"}}}}}};
  ShapeOptions o = Version("v1.6.2");
  o.cluster_memory_overcommit = 150;
  auto s = DeriveLauncherShape(Vmi(domain), Pod("v1.6.2", {{"memory", "4396Mi"}}), o);
  CHECK(s.memory_rule == GuestMemoryRule::kVmiRequestOvercommitted);
  CHECK(*s.MemoryOvercommitRatio(6 * Gi) == doctest::Approx(1.5));
  // v1.6.3 set the VMI's request to 4Gi itself and rendered it as is.
  o.kubevirt_version = ParseKubeVirtVersion("v1.6.3");
  const json v163 = {{"memory", {{"guest", "6Gi"}}},
                     {"resources", {{"requests", {{"memory", "4Gi"}}}}}};
  s = DeriveLauncherShape(Vmi(v163), Pod("v1.6.3", {{"memory", "4396Mi"}}), o);
  CHECK(s.memory_rule == GuestMemoryRule::kVmiRequest);
  CHECK(*s.MemoryOvercommitRatio(6 * Gi) == doctest::Approx(1.5));
}

// ------------------------------------------------------------------ versions

TEST_CASE(
    "launcher shape: the version range from the image tag - an explicit version and the overhead "
    "annotation") {
  CHECK(ParseKubeVirtVersion("v1.6.0-rc.1")->ToString() == "v1.6.0");
  CHECK_FALSE(ParseKubeVirtVersion("latest"));
  CHECK_FALSE(ParseKubeVirtVersion("v1.2"));
  CHECK_FALSE(ParseKubeVirtVersion("v1.2.3x"));

  const json vmi = Vmi({{"cpu", Cpu(1)}});
  auto s = DeriveLauncherShape(vmi, Pod("v1.5.2", {{"cpu", "100m"}}));
  CHECK(s.kubevirt.ToString() == "v1.5.2");

  s = DeriveLauncherShape(vmi, Pod("v1.5.2", {{"cpu", "100m"}}), Version("v1.6.0"));
  CHECK(s.kubevirt.source == "explicit");
  CHECK(s.kubevirt.ToString() == "v1.6.0");
  CHECK(Notes(s).find("image tag") != std::string::npos);

  json pod =
      Pod("x", {{"cpu", "100m"}}, json::object(), {{"kubevirt.io/memory-overhead-bytes", "1"}});
  pod["spec"]["containers"][0]["image"] = "virt-launcher@sha256:ab";
  s = DeriveLauncherShape(vmi, pod);
  CHECK(s.kubevirt.ToString() == "v1.8.0 or later");
  CHECK(s.kubevirt.source == "overhead annotation");

  // An explicit version older than the annotation can be: the pod is trusted.
  s = DeriveLauncherShape(vmi, pod, Version("v1.5.0"));
  CHECK(s.kubevirt.ToString() == "v1.8.0 or later");
  CHECK(Notes(s).find("trusted") != std::string::npos);
}

// ------------------------------------------------------------------ bad input

TEST_CASE("launcher shape: malformed input gives reasons - never a throw") {
  auto s = DeriveLauncherShapeFromText("{not json", "{}");
  CHECK(s.cpu_why == "the VMI is not JSON");
  s = DeriveLauncherShapeFromText("{\"spec\":{}}", "[1");
  CHECK(s.memory_why == "the pod is not JSON");
  s = DeriveLauncherShapeFromText("[]", "{}");
  CHECK_FALSE(s.vcpu_cpu_request);
  CHECK_FALSE(s.cpu_why.empty());

  const json pod = Pod("v1.9.0", {{"cpu", "200m"}, {"memory", "2Gi"}});
  s = DeriveLauncherShape(Vmi({{"cpu", {{"sockets", "two"}}}}), pod);
  CHECK(s.cpu_why == "spec.domain.cpu.sockets is not an integer");
  s = DeriveLauncherShape(Vmi({{"cpu", {{"sockets", -1}}}}), pod);
  CHECK(s.cpu_why == "spec.domain.cpu.sockets is out of range");
  s = DeriveLauncherShape(Vmi({{"cpu", {{"sockets", 65536}, {"cores", 65536}}}}), pod);
  CHECK(s.cpu_why.find("implausible") != std::string::npos);
  s = DeriveLauncherShape(Vmi({{"resources", {{"requests", {{"cpu", "lots\n"}}}}}}), pod);
  CHECK(s.cpu_why.find("spec.domain.resources.requests.cpu") != std::string::npos);
  CHECK(s.cpu_why.find('\n') == std::string::npos);  // escaped before it can reach a log line

  const json vmi = Vmi({{"cpu", Cpu(2)}, {"memory", {{"guest", "2Gi"}}}});
  json bad_ann = Pod("v1.9.0", {{"cpu", "200m"}, {"memory", "2Gi"}}, json::object(),
                     {{"kubevirt.io/memory-overhead-bytes", "-5"}});
  s = DeriveLauncherShape(vmi, bad_ann);
  CHECK(Notes(s).find("not a byte count") != std::string::npos);
  CHECK_FALSE(s.memory_overhead);

  json no_compute = pod;
  no_compute["spec"]["containers"][0]["name"] = "other";
  s = DeriveLauncherShape(vmi, no_compute);
  CHECK(s.cpu_why == "the pod has no compute container");
}

TEST_CASE(
    "launcher shape: every field of a full VMI and pod replaced by junk still gives an answer") {
  // A small, deterministic fuzz over the shape of the inputs: each value in
  // turn becomes each kind of junk. The call must return (noexcept), and a
  // share that is missing must say why.
  json ann = {{"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity", ""}};
  json cpu = Cpu(2, 2);
  cpu["dedicatedCpuPlacement"] = true;
  cpu["isolateEmulatorThread"] = true;
  const json vmi = Vmi({{"cpu", cpu},
                        {"ioThreadsPolicy", "supplementalPool"},
                        {"ioThreads", {{"supplementalPoolThreadCount", 1}}},
                        {"memory", {{"guest", "4Gi"}, {"hugepages", {{"pageSize", "2Mi"}}}}},
                        {"resources",
                         {{"overcommitGuestOverhead", false},
                          {"requests", {{"cpu", "4"}, {"memory", "4Gi"}}},
                          {"limits", {{"cpu", "4"}, {"memory", "4Gi"}}}}}},
                       ann);
  const json pod = Pod("v1.9.0", {{"cpu", "7"}, {"memory", "300Mi"}, {"hugepages-2Mi", "4Gi"}},
                       {{"cpu", "7"}, {"memory", "300Mi"}, {"hugepages-2Mi", "4Gi"}},
                       {{"kubevirt.io/memory-overhead-bytes", "314572800"}});
  const std::vector<json> junk = {nullptr,       "", "x", -1, 1.5, 1e300, true, json::array({1}),
                                  json::object()};
  int calls = 0;
  for (int which = 0; which < 2; ++which) {
    const json& base = which == 0 ? vmi : pod;
    std::vector<json::json_pointer> paths;  // every node, objects and arrays too
    const std::function<void(const json&, const json::json_pointer&)> walk =
        [&](const json& node, const json::json_pointer& at) {
          paths.push_back(at);
          if (node.is_object()) {
            for (const auto& item : node.items()) walk(item.value(), at / item.key());
          } else if (node.is_array()) {
            for (size_t i = 0; i < node.size(); ++i) walk(node[i], at / i);
          }
        };
    walk(base, json::json_pointer());
    for (const auto& path : paths) {
      for (const auto& j : junk) {
        json changed = base;
        changed[path] = j;
        const auto s =
            which == 0 ? DeriveLauncherShape(changed, pod) : DeriveLauncherShape(vmi, changed);
        ++calls;
        if (!s.vcpu_cpu_request) CHECK_FALSE(s.cpu_why.empty());
        if (!s.guest_memory_request) CHECK_FALSE(s.memory_why.empty());
        CHECK(s.cpu_why.find("internal error") == std::string::npos);
        CHECK(s.memory_why.find("internal error") == std::string::npos);
      }
    }
  }
  CHECK(calls > 200);
  // And the full input itself: dedicated 4 vCPUs, pool 1, parity (4 + 1 + 1) % 2 == 0 → 2:
  // request 7.
  const auto s = DeriveLauncherShape(vmi, pod);
  CHECK(*s.expected_cpu_request == doctest::Approx(7.0));
  CHECK(*s.CpuAllocationRatio(4) == doctest::Approx(1.0));
  CHECK(*s.guest_memory_request == doctest::Approx(4 * Gi));
  CHECK(s.notes.empty());
}
