#include "gm/report.h"

#include <doctest/doctest.h>

#include <utility>
#include <vector>

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
           Case{R"({"kind":"GuestReport"})", "apiVersion is missing"},
           Case{Replace(good, "\"GuestReport\"", "\"Pod\""), "apiVersion/kind must be"},
           Case{Replace(good, "\"team-a\"", "\"Team_A\""), "namespace is not a valid"},
           Case{Replace(good, "\"vm-1\"", "42"), "vmiName must be a string"},
           Case{Replace(good, "\"vcpus\":2", "\"vcpus\":-1"), "vcpus is -1, out of range"},
           Case{Replace(good, "\"load1m\":1.5", R"("load1m":"high")"), "load1m must be a number"},
           Case{Replace(good, "\"cpuAllocationRatio\":10.0", "\"cpuAllocationRatio\":0"),
                "cpuAllocationRatio is 0, out of range"},
           Case{Replace(good, "\"cpuAllocationRatio\":10.0", "\"cpuAllocationRatio\":1e9"),
                "cpuAllocationRatio is 1000000000, out of range"},
           Case{Replace(good, R"("podUID":"0f6a4b0e-7d1c-4a44-9d1e-0c2b7a1f0001")",
                        R"("podUID":"")"),
                "podUID is empty"},
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

namespace {
// A valid report as literal JSON, with `field` (a top-level key, or
// "load.<key>") replaced by the literal `value`.
std::string Literal(const std::string& field, const std::string& value) {
  std::string body =
      R"({"apiVersion":"guestmetrics.kubevirt.io/v1alpha1","kind":"GuestReport","namespace":"team-a",)"
      R"("vmiName":"vm-1","podName":"virt-launcher-vm-1-abcde","podUID":"uid-1","node":"node-1",)"
      R"("vcpus":2,"memoryBytes":2147483648,"loadReason":"ok","memoryRequestSource":"vmi-request",)"
      R"("load":{"load1m":1.5,"load5m":1,"load15m":0.5,"ageSeconds":12},)"
      R"("cpuAllocationRatio":10,"memoryOvercommitRatio":1.5})";
  const std::string key = field.rfind("load.", 0) == 0 ? field.substr(5) : field;
  const std::string pattern = "\"" + key + "\":";
  const auto at = body.find(pattern);
  REQUIRE(at != std::string::npos);
  const auto start = at + pattern.size();
  const auto end = body.find_first_of(",}", start);
  return body.replace(start, end - start, value);
}
}  // namespace

TEST_CASE(
    "numbers: non-finite, subnormal, fractional counts and out-of-range values get a 400 naming "
    "the field") {
  std::string err;
  REQUIRE_MESSAGE(DecodeReport(Literal("vcpus", "2"), err), err);
  struct Case {
    const char* field;
    const char* value;
    const char* error;
  };
  for (const Case& c : {
           // The bug of issue 10: a subnormal ratio was accepted and written as "0.0".
           Case{"cpuAllocationRatio", "1e-320",
                "cpuAllocationRatio is 1e-320, out of range [0.001, 10000]"},
           Case{"memoryOvercommitRatio", "4.9e-324",
                "memoryOvercommitRatio is 5e-324, out of range"},
           Case{"cpuAllocationRatio", "0.0004",
                "cpuAllocationRatio is 0.0004, out of range [0.001, 10000]"},
           // JSON has no NaN or infinity; a number beyond a double is refused by the parser.
           Case{"cpuAllocationRatio", "1e400",
                "report is not a JSON object: [json.exception.out_of_range.406] number overflow "
                "parsing '1e400'"},
           Case{"memoryOvercommitRatio", "-1e400",
                "report is not a JSON object: [json.exception.out_of_range.406] number overflow "
                "parsing '-1e400'"},
           Case{"load.load1m", "1e-310", "load.load1m is subnormal"},
           Case{"load.load5m", "-0.5", "load.load5m is -0.5, out of range [0, 4194304]"},
           Case{"load.ageSeconds", "86401", "load.ageSeconds is 86401, out of range [0, 86400]"},
           Case{"load.ageSeconds", "2e-315", "load.ageSeconds is subnormal"},
           Case{"memoryBytes", "1e-320", "memoryBytes must be a whole number"},
           Case{"memoryBytes", "1125899906842625",
                "memoryBytes is 1125899906842625, out of range [0, 1125899906842624]"},
           Case{"memoryBytes", "2147483648.5", "memoryBytes must be a whole number"},
           Case{"vcpus", "2.5", "vcpus must be a whole number"},
           Case{"vcpus", "1e300", "vcpus must be a whole number"},
           Case{"vcpus", "16385", "vcpus is 16385, out of range [0, 16384]"},
           Case{"vcpus", "-1", "vcpus is -1, out of range [0, 16384]"},
           Case{"vcpus", "99999999999999999999999", "vcpus must be a whole number"},
       }) {
    CAPTURE(c.field);
    CAPTURE(c.value);
    err.clear();
    CHECK_FALSE(DecodeReport(Literal(c.field, c.value), err));
    CHECK_MESSAGE(err.find(c.error) == 0, err);
  }
  // The edges of each range are accepted.
  for (const Case& c :
       {Case{"cpuAllocationRatio", "0.001", ""}, Case{"memoryOvercommitRatio", "10000", ""},
        Case{"load.load1m", "0", ""}, Case{"load.load1m", "-0.0", ""},
        Case{"load.load1m", "4194304", ""}, Case{"load.ageSeconds", "86400", ""},
        Case{"memoryBytes", "1125899906842624", ""}, Case{"vcpus", "16384", ""},
        Case{"vcpus", "0", ""}}) {
    CAPTURE(c.field);
    CAPTURE(c.value);
    CHECK_MESSAGE(DecodeReport(Literal(c.field, c.value), err), err);
  }
}

TEST_CASE("a report's order (sidecar start, sequence) survives the round trip and is validated") {
  Report r = Sample();
  r.order = ReportOrder{1764644400123, 42};
  std::string err;
  const std::string body = EncodeReport(r);
  CHECK(body.find(R"("sidecarStartMs":1764644400123)") != std::string::npos);
  CHECK(body.find(R"("sequence":42)") != std::string::npos);
  auto back = DecodeReport(body, err);
  REQUIRE_MESSAGE(back, err);
  REQUIRE(back->order);
  CHECK(back->order->sidecar_start_ms == 1764644400123);
  CHECK(back->order->sequence == 42);
  // Sidecars older than the field send none: still accepted, without order.
  back = DecodeReport(EncodeReport(Sample()), err);
  REQUIRE_MESSAGE(back, err);
  CHECK_FALSE(back->order);

  struct Case {
    const char* start;
    const char* sequence;
    const char* error;
  };
  for (const Case& c : {
           Case{"1764644400123", nullptr, "sidecarStartMs and sequence come together"},
           Case{nullptr, "1", "sidecarStartMs and sequence come together"},
           Case{"1764644400123", "0", "sequence is 0, out of range [1, 9007199254740992]"},
           Case{"1764644400123", "9007199254740993", "sequence is 9007199254740993, out of range"},
           Case{"1764644400123", "1.5", "sequence must be a whole number"},
           Case{"1764644400123", "\"7\"", "sequence must be a number"},
           Case{"1764644400", "1",
                "sidecarStartMs is 1764644400, out of range [946684800000, 4102444800000)"},
           Case{"-1764644400123", "1", "sidecarStartMs is -1764644400123, out of range"},
       }) {
    CAPTURE(c.start);
    CAPTURE(c.sequence);
    std::string bad = EncodeReport(Sample());
    bad.pop_back();  // the closing brace
    if (c.start) bad += std::string(",\"sidecarStartMs\":") + c.start;
    if (c.sequence) bad += std::string(",\"sequence\":") + c.sequence;
    bad += "}";
    err.clear();
    CHECK_FALSE(DecodeReport(bad, err));
    CHECK_MESSAGE(err.find(c.error) == 0, err);
  }
  CHECK(ReportOrder{1, 9} < ReportOrder{2, 1});  // a restarted sidecar is newer
  CHECK(ReportOrder{2, 1} < ReportOrder{2, 2});
  CHECK_FALSE(ReportOrder{2, 2} < ReportOrder{2, 2});
}

TEST_CASE("the sidecar's health travels in the report; a report without it is still taken") {
  Report r = Sample();
  std::string err;
  {
    const auto old = DecodeReport(EncodeReport(r), err);  // as an older sidecar sends it
    REQUIRE_MESSAGE(old, err);
    CHECK_FALSE(old->health);
  }
  r.health = ReportHealth{false, 120, 3, "http_503"};
  const std::string body = EncodeReport(r);
  CHECK(body.find(R"("health":{)") != std::string::npos);
  const auto back = DecodeReport(body, err);
  REQUIRE_MESSAGE(back, err);
  REQUIRE(back->health);
  CHECK_FALSE(back->health->libvirt_up);
  CHECK(back->health->interval_seconds == 120);
  CHECK(back->health->failed_attempts == 3);
  CHECK(back->health->last_error == "http_503");

  r.health = ReportHealth{};  // nothing failed, no interval said: the optional fields stay out
  const std::string minimal = EncodeReport(r);
  CHECK(minimal.find("lastError") == std::string::npos);
  CHECK(minimal.find("intervalSeconds") == std::string::npos);
  const auto m = DecodeReport(minimal, err);
  REQUIRE_MESSAGE(m, err);
  CHECK(m->health->libvirt_up);
  CHECK(m->health->last_error.empty());

  const std::string h = R"("health":{"libvirtUp":true,"failedAttempts":0})";
  // `body` with its health object replaced.
  const size_t from = body.find(R"("health":{)");
  const std::string health = body.substr(from, body.find('}', from) - from + 1);
  const auto with = [&](const std::string& replacement) {
    return Replace(body, health, replacement);
  };
  CHECK(DecodeReport(with(h), err));
  // Named fields, not a structured binding: CAPTURE's lambda may not capture one in C++17.
  struct Bad {
    std::string health, why;
  };
  for (const Bad& bad : std::vector<Bad>{
           {R"("health":[])", "health must be an object"},
           {R"("health":{"failedAttempts":0})", "libvirtUp is missing"},
           {R"("health":{"libvirtUp":1,"failedAttempts":0})", "libvirtUp must be true or false"},
           {R"("health":{"libvirtUp":true,"failedAttempts":-1})", "failedAttempts is -1"},
           {R"("health":{"libvirtUp":true,"failedAttempts":0,"intervalSeconds":0})",
            "intervalSeconds is 0"},
           {R"("health":{"libvirtUp":true,"failedAttempts":0,"intervalSeconds":1.5})",
            "intervalSeconds must be a whole number"},
           {R"("health":{"libvirtUp":true,"failedAttempts":0,"lastError":"HTTP 503\n"})",
            "only a-z, 0-9 and _"},
           {R"("health":{"libvirtUp":true,"failedAttempts":0,"lastError":")" +
                std::string(33, 'x') + "\"}",
            "longer than 32"},
       }) {
    CAPTURE(bad.health);
    err.clear();
    CHECK_FALSE(DecodeReport(with(bad.health), err));
    CHECK_MESSAGE(err.find(bad.why) != std::string::npos, err);
  }
}
