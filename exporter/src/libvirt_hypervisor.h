#pragma once
// Hypervisor over a real libvirt connection.

#include <libvirt/libvirt.h>

#include <functional>

#include "hypervisor.h"

namespace gm::exporter {

/// VIR_DOMAIN_GUEST_INFO_LOAD exists from libvirt 11.2; older headers lack it.
/// The value is part of libvirt's stable ABI.
inline constexpr unsigned int kGuestInfoLoad = 1U << 7;

/// Copies the calling thread's last libvirt error.
LibvirtError LastLibvirtError();

class LibvirtHypervisor final : public Hypervisor {
 public:
  /// `conn` stays owned by the caller. `guard` wraps every libvirt call so the
  /// caller can see how long a call has been running (hang detection).
  using CallGuard = std::function<void(bool entering)>;
  LibvirtHypervisor(virConnectPtr conn, CallGuard guard) : conn_(conn), guard_(std::move(guard)) {}

  Call<std::vector<DomainInfo>> RunningDomains() override;
  Call<std::vector<TypedParam>> GuestInfoLoad(const std::string& domain) override;
  Call<std::string> AgentCommand(const std::string& domain, const std::string& command,
                                 int timeout_seconds) override;

 private:
  struct Scope {
    const CallGuard& g;
    explicit Scope(const CallGuard& guard) : g(guard) {
      if (g) g(true);
    }
    ~Scope() {
      if (g) g(false);
    }
  };
  virConnectPtr conn_;
  CallGuard guard_;
};

}  // namespace gm::exporter
