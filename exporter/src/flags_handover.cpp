// guest-exporter's side of its flag parser (flags.h): runs guest-exporter-flags
// and reads back the options it hands over.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "flags.h"
#include "gm/errno_text.h"
#include "gm/unique_fd.h"
#include "small_file.h"

namespace gm::exporter {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Options, libvirt_uri, interval, max_age_factor, agent_timeout,
                                   vmi_namespace, vmi_name, node, socket, listen_address,
                                   http_request_timeout, http_idle_timeout,
                                   http_max_tcp_connections, http_max_unix_connections, log_format,
                                   log_level, max_backoff, keepalive_interval, keepalive_count,
                                   call_deadline, watchdog_timeout, pod_name, pod_uid, cpu_request,
                                   memory_request, memory_overhead, vmi_memory_request,
                                   cluster_memory_overcommit, reporter_url, reporter_ca_file,
                                   reporter_ca_pem, token_file)

std::string EncodeOptions(const Options& o) { return nlohmann::json(o).dump(); }

std::optional<Options> DecodeOptions(const std::string& text, std::string& error) {
  try {
    return nlohmann::json::parse(text).get<Options>();
  } catch (const nlohmann::json::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

namespace {

// guest-exporter-flags in this program's own directory (the image installs
// both in /usr/local/bin; a build tree has both in exporter/).
std::string ParserPath() {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "guest-exporter-flags";
  std::string path(self, static_cast<size_t>(n));
  path.resize(path.rfind('/') + 1);
  return path + "guest-exporter-flags";
}

void Complain(const std::string& what) {
  static_cast<void>(
      std::fprintf(stderr, "guest-exporter: cannot parse the flags: %s\n", what.c_str()));
}

}  // namespace

std::optional<Options> ParseFlags(int argc, char** argv, int& exit_code) {
  static_cast<void>(argc);  // argv ends with a null pointer, as posix_spawn needs
  exit_code = 1;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    Complain("pipe: " + gm::ErrnoText(errno));
    return std::nullopt;
  }
  gm::UniqueFd read_end(fds[0]);
  gm::UniqueFd pipe_write(fds[1]);
  // Above kOptionsFd, so that the parser's dup2 onto it never meets itself.
  gm::UniqueFd write_end(::fcntl(pipe_write.get(), F_DUPFD_CLOEXEC, kOptionsFd + 1));
  pipe_write.Reset();
  if (!write_end) {
    Complain("fcntl: " + gm::ErrnoText(errno));
    return std::nullopt;
  }
  const std::string parser = ParserPath();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), kOptionsFd);
  static_cast<void>(std::fflush(nullptr));  // nothing buffered is written twice
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, parser.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.Reset();
  if (spawned != 0) {
    Complain("cannot run " + parser + ": " + gm::ErrnoText(spawned));
    return std::nullopt;
  }
  // The options are a few KiB; the bound only guards against a broken parser.
  std::string text, read_error;
  const bool read_whole = ReadBounded(read_end.get(), 1U << 20, text, read_error);
  read_end.Reset();  // a parser still writing gets EPIPE rather than blocking our wait
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    exit_code = 128 + WTERMSIG(status);
    return std::nullopt;
  }
  exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  if (exit_code != 0 || text.empty()) return std::nullopt;  // --help, --version, probe, an error
  if (!read_whole) {
    Complain("reading the options from " + parser + ": " + read_error);
    exit_code = 1;
    return std::nullopt;
  }
  std::string error;
  auto options = DecodeOptions(text, error);
  if (!options) {
    Complain(parser + " handed over bad options: " + error);
    exit_code = 1;
  }
  return options;
}

}  // namespace gm::exporter
