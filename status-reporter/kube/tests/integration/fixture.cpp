#include "fixture.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "gm/kube/config.h"

namespace kube_it {
namespace {

using Clock = std::chrono::steady_clock;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Waits up to `timeout` for the child; true when it has exited.
bool Reap(pid_t pid, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  do {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } while (Clock::now() < until);
  return false;
}

}  // namespace

Fixture::Fixture(const std::vector<std::string>& extra_args) {
  char tmpl[] = "/tmp/kube-it-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  const std::string log = dir_ + "/fixture.log";

  std::vector<std::string> args{GM_PYTHON3, GM_APISERVER_FIXTURE, "--port",
                                "0",        "--state-dir",        dir_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // The fixture must not outlive a crashed test.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }

  const std::string ready = dir_ + "/ready.json";
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!std::filesystem::exists(ready)) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_ || Clock::now() > deadline) {
      pid_ = -1;
      const std::string output = ReadAll(log);
      std::filesystem::remove_all(dir_);
      throw std::runtime_error("the API-server fixture did not start: " + output);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto info = nlohmann::json::parse(ReadAll(ready));
  port_ = info.at("port").get<int>();
  kubeconfig_ = info.at("kubeconfig").get<std::string>();

  gm::kube::Config admin = config();
  admin.qps = 0;  // the admin channel must not share or feel any client's limits
  gm::kube::ClientOptions options;
  options.retry.max_attempts = 1;
  admin_ = std::make_unique<gm::kube::Client>(admin, options);
}

Fixture::~Fixture() {
  admin_.reset();
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!Reap(pid_, std::chrono::seconds(5))) {
      ::kill(pid_, SIGKILL);
      Reap(pid_, std::chrono::seconds(5));
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

gm::kube::Config Fixture::config() const { return gm::kube::LoadKubeconfig(kubeconfig_); }

nlohmann::json Fixture::Admin(const std::string& verb, const std::string& path,
                              const nlohmann::json& body) {
  gm::kube::RequestSpec spec;
  spec.verb = verb;
  spec.path = path;
  if (!body.is_null()) spec.body = body.dump();
  if (verb == "PATCH") spec.content_type = gm::kube::kMergePatch;
  const auto r = admin_->Request(spec);
  return r.body.empty() ? nlohmann::json() : nlohmann::json::parse(r.body);
}

std::vector<nlohmann::json> Fixture::Requests(const std::string& verb,
                                              const std::string& resource) {
  std::vector<nlohmann::json> out;
  const auto all = Admin("GET", "/fixture/requests");
  for (const auto& r : all.at("requests")) {
    if ((verb.empty() || r.value("verb", "") == verb) &&
        (resource.empty() || r.value("resource", "") == resource)) {
      out.push_back(r);
    }
  }
  return out;
}

nlohmann::json Fixture::Create(const std::string& collection_path, const nlohmann::json& object) {
  return admin_->Create(collection_path, object);
}

nlohmann::json Pod(const std::string& ns, const std::string& name, const nlohmann::json& labels) {
  return {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"namespace", ns}, {"name", name}, {"labels", labels}}},
      {"spec", {{"containers", nlohmann::json::array({{{"name", "c"}, {"image", "busybox"}}})}}}};
}

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace kube_it
