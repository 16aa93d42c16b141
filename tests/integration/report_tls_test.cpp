// The report client's HTTPS transport (libcurl, GnuTLS build) against a real
// TLS server (tls_server.py) with certificates made by openssl for each test:
// trust (a file re-read at each POST, an inline PEM through a memfd),
// server-name checks, chunked and Content-Length answers, a bounded reply, and
// deadlines that end a silent server instead of hanging the report thread.

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "https_client.h"
#include "report_client.h"
#include "support.h"

using namespace gm::test;
using namespace gm::exporter;
using namespace std::chrono_literals;

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void MustRun(const std::vector<std::string>& argv) {
  std::string out;
  const int rc = Run(argv, out);
  INFO(argv[0] << " " << argv[1] << ": " << out);
  REQUIRE(rc == 0);
}

// Two CAs; a server certificate from the first for localhost and 127.0.0.1,
// and one for another name.
struct Pki {
  TempDir dir;
  std::string Path(const std::string& name) const { return dir.path + "/" + name; }
  void Ca(const std::string& name) const {
    MustRun({OPENSSL_BIN,
             "req",
             "-x509",
             "-newkey",
             "ec",
             "-pkeyopt",
             "ec_paramgen_curve:P-256",
             "-nodes",
             "-keyout",
             Path(name + ".key"),
             "-out",
             Path(name + ".pem"),
             "-days",
             "2",
             "-subj",
             "/CN=" + name,
             "-addext",
             "basicConstraints=critical,CA:TRUE",
             "-addext",
             "keyUsage=critical,keyCertSign,cRLSign"});
  }
  void Server(const std::string& name, const std::string& ca, const std::string& san) const {
    std::ofstream(Path(name + ".ext"))
        << "subjectAltName=" << san << "\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n";
    MustRun({OPENSSL_BIN, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".csr"), "-subj",
             "/CN=" + name});
    MustRun({OPENSSL_BIN, "x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".pem"),
             "-CAkey", Path(ca + ".key"), "-CAcreateserial", "-out", Path(name + ".pem"), "-days",
             "2", "-extfile", Path(name + ".ext")});
  }
  Pki() {
    Ca("ca");
    Ca("other-ca");
    Server("server", "ca", "DNS:localhost,IP:127.0.0.1");
    Server("elsewhere", "ca", "DNS:reporter.other.example");
  }
};

// tls_server.py in `mode` with certificate `cert`, on an ephemeral port.
struct TlsServer {
  std::string port_file;
  std::unique_ptr<Process> process;
  int port = 0;
  TlsServer(const Pki& pki, const std::string& mode, const std::string& cert = "server") {
    port_file = pki.Path(mode + "-" + cert + ".port");
    process = std::make_unique<Process>(
        std::vector<std::string>{PYTHON3_BIN, TLS_SERVER_PY, mode, pki.Path(cert + ".pem"),
                                 pki.Path(cert + ".key"), port_file},
        std::map<std::string, std::string>{}, pki.Path(mode + "-" + cert + ".log"));
    REQUIRE(WaitUntil([&] { return !ReadAll(port_file).empty(); }, 10s));
    port = std::stoi(ReadAll(port_file));
  }
  std::string Url(const std::string& host) const {
    return "https://" + host + ":" + std::to_string(port) + "/v1/reports";
  }
};

using Clock = std::chrono::steady_clock;

// Descriptors open in this process (the listing's own one included, as a
// constant): a leak shows as a count that grows.
long OpenFds() {
  const std::filesystem::directory_iterator fds("/proc/self/fd");
  return std::distance(begin(fds), end(fds));
}

}  // namespace

TEST_CASE("good CA from a file: the POST arrives whole, with SNI, and the 201 answer is parsed") {
  Pki pki;
  TlsServer server(pki, "echo");
  CurlTransport t(TlsTrust{"", pki.Path("ca.pem")});
  const auto ex = t.Post(server.Url("localhost"),
                         {"Content-Type: application/json", "Authorization: Bearer tok"},
                         "{\"vcpus\":2}", 5000ms);
  INFO(ex.error);
  REQUIRE(ex.status == 201);
  CHECK(ex.body.find(R"("authorization": "Bearer tok")") != std::string::npos);
  CHECK(ex.body.find(R"("host": "localhost:)" + std::to_string(server.port) + "\"") !=
        std::string::npos);
  CHECK(ex.body.find(R"("content_type": "application/json")") != std::string::npos);
  CHECK(ex.body.find(R"("connection": "close")") != std::string::npos);
  CHECK(ex.body.find(R"("body": "{\"vcpus\":2}")") != std::string::npos);
  CHECK(ex.body.find(R"("sni": "localhost")") != std::string::npos);
}

TEST_CASE(
    "inline CA PEM and an IP address URL: checked against the certificate's IP, no SNI, and a "
    "chunked answer") {
  Pki pki;
  TlsServer server(pki, "echo");
  CurlTransport t(
      TlsTrust{ReadAll(pki.Path("ca.pem")), "/nonexistent/ignored-because-pem-wins.pem"});
  auto ex = t.Post(server.Url("127.0.0.1"), {}, "{}", 5000ms);
  INFO(ex.error);
  REQUIRE(ex.status == 201);
  CHECK(ex.body.find(R"("sni": null)") != std::string::npos);

  TlsServer chunked(pki, "chunked");
  ex = t.Post(chunked.Url("127.0.0.1"), {}, "{}", 5000ms);
  CHECK(ex.status == 200);
  CHECK(ex.body == "accepted");
}

TEST_CASE("the report sender end to end: 2xx is delivered, 403 is an error carrying the reason") {
  Pki pki;
  const std::string token = pki.Path("token");
  std::ofstream(token) << "projected-token\n";
  TlsServer ok(pki, "echo");
  HttpsReportSender sender(HttpsTarget{ok.Url("localhost"), pki.Path("ca.pem"), "", token});
  const auto r = sender.Send("{}");
  CHECK_MESSAGE(r.ok, r.error);

  TlsServer refuse(pki, "refuse");
  HttpsReportSender refused(HttpsTarget{refuse.Url("localhost"), pki.Path("ca.pem"), "", token});
  const auto e = refused.Send("{}");
  CHECK_FALSE(e.ok);
  // The reason arrives as the reporter wrote it, escaped for the log.
  CHECK(e.error ==
        "POST " + refuse.Url("localhost") + ": HTTP 403: pod is not the VMI's active pod\\n");
}

TEST_CASE("the CA file is read again at each POST: a rotated CA takes effect without a restart") {
  Pki pki;
  TlsServer server(pki, "echo");
  const std::string ca = pki.Path("rotating-ca.pem");
  std::ofstream(ca) << ReadAll(pki.Path("other-ca.pem"));
  CurlTransport t(TlsTrust{"", ca});
  auto ex = t.Post(server.Url("localhost"), {}, "{}", 5000ms);
  CHECK(ex.status == 0);
  CHECK(ex.error.find("server certificate rejected") != std::string::npos);
  std::ofstream(ca, std::ios::trunc) << ReadAll(pki.Path("ca.pem"));
  ex = t.Post(server.Url("localhost"), {}, "{}", 5000ms);
  INFO(ex.error);
  CHECK(ex.status == 201);
}

TEST_CASE("an inline CA PEM reaches libcurl through a memfd that is closed after each POST") {
  Pki pki;
  TlsServer server(pki, "echo");
  CurlTransport t(TlsTrust{ReadAll(pki.Path("ca.pem")), ""});
  auto ex = t.Post(server.Url("localhost"), {}, "{}", 5000ms);  // warms libcurl up
  REQUIRE_MESSAGE(ex.status == 201, ex.error);
  const long before = OpenFds();
  for (int i = 0; i < 5; ++i) {
    ex = t.Post(server.Url("localhost"), {}, "{}", 5000ms);
    CHECK_MESSAGE(ex.status == 201, ex.error);
  }
  CHECK(OpenFds() == before);
  // The wrong inline CA is refused like the wrong file.
  CurlTransport wrong(TlsTrust{ReadAll(pki.Path("other-ca.pem")), ""});
  ex = wrong.Post(server.Url("localhost"), {}, "{}", 5000ms);
  CHECK(ex.status == 0);
  CHECK(ex.error.find("server certificate rejected") != std::string::npos);
}

TEST_CASE("a large reply: only its start is kept, and a flood is cut off") {
  Pki pki;
  CurlTransport t(TlsTrust{"", pki.Path("ca.pem")});
  TlsServer big(pki, "big");  // 403 with a 20 KiB body
  auto ex = t.Post(big.Url("localhost"), {}, "{}", 5000ms);
  INFO(ex.error);
  CHECK(ex.status == 403);
  CHECK(ex.body == std::string(CurlTransport::kKeptBodyBytes, 'x'));
  TlsServer flood(pki, "flood");  // 200 with 1 MiB
  ex = t.Post(flood.Url("localhost"), {}, "{}", 5000ms);
  CHECK(ex.status == 0);
  CHECK(ex.error == "response from localhost:" + std::to_string(flood.port) + " larger than " +
                        std::to_string(CurlTransport::kMaxResponseBytes) + " bytes");
}

TEST_CASE("a server certificate from another CA is refused with the reason") {
  Pki pki;
  TlsServer server(pki, "echo");
  CurlTransport t(TlsTrust{"", pki.Path("other-ca.pem")});
  const auto ex = t.Post(server.Url("localhost"), {}, "{}", 5000ms);
  CHECK(ex.status == 0);
  INFO(ex.error);
  CHECK(ex.error.find("TLS handshake with localhost:" + std::to_string(server.port) +
                      ": server certificate rejected") == 0);
  // GnuTLS via libcurl names no reason beyond the failed verification; the CA is named.
  CHECK(ex.error.find("verification failed") != std::string::npos);
  CHECK(ex.error.find("CAfile: " + pki.Path("other-ca.pem")) != std::string::npos);
}

TEST_CASE("a certificate for another name is refused, for DNS names and IP addresses alike") {
  Pki pki;
  TlsServer server(pki, "echo", "elsewhere");
  CurlTransport t(TlsTrust{"", pki.Path("ca.pem")});
  for (const char* host : {"localhost", "127.0.0.1"}) {
    CAPTURE(host);
    const auto ex = t.Post(server.Url(host), {}, "{}", 5000ms);
    CHECK(ex.status == 0);
    INFO(ex.error);
    CHECK(ex.error.find("server certificate rejected") != std::string::npos);
    CHECK(ex.error.find("does not match target host name '" + std::string(host) + "'") !=
          std::string::npos);
  }
}

TEST_CASE(
    "a server that never answers ends at the deadline, during the handshake or after the request") {
  Pki pki;
  CurlTransport t(TlsTrust{"", pki.Path("ca.pem")});

  // Accepts TCP (the kernel does, from the backlog) but never speaks TLS.
  gm::UniqueFd mute(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(mute.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(mute.get(), 4) == 0);
  socklen_t len = sizeof a;
  getsockname(mute.get(), reinterpret_cast<sockaddr*>(&a), &len);
  const std::string mute_url =
      "https://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/v1/reports";
  auto t0 = Clock::now();
  auto ex = t.Post(mute_url, {}, "{}", 1500ms);
  auto took = Clock::now() - t0;
  mute.Reset();
  CHECK(ex.status == 0);
  INFO(ex.error);
  CHECK(ex.error.find("TLS handshake with 127.0.0.1:") == 0);
  CHECK(ex.error.find("no answer within 1500 ms") != std::string::npos);
  CHECK(took >= 1400ms);
  CHECK(took < 3s);

  // Completes TLS, reads the request, never answers.
  TlsServer hang(pki, "hang");
  t0 = Clock::now();
  ex = t.Post(hang.Url("localhost"), {}, "{}", 1500ms);
  took = Clock::now() - t0;
  CHECK(ex.status == 0);
  CHECK(ex.error == "no response from localhost:" + std::to_string(hang.port) + " within 1500 ms");
  CHECK(took >= 1400ms);
  CHECK(took < 3s);
}

TEST_CASE("unusable trust or target: clear errors, nothing sent") {
  Pki pki;
  CurlTransport missing(TlsTrust{"", pki.Path("nope.pem")});
  auto ex = missing.Post("https://localhost:1/", {}, "{}", 1000ms);
  CHECK(ex.error.find("cannot load CA file " + pki.Path("nope.pem")) == 0);

  CurlTransport garbage(TlsTrust{"not a certificate", ""});
  ex = garbage.Post("https://localhost:1/", {}, "{}", 1000ms);
  CHECK(ex.error == "no CA certificate in the inline CA PEM");
  std::ofstream(pki.Path("garbage.pem")) << "not a certificate";
  CurlTransport garbage_file(TlsTrust{"", pki.Path("garbage.pem")});
  ex = garbage_file.Post("https://localhost:1/", {}, "{}", 1000ms);
  CHECK(ex.error.find("no CA certificate in CA file " + pki.Path("garbage.pem")) == 0);
  std::string error;
  CHECK_FALSE(CountPemCertificates("not a certificate", error));
  CHECK_FALSE(error.empty());
  CHECK(CountPemCertificates(ReadAll(pki.Path("ca.pem")), error) == 1);

  CurlTransport t(TlsTrust{"", pki.Path("ca.pem")});
  ex = t.Post("http://localhost/", {}, "{}", 1000ms);
  CHECK(ex.error.find("invalid URL 'http://localhost/': only https:// is supported") == 0);
  ex = t.Post("https://no-such-host.invalid/", {}, "{}", 3000ms);
  CHECK(ex.error.find("cannot resolve no-such-host.invalid") == 0);
  // Port 1 on loopback: nothing listens there.
  ex = t.Post("https://127.0.0.1:1/", {}, "{}", 1000ms);
  CHECK(ex.error.find("connect to 127.0.0.1:1: ") == 0);
  CHECK_MESSAGE(ex.error.find("Connection refused") != std::string::npos, ex.error);
}
