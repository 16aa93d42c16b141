// guest-exporter against libvirt's embedded test driver: several KubeVirt-shaped
// domains from a custom node XML, and the command line a user meets first.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "support.h"

using namespace gm::test;
using namespace std::chrono_literals;

namespace {
const std::string kNodeUri = std::string("test://") + TESTDATA_DIR + "/node.xml";
}

TEST_CASE(
    "every domain of the node gets one status series with its VMI identity, over socket and TCP") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter(
      {GUEST_EXPORTER_BIN, "--libvirt-uri", kNodeUri, "--socket", sock, "--listen-address",
       "127.0.0.1:0", "--node-name", "node-a", "--guest-info-interval", "60"},
      {}, dir.path + "/exporter.log");
  std::string metrics;
  // Until every domain's first read is on the page: a series exists from the
  // domain's discovery, its reason from that read (seen apart under ASan).
  REQUIRE(WaitUntil(
      [&] {
        metrics = Get(sock, "/metrics");
        return CountSeries(metrics, "guest_exporter_guest_load_status") == 3 &&
               Sample(metrics, R"(guest_exporter_polls_total{result="unsupported"})") == 3;
      },
      10s));
  // KubeVirt's <namespace>_<name> is split; a plain libvirt name keeps an empty namespace.
  CHECK(
      Sample(
          metrics,
          R"(guest_exporter_guest_load_status{namespace="default",name="fedora",node="node-a",reason="unsupported"})") ==
      1);
  CHECK(
      Sample(
          metrics,
          R"(guest_exporter_guest_load_status{namespace="prod",name="db-primary",node="node-a",reason="unsupported"})") ==
      1);
  CHECK(
      Sample(
          metrics,
          R"(guest_exporter_guest_load_status{namespace="",name="plain-host-vm",node="node-a",reason="unsupported"})") ==
      1);
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

TEST_CASE("the /metrics page is valid Prometheus text, as promtool reads it") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri", kNodeUri, "--socket", sock,
                    "--listen-address", "", "--node-name", R"(node "a"\b)"},
                   {}, dir.path + "/exporter.log");
  std::string metrics;
  REQUIRE(WaitUntil(
      [&] {
        return CountSeries(metrics = Get(sock, "/metrics"), "guest_exporter_guest_load_status") ==
               3;
      },
      10s));
  const std::string file = dir.path + "/page.txt";
  std::ofstream(file) << metrics;
  // promtool parses the page with Prometheus' own parser and lints it
  // (HELP present, counter names, histogram shape); it fails on either.
  std::string out;
  CHECK_MESSAGE(Run({"/bin/sh", "-c", "promtool check metrics < " + file}, out) == 0, out);
  CHECK(metrics.find(R"(node="node \"a\"\\b")") != std::string::npos);
}

TEST_CASE("configured identity replaces the domain name's") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter(
      {GUEST_EXPORTER_BIN, "--libvirt-uri", "test:///default", "--socket", sock, "--listen-address",
       "", "--node-name", "n"},
      {{"GUEST_EXPORTER_VMI_NAMESPACE", "team-a"}, {"GUEST_EXPORTER_VMI_NAME", "vm-1"}});
  std::string metrics;
  REQUIRE(WaitUntil(
      [&] {
        return CountSeries(metrics = Get(sock, "/metrics"), "guest_exporter_guest_load_status") ==
               1;
      },
      10s));
  CHECK(CountSeries(metrics, "guest_exporter_guest_load_status",
                    R"(namespace="team-a",name="vm-1",node="n")") == 1);
}

TEST_CASE("ready before any domain exists, and while libvirt is unreachable") {
  TempDir dir;
  const std::string sock = dir.path + "/m.sock";
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri",
                    "test+unix:///default?socket=" + dir.path + "/none", "--socket", sock,
                    "--listen-address", "", "--reconnect-max-backoff", "1"});
  std::string out;
  REQUIRE(WaitUntil(
      [&] {
        return Run({GUEST_EXPORTER_BIN, "probe", "--socket", sock}, out) == 0;
      },
      10s));
  std::string metrics;
  REQUIRE(WaitUntil(
      [&] {
        return Sample(metrics = Get(sock, "/metrics"),
                      R"(guest_exporter_libvirt_connects_total{result="error"})")
                   .value_or(0) >= 2;
      },
      10s));
  CHECK(Sample(metrics, "guest_exporter_libvirt_up") == 0);
  CHECK(CountSeries(metrics, "guest_exporter_guest_load_status") == 0);
}

TEST_CASE("--help reads well and bad flags fail with a message") {
  std::string out;
  CHECK(Run({GUEST_EXPORTER_BIN, "--help"}, out) == 0);
  for (const char* s : {"--libvirt-uri", "GUEST_EXPORTER_LIBVIRT_URI", "--guest-info-interval",
                        "--listen-address", "probe"}) {
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
  CHECK(Run({GUEST_EXPORTER_BIN, "--listen-address", "nowhere", "--socket", "/tmp/gm-unused.sock"},
            out) != 0);
  CHECK(out.find("no ':port'") != std::string::npos);
}

TEST_CASE(
    "on a plain host: the socket directory is made when missing (0750), and / is a landing page") {
  TempDir dir;
  const std::string sock = dir.path + "/run/guest-exporter/metrics.sock";
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri", "test:///default", "--socket", sock,
                    "--listen-address", ""},
                   {}, dir.path + "/exporter.log");
  REQUIRE(WaitUntil([&] { return !Get(sock, "/healthz").empty(); }, 10s));
  const auto perms = std::filesystem::status(dir.path + "/run/guest-exporter").permissions();
  CHECK((perms & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
         std::filesystem::perms::group_exec));
  const std::string page = Get(sock, "/");
  CHECK(page.find("<a href=\"metrics\">") != std::string::npos);
  CHECK(page.find("<a href=\"healthz\">") != std::string::npos);
}

TEST_CASE(
    "a socket directory that cannot be made turns the socket off with a notice, and TCP keeps "
    "serving") {
  TempDir dir;
  const int port = FreeTcpPort();
  std::filesystem::create_directories(dir.path + "/ro");
  std::ofstream(dir.path + "/ro/file") << "x";  // a file where the directory should go
  Process exporter({GUEST_EXPORTER_BIN, "--libvirt-uri", "test:///default", "--socket",
                    dir.path + "/ro/file/sub/metrics.sock", "--listen-address",
                    "127.0.0.1:" + std::to_string(port)},
                   {}, dir.path + "/exporter.log");
  std::string reply;
  REQUIRE(WaitUntil(
      [&] {
        return (reply = GetTcp(port, "/metrics")).find("guest_exporter_libvirt_up 1") !=
               std::string::npos;
      },
      10s));
  std::ifstream in(dir.path + "/exporter.log");
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(log.find("unix socket off: cannot create its directory") != std::string::npos);
  CHECK(exporter.Running());
}

TEST_CASE("Prometheus exporter flag spellings: --web.listen-address, --log.level, --log.format") {
  TempDir dir;
  const int port = FreeTcpPort();
  Process exporter(
      {GUEST_EXPORTER_BIN, "--libvirt-uri", "test:///default", "--socket", dir.path + "/m.sock",
       "--web.listen-address", "127.0.0.1:" + std::to_string(port), "--log.level", "debug",
       "--log.format", "json"},
      {}, dir.path + "/exporter.log");
  REQUIRE(WaitUntil([&] { return GetTcp(port, "/").find("200 OK") != std::string::npos; }, 10s));
  std::ifstream in(dir.path + "/exporter.log");
  std::string first;
  std::getline(in, first);
  CHECK(first.rfind('{', 0) == 0);  // JSON lines
  const std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(rest.find("\"debug\"") != std::string::npos);

  std::string out;
  CHECK(Run({GUEST_EXPORTER_BIN, "--log.format", "logfmt", "--log.level", "loud", "--libvirt-uri",
             "test:///default"},
            out) != 0);
  CHECK(out.find("--log.level") !=
        std::string::npos);  // the bad value is named by the spelling used
}
