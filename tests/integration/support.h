#pragma once
// Test support: child processes, temp dirs, polling with a deadline, and
// reading /metrics the way Prometheus does.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gm/unique_fd.h"

namespace gm::test {

/// A directory removed with everything in it when the object goes.
struct TempDir {
  std::string path;
  TempDir();
  ~TempDir();
};

/// A child process; killed (SIGKILL after SIGTERM) when the object goes.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::map<std::string, std::string>& env = {},
          const std::string& log_file = "");
  ~Process();
  pid_t pid() const { return pid_; }
  void Signal(int sig) const;
  /// Waits for exit; returns the exit code (128+signal when killed), -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  bool Running();
  void Stop();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
int FreeTcpPort();
/// A connected socket (blocking), or an empty UniqueFd.
UniqueFd ConnectTcp(int port);
UniqueFd ConnectUnix(const std::string& path);
/// GET over TCP to 127.0.0.1:port (HTTP/1.0); the whole reply (status line,
/// headers, body), or "" when no connection.
std::string GetTcp(int port, const std::string& path);
/// User + system CPU seconds of a process so far (/proc/PID/stat).
double CpuSeconds(pid_t pid);
/// A field of /proc/PID/status in KiB (VmRSS, RssAnon, ...), or -1.
long StatusKib(pid_t pid, const std::string& field);

/// Runs a command to completion, capturing stdout+stderr.
int Run(const std::vector<std::string>& argv, std::string& output);

/// Polls `pred` every 50 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

/// GET over a unix socket; returns the body, or "" with ok=false.
std::string Get(const std::string& socket, const std::string& path, bool* ok = nullptr);

/// The value of the sample whose line starts with `series` (name and labels
/// exactly as exposed), or nullopt when there is no such sample.
std::optional<double> Sample(const std::string& metrics, const std::string& series);

/// Number of samples of metric `name` whose label set contains `labels_part`.
int CountSeries(const std::string& metrics, const std::string& name,
                const std::string& labels_part = "");

}  // namespace gm::test
