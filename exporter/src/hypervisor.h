#pragma once
// The small interface between load polling and libvirt. The real
// implementation wraps a virConnectPtr (libvirt_hypervisor.cpp); unit tests use
// a tiny in-memory one.

#include <string>
#include <vector>

#include "guest_load.h"

namespace gm::exporter {

/// A libvirt error as virGetLastError() gives it.
struct LibvirtError {
  int code = 0;  // virErrorNumber
  std::string message;
};

/// What a domain looks like to the ratio and identity code.
struct DomainInfo {
  std::string name;
  std::string uuid;
  unsigned vcpus = 0;                 // current (live) vCPUs
  unsigned long long memory_kib = 0;  // current guest memory
};

/// Result of one libvirt call: either a value or an error.
template <typename T>
struct Call {
  T value{};
  bool ok = false;
  LibvirtError error;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  /// Running domains. Failure means the connection is unusable.
  virtual Call<std::vector<DomainInfo>> RunningDomains() = 0;
  /// virDomainGetGuestInfo(LOAD) on the named domain.
  virtual Call<std::vector<TypedParam>> GuestInfoLoad(const std::string& domain) = 0;
  /// virDomainQemuAgentCommand with a deadline in seconds.
  virtual Call<std::string> AgentCommand(const std::string& domain, const std::string& command,
                                         int timeout_seconds) = 0;
};

/// How load is read from this libvirt.
enum class LoadMethod { kGuestInfo, kAgentCommand };

/// Maps a libvirt error from a load read to a reason.
Reason ClassifyError(const LibvirtError& error);

/// True when a GetGuestInfo(LOAD) failure says that this libvirt does not know
/// the LOAD type (libvirt < 11.2: VIR_ERR_INVALID_ARG "unsupported guest
/// information types") or has no GetGuestInfo at all, so the agent command is
/// the way to ask. Agent-side failures (timeout, not connected) are not.
bool MeansGuestInfoLacksLoad(const LibvirtError& error);

/// Reads one domain's load with `method`, switching `method` to the agent
/// command once libvirt shows it cannot do LOAD. The switch sticks for the
/// connection: libvirt's abilities do not change without a reconnect.
LoadResult ReadLoad(Hypervisor& hv, const std::string& domain, LoadMethod& method,
                    int agent_timeout_seconds);

}  // namespace gm::exporter
