#include "libvirt_hypervisor.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include <cstdlib>
#include <memory>

namespace gm::exporter {

LibvirtError LastLibvirtError() {
  const virError* e = virGetLastError();
  if (e == nullptr) return {VIR_ERR_INTERNAL_ERROR, "libvirt failed without an error message"};
  return {e->code, e->message ? e->message : ""};
}

namespace {

struct DomainDeleter {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainRef = std::unique_ptr<virDomain, DomainDeleter>;

template <typename T>
Call<T> Failed() {
  Call<T> c;
  c.error = LastLibvirtError();
  return c;
}

TypedParam Copy(const virTypedParameter& p) {
  TypedParam out{p.field, 0};
  switch (p.type) {
    case VIR_TYPED_PARAM_INT:
      out.value = p.value.i;
      break;
    case VIR_TYPED_PARAM_UINT:
      out.value = p.value.ui;
      break;
    case VIR_TYPED_PARAM_LLONG:
      out.value = p.value.l;
      break;
    case VIR_TYPED_PARAM_ULLONG:
      out.value = p.value.ul;
      break;
    case VIR_TYPED_PARAM_DOUBLE:
      out.value = p.value.d;
      break;
    case VIR_TYPED_PARAM_BOOLEAN:
      out.value = p.value.b != 0;
      break;
    case VIR_TYPED_PARAM_STRING:
      out.value = std::string(p.value.s ? p.value.s : "");
      break;
    default:
      out.value = std::string("<unknown type>");
      break;
  }
  return out;
}

}  // namespace

Call<std::vector<DomainInfo>> LibvirtHypervisor::RunningDomains() {
  Scope scope(guard_);
  virDomainPtr* doms = nullptr;
  const int n = virConnectListAllDomains(conn_, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (n < 0) return Failed<std::vector<DomainInfo>>();
  Call<std::vector<DomainInfo>> out;
  out.ok = true;
  for (int i = 0; i < n; ++i) {
    DomainRef dom(doms[i]);
    DomainInfo info;
    info.name = virDomainGetName(dom.get());
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virDomainGetUUIDString(dom.get(), uuid) == 0) info.uuid = uuid;
    virDomainInfo di{};
    // A domain that stops between listing and GetInfo is simply skipped.
    if (virDomainGetInfo(dom.get(), &di) != 0) continue;
    info.vcpus = di.nrVirtCpu;
    info.memory_kib = di.memory;
    out.value.push_back(std::move(info));
  }
  std::free(doms);
  return out;
}

Call<std::vector<TypedParam>> LibvirtHypervisor::GuestInfoLoad(const std::string& domain) {
  Scope scope(guard_);
  DomainRef dom(virDomainLookupByName(conn_, domain.c_str()));
  if (!dom) return Failed<std::vector<TypedParam>>();
  virTypedParameterPtr params = nullptr;
  int nparams = 0;
  if (virDomainGetGuestInfo(dom.get(), kGuestInfoLoad, &params, &nparams, 0) != 0) {
    return Failed<std::vector<TypedParam>>();
  }
  Call<std::vector<TypedParam>> out;
  out.ok = true;
  for (int i = 0; i < nparams; ++i) out.value.push_back(Copy(params[i]));
  virTypedParamsFree(params, nparams);
  return out;
}

Call<std::string> LibvirtHypervisor::AgentCommand(const std::string& domain,
                                                  const std::string& command, int timeout_seconds) {
  Scope scope(guard_);
  DomainRef dom(virDomainLookupByName(conn_, domain.c_str()));
  if (!dom) return Failed<std::string>();
  char* reply = virDomainQemuAgentCommand(dom.get(), command.c_str(), timeout_seconds, 0);
  if (reply == nullptr) return Failed<std::string>();
  Call<std::string> out;
  out.ok = true;
  out.value = reply;
  std::free(reply);
  return out;
}

}  // namespace gm::exporter
