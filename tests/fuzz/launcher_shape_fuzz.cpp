// The webhook derives the guest's shares of a launcher pod's requests from the
// VMI and the pod as users wrote them: any input must give a share or a
// reason, never a crash, an exception or an "internal error". Each input is
// tried once as the VMI (beside a fixed hugepages pod) and once as the pod.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gm/launcher_shape.h"

static const char* kVmi =
    R"({"metadata":{"annotations":{"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity":""}},"spec":{"domain":{"cpu":{"sockets":2,"cores":2,"dedicatedCpuPlacement":true,"isolateEmulatorThread":true},"ioThreadsPolicy":"supplementalPool","ioThreads":{"supplementalPoolThreadCount":1},"memory":{"guest":"4Gi","hugepages":{"pageSize":"2Mi"}},"resources":{"requests":{"memory":"4Gi"}}}}})";

static const char* kPod =
    R"({"metadata":{"annotations":{"kubevirt.io/memory-overhead-bytes":"314572800"}},"spec":{"containers":[{"name":"compute","image":"x/virt-launcher:v1.9.0","resources":{"requests":{"cpu":"7","memory":"300Mi","hugepages-2Mi":"4Gi"}}}]}})";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  gm::ShapeOptions o;
  if (size > 0 && (data[0] & 1)) o.cluster_cpu_allocation_ratio = data[0] / 2.0;
  if (size > 0 && (data[0] & 2)) o.cluster_memory_overcommit = data[0];
  if (size > 1 && (data[1] & 1))
    o.kubevirt_version = gm::KubeVirtVersion{1, data[1] % 12u, data[0] % 5u};
  for (const auto& s : {gm::DeriveLauncherShapeFromText(in, kPod, o),
                        gm::DeriveLauncherShapeFromText(kVmi, in, o)}) {
    if (!s.vcpu_cpu_request && s.cpu_why.empty()) std::abort();
    if (!s.guest_memory_request && s.memory_why.empty()) std::abort();
    if (s.cpu_why.find("internal error") != std::string::npos) std::abort();
    if (s.memory_why.find("internal error") != std::string::npos) std::abort();
  }
  (void)gm::ParseKubeVirtVersion(in);
  return 0;
}
