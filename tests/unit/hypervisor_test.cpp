#include "hypervisor.h"

#include <doctest/doctest.h>
#include <libvirt/virterror.h>

#include <map>

using namespace gm::exporter;

namespace {

// A small in-memory hypervisor: answers are set per method; calls are recorded.
class FakeHypervisor final : public Hypervisor {
 public:
  Call<std::vector<TypedParam>> guest_info;
  Call<std::string> agent;
  std::vector<std::string> calls;

  Call<std::vector<DomainInfo>> RunningDomains() override { return {{}, true, {}}; }
  Call<std::vector<TypedParam>> GuestInfoLoad(const std::string& d) override {
    calls.push_back("guest-info " + d);
    return guest_info;
  }
  Call<std::string> AgentCommand(const std::string& d, const std::string& cmd,
                                 int timeout) override {
    calls.push_back("agent " + d + " " + cmd + " " + std::to_string(timeout));
    return agent;
  }
};

LibvirtError Err(int code, std::string msg) { return {code, std::move(msg)}; }

}  // namespace

TEST_CASE("libvirt >= 11.2: load comes from guest info and the agent command is never used") {
  FakeHypervisor hv;
  hv.guest_info = {{{"load.1m", 1.0}, {"load.5m", 2.0}, {"load.15m", 3.0}}, true, {}};
  LoadMethod m = LoadMethod::kGuestInfo;
  const auto r = ReadLoad(hv, "ns_vm", m, 5);
  REQUIRE(r.load);
  CHECK(r.load->load15m == doctest::Approx(3.0));
  CHECK(m == LoadMethod::kGuestInfo);
  CHECK(hv.calls == std::vector<std::string>{"guest-info ns_vm"});
}

TEST_CASE("libvirt < 11.2 rejects the LOAD type: fall back to guest-get-load, and stay there") {
  FakeHypervisor hv;
  hv.guest_info.error =
      Err(VIR_ERR_INVALID_ARG, "invalid argument: unsupported guest information types '0x80'");
  hv.agent = {R"({"return":{"load1m":0.5,"load5m":0.25,"load15m":0.125}})", true, {}};
  LoadMethod m = LoadMethod::kGuestInfo;
  auto r = ReadLoad(hv, "ns_vm", m, 7);
  REQUIRE(r.load);
  CHECK(r.load->load1m == doctest::Approx(0.5));
  CHECK(m == LoadMethod::kAgentCommand);
  r = ReadLoad(hv, "ns_vm", m, 7);
  CHECK(r.reason == Reason::kOk);
  CHECK(hv.calls == std::vector<std::string>{"guest-info ns_vm",
                                             R"(agent ns_vm {"execute":"guest-get-load"} 7)",
                                             R"(agent ns_vm {"execute":"guest-get-load"} 7)"});
}

TEST_CASE("agent-side failures of guest info are reasons, not a switch of method") {
  FakeHypervisor hv;
  hv.guest_info.error = Err(VIR_ERR_AGENT_UNRESPONSIVE,
                            "Guest agent is not responding: QEMU guest agent is not connected");
  LoadMethod m = LoadMethod::kGuestInfo;
  const auto r = ReadLoad(hv, "ns_vm", m, 5);
  CHECK(r.reason == Reason::kAgentDisconnected);
  CHECK(m == LoadMethod::kGuestInfo);
  CHECK(hv.calls.size() == 1);
}

TEST_CASE("a driver without guest info or agent support reports unsupported") {
  FakeHypervisor hv;
  hv.guest_info.error =
      Err(VIR_ERR_NO_SUPPORT,
          "this function is not supported by the connection driver: virDomainGetGuestInfo");
  hv.agent.error =
      Err(VIR_ERR_NO_SUPPORT,
          "this function is not supported by the connection driver: virDomainQemuAgentCommand");
  LoadMethod m = LoadMethod::kGuestInfo;
  CHECK(ReadLoad(hv, "d", m, 5).reason == Reason::kUnsupported);
}

TEST_CASE("qemu-guest-agent < 10.0 answers CommandNotFound through libvirt") {
  FakeHypervisor hv;
  hv.agent.error = Err(VIR_ERR_INTERNAL_ERROR,
                       "internal error: unable to execute QEMU agent command 'guest-get-load': "
                       "The command guest-get-load has not been found");
  LoadMethod m = LoadMethod::kAgentCommand;
  const auto r = ReadLoad(hv, "d", m, 5);
  CHECK(r.reason == Reason::kCommandNotFound);
  CHECK(r.detail.find("guest-get-load") != std::string::npos);
}

TEST_CASE("libvirt errors map to the documented reasons") {
  CHECK(ClassifyError(Err(VIR_ERR_AGENT_UNRESPONSIVE,
                          "Guest agent is not responding: Guest agent not available for now")) ==
        Reason::kAgentTimeout);
  CHECK(ClassifyError(Err(VIR_ERR_AGENT_UNSYNCED, "guest agent replied with wrong id")) ==
        Reason::kAgentTimeout);
  CHECK(ClassifyError(Err(VIR_ERR_ARGUMENT_UNSUPPORTED,
                          "argument unsupported: QEMU guest agent is not configured")) ==
        Reason::kNoAgent);
  CHECK(ClassifyError(Err(VIR_ERR_OPERATION_TIMEOUT,
                          "Timed out during operation: cannot acquire state change lock")) ==
        Reason::kAgentBusy);
  CHECK(ClassifyError(Err(VIR_ERR_OPERATION_INVALID,
                          "Requested operation is not valid: domain is not running")) ==
        Reason::kDomainNotRunning);
  CHECK(ClassifyError(Err(VIR_ERR_NO_DOMAIN, "Domain not found")) == Reason::kDomainNotRunning);
  CHECK(ClassifyError(Err(VIR_ERR_RPC, "End of file while reading data")) == Reason::kLibvirtError);
  CHECK(ClassifyError(Err(VIR_ERR_INTERNAL_ERROR, "something else")) == Reason::kLibvirtError);
}

TEST_CASE("only 'unknown LOAD type' and 'no guest info at all' mean fall back") {
  CHECK(MeansGuestInfoLacksLoad(
      Err(VIR_ERR_INVALID_ARG, "invalid argument: unsupported guest information types '0x80'")));
  CHECK(MeansGuestInfoLacksLoad(Err(VIR_ERR_NO_SUPPORT, "not supported")));
  CHECK_FALSE(
      MeansGuestInfoLacksLoad(Err(VIR_ERR_INVALID_ARG, "invalid argument: flags 0x1 unsupported")));
  CHECK_FALSE(
      MeansGuestInfoLacksLoad(Err(VIR_ERR_AGENT_UNRESPONSIVE, "Guest agent is not responding")));
  CHECK_FALSE(
      MeansGuestInfoLacksLoad(Err(VIR_ERR_OPERATION_TIMEOUT, "cannot acquire state change lock")));
}
