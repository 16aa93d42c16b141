#include "hypervisor.h"

#include <libvirt/virterror.h>

namespace gm::exporter {

namespace {
bool Contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}
}  // namespace

Reason ClassifyError(const LibvirtError& e) {
  switch (e.code) {
    case VIR_ERR_NO_SUPPORT:
      return Reason::kUnsupported;
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
      // "QEMU guest agent is not configured": no agent channel in the domain XML.
      return Contains(e.message, "not configured") ? Reason::kNoAgent : Reason::kUnsupported;
    case VIR_ERR_AGENT_UNRESPONSIVE:
      // libvirt uses one code for "not connected" and for a reply that never came.
      return Contains(e.message, "not connected") ? Reason::kAgentDisconnected
                                                  : Reason::kAgentTimeout;
    case VIR_ERR_AGENT_UNSYNCED:
      return Reason::kAgentTimeout;
    case VIR_ERR_OPERATION_TIMEOUT:
      // "cannot acquire state change lock": another agent job holds the domain.
      return Reason::kAgentBusy;
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_NO_DOMAIN:
      return Contains(e.message, "not running") || e.code == VIR_ERR_NO_DOMAIN
                 ? Reason::kDomainNotRunning
                 : Reason::kLibvirtError;
    case VIR_ERR_INTERNAL_ERROR:
      // The agent's CommandNotFound class surfaces as "The command X has not been found".
      if (Contains(e.message, "has not been found") || Contains(e.message, "CommandNotFound") ||
          Contains(e.message, "has been disabled")) {
        return Reason::kCommandNotFound;
      }
      return Reason::kLibvirtError;
    default:
      return Reason::kLibvirtError;
  }
}

bool MeansGuestInfoLacksLoad(const LibvirtError& e) {
  return (e.code == VIR_ERR_INVALID_ARG &&
          Contains(e.message, "unsupported guest information types")) ||
         e.code == VIR_ERR_NO_SUPPORT;
}

LoadResult ReadLoad(Hypervisor& hv, const std::string& domain, LoadMethod& method,
                    int agent_timeout_seconds) {
  if (method == LoadMethod::kGuestInfo) {
    auto info = hv.GuestInfoLoad(domain);
    if (info.ok) return ParseGuestInfoLoad(info.value);
    if (!MeansGuestInfoLacksLoad(info.error)) {
      return LoadResult::Fail(ClassifyError(info.error), info.error.message);
    }
    method = LoadMethod::kAgentCommand;
  }
  auto reply = hv.AgentCommand(domain, R"({"execute":"guest-get-load"})", agent_timeout_seconds);
  if (!reply.ok) return LoadResult::Fail(ClassifyError(reply.error), reply.error.message);
  return ParseAgentLoadReply(reply.value);
}

}  // namespace gm::exporter
