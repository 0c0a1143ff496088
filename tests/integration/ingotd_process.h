// Runs the real ingotd for the integration tests: fork/exec on free loopback ports,
// wait for grpc.health.v1 SERVING, stop with a signal. Plus small helpers to scrape
// /metrics over a raw socket and to run the ingot CLI.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace ingot::testing {

// A port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

class IngotdProcess {
 public:
  IngotdProcess() = default;
  ~IngotdProcess();  // SIGKILL if still running
  IngotdProcess(const IngotdProcess&) = delete;
  IngotdProcess& operator=(const IngotdProcess&) = delete;

  // Starts ingotd with `extra_args` after --listen/--metrics-listen. Its stdout and
  // stderr go to log_path().
  void Start(const std::vector<std::string>& extra_args);
  // Polls health ("" service) until SERVING; false if the process exits or `timeout`
  // passes first.
  bool WaitServing(std::chrono::seconds timeout);
  // Sends `sig`; returns the exit status (as from waitpid) or -1 after `timeout`.
  int StopWith(int sig, std::chrono::seconds timeout);
  // waitpid(WNOHANG): whether the process has exited (and its waitpid status then).
  bool Exited(int* status = nullptr);

  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  pid_t pid_ = -1;
  int exit_status_ = 0;  // waitpid status once reaped
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
  std::shared_ptr<grpc::Channel> channel_;
};

// The body of GET /metrics on 127.0.0.1:`port`; empty on failure.
std::string HttpGetMetrics(int port);

// Value of the first sample line that starts with `series` (e.g.
// `ingot_requests_running{model="default"}`), or -1 when absent.
double MetricValue(const std::string& exposition, const std::string& series);

struct CommandResult {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};
// Runs `argv` (argv[0] is a path) with `stdin_text` on its stdin.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& stdin_text = "");

// Bytes of a file, or "" if it cannot be read.
std::string ReadFile(const std::string& path);
// A fresh directory under $TMPDIR (or /tmp).
std::string MakeTempDir();

}  // namespace ingot::testing
