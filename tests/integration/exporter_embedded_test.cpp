// guest-exporter against libvirt's embedded test driver: several KubeVirt-shaped
// domains from a custom node XML, and the command line a user meets first.

#include <doctest/doctest.h>

#include "support.h"

using namespace gm::test;
using namespace std::chrono_literals;

namespace {
const std::string kNodeUri = std::string("test://") + TESTDATA_DIR + "/node.xml";
}

TEST_CASE("every domain of the node gets one status series with its VMI identity, over socket and TCP") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri", kNodeUri, "--socket", sock, "--listen-address",
                    "127.0.0.1:0", "--node-name", "node-a", "--guest-info-interval", "60"},
                   {}, dir.path + "/exporter.log");
  std::string metrics;
  REQUIRE(WaitUntil([&] { return CountSeries(metrics = Get(sock, "/metrics"), "guest_exporter_guest_load_status") == 3; }, 10s));
  // KubeVirt's <namespace>_<name> is split; a plain libvirt name keeps an empty namespace.
  CHECK(Sample(metrics, R"(guest_exporter_guest_load_status{namespace="default",name="fedora",node="node-a",reason="unsupported"})") == 1);
  CHECK(Sample(metrics, R"(guest_exporter_guest_load_status{namespace="prod",name="db-primary",node="node-a",reason="unsupported"})") == 1);
  CHECK(Sample(metrics, R"(guest_exporter_guest_load_status{namespace="",name="plain-host-vm",node="node-a",reason="unsupported"})") == 1);
  // The test driver cannot reach an agent: no load gauges rather than invented ones.
  CHECK(CountSeries(metrics, "kubevirt_vmi_guest_load_1m") == 0);
  CHECK(Sample(metrics, "guest_exporter_libvirt_up") == 1);
  CHECK(Sample(metrics, R"(guest_exporter_polls_total{result="unsupported"})") == 3);

  std::string out;
  CHECK(Run({GUEST_EXPORTER_BIN, "probe", "--socket", sock}, out) == 0);
  CHECK(Run({GUEST_EXPORTER_BIN, "probe", "--socket", sock, "--path", "/healthz"}, out) == 0);
  CHECK(Run({GUEST_EXPORTER_BIN, "probe", "--socket", sock, "--path", "/nope"}, out) == 1);
  CHECK(out.find("HTTP 404") != std::string::npos);
}

TEST_CASE("configured identity replaces the domain name's") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri", "test:///default", "--socket", sock, "--listen-address", "",
                    "--node-name", "n"},
                   {{"GUEST_EXPORTER_VMI_NAMESPACE", "team-a"}, {"GUEST_EXPORTER_VMI_NAME", "vm-1"}});
  std::string metrics;
  REQUIRE(WaitUntil([&] { return CountSeries(metrics = Get(sock, "/metrics"), "guest_exporter_guest_load_status") == 1; }, 10s));
  CHECK(CountSeries(metrics, "guest_exporter_guest_load_status", R"(namespace="team-a",name="vm-1",node="n")") == 1);
}

TEST_CASE("ready before any domain exists, and while libvirt is unreachable") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri", "test+unix:///default?socket=" + dir.path + "/none",
                    "--socket", sock, "--listen-address", "", "--reconnect-max-backoff", "1"});
  std::string out;
  REQUIRE(WaitUntil([&] { return Run({GUEST_EXPORTER_BIN, "probe", "--socket", sock}, out) == 0; }, 10s));
  std::string metrics;
  REQUIRE(WaitUntil([&] { return Sample(metrics = Get(sock, "/metrics"), R"(guest_exporter_libvirt_connects_total{result="error"})").value_or(0) >= 2; }, 10s));
  CHECK(Sample(metrics, "guest_exporter_libvirt_up") == 0);
  CHECK(CountSeries(metrics, "guest_exporter_guest_load_status") == 0);
}

TEST_CASE("--help reads well and bad flags fail with a message") {
  std::string out;
  CHECK(Run({GUEST_EXPORTER_BIN, "--help"}, out) == 0);
  for (const char* s : {"--libvirt-uri", "GUEST_EXPORTER_LIBVIRT_URI", "--guest-info-interval", "--listen-address", "probe"}) {
    CAPTURE(s);
    CHECK(out.find(s) != std::string::npos);
  }
  CHECK(Run({GUEST_EXPORTER_BIN, "--guest-info-interval", "0"}, out) != 0);
  CHECK(out.find("--guest-info-interval") != std::string::npos);
  CHECK(Run({GUEST_EXPORTER_BIN, "--no-such-flag"}, out) != 0);
  CHECK(out.find("no-such-flag") != std::string::npos);
  CHECK(Run({GUEST_EXPORTER_BIN, "--log-format", "xml"}, out) != 0);
  CHECK(out.find("xml") != std::string::npos);
  CHECK(Run({GUEST_EXPORTER_BIN, "--vmi-name", "x", "--socket", "/tmp/gm-unused.sock"}, out) != 0);
  CHECK(out.find("give both or neither") != std::string::npos);
  CHECK(Run({GUEST_EXPORTER_BIN, "--listen-address", "nowhere", "--socket", "/tmp/gm-unused.sock"}, out) != 0);
  CHECK(out.find("no ':port'") != std::string::npos);
}
