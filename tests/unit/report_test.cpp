#include <doctest/doctest.h>

#include "gm/report.h"

using namespace gm;

namespace {
Report Sample() {
  Report r;
  r.namespace_ = "team-a";
  r.vmi_name = "vm-1";
  r.pod_name = "virt-launcher-vm-1-abcde";
  r.pod_uid = "0f6a4b0e-7d1c-4a44-9d1e-0c2b7a1f0001";
  r.node = "node-1";
  r.vcpus = 2;
  r.memory_bytes = 2147483648.0;
  r.load = ReportLoad{1.5, 1.0, 0.5, 12};
  r.load_reason = "ok";
  r.cpu_allocation_ratio = 10.0;
  r.memory_overcommit_ratio = 1.5;
  r.memory_request_source = "vmi-request";
  return r;
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const auto p = s.find(from);
  REQUIRE(p != std::string::npos);
  return s.replace(p, from.size(), to);
}
}  // namespace

TEST_CASE("a report survives the round trip") {
  std::string err;
  const auto back = DecodeReport(EncodeReport(Sample()), err);
  REQUIRE_MESSAGE(back, err);
  CHECK(back->namespace_ == "team-a");
  CHECK(back->pod_uid == "0f6a4b0e-7d1c-4a44-9d1e-0c2b7a1f0001");
  CHECK(back->vcpus == 2);
  REQUIRE(back->load);
  CHECK(back->load->load1m == doctest::Approx(1.5));
  CHECK(back->load->age_seconds == doctest::Approx(12));
  CHECK(*back->cpu_allocation_ratio == doctest::Approx(10.0));
  CHECK(*back->memory_overcommit_ratio == doctest::Approx(1.5));
}

TEST_CASE("a report without load or ratios is valid") {
  Report r = Sample();
  r.load.reset();
  r.load_reason = "command_not_found";
  r.cpu_allocation_ratio.reset();
  r.memory_overcommit_ratio.reset();
  std::string err;
  const auto back = DecodeReport(EncodeReport(r), err);
  REQUIRE_MESSAGE(back, err);
  CHECK_FALSE(back->load);
  CHECK_FALSE(back->cpu_allocation_ratio);
}

TEST_CASE("malformed reports are refused, naming the field") {
  const std::string good = EncodeReport(Sample());
  struct Case {
    std::string body;
    const char* error;
  };
  for (const Case& c : {
           Case{"", "not a JSON object"},
           Case{"[]", "not a JSON object"},
           Case{"{\"kind\":\"GuestReport\"}", "apiVersion is missing"},
           Case{Replace(good, "\"GuestReport\"", "\"Pod\""), "apiVersion/kind must be"},
           Case{Replace(good, "\"team-a\"", "\"Team_A\""), "namespace is not a valid"},
           Case{Replace(good, "\"vm-1\"", "42"), "vmiName must be a string"},
           Case{Replace(good, "\"vcpus\":2", "\"vcpus\":-1"), "vcpus is out of range"},
           Case{Replace(good, "\"load1m\":1.5", "\"load1m\":\"high\""), "load1m must be a number"},
           Case{Replace(good, "\"cpuAllocationRatio\":10.0", "\"cpuAllocationRatio\":0"), "cpuAllocationRatio must be positive"},
           Case{Replace(good, "\"cpuAllocationRatio\":10.0", "\"cpuAllocationRatio\":1e9"), "cpuAllocationRatio is out of range"},
           Case{Replace(good, "\"podUID\":\"0f6a4b0e-7d1c-4a44-9d1e-0c2b7a1f0001\"", "\"podUID\":\"\""), "podUID is empty"},
           Case{std::string(kMaxReportBytes + 1, ' '), "larger than"},
       }) {
    CAPTURE(c.body);
    std::string err;
    CHECK_FALSE(DecodeReport(c.body, err));
    CHECK_MESSAGE(err.find(c.error) != std::string::npos, err);
  }
}

TEST_CASE("Kubernetes names") {
  CHECK(IsDnsLabel("kube-system"));
  CHECK_FALSE(IsDnsLabel("-a"));
  CHECK_FALSE(IsDnsLabel("a-"));
  CHECK_FALSE(IsDnsLabel("A"));
  CHECK_FALSE(IsDnsLabel(std::string(64, 'a')));
  CHECK(IsDnsSubdomain("virt-launcher-vm.x"));
  CHECK_FALSE(IsDnsSubdomain("a..b"));
}
