// Work the gRPC services must not do on gRPC's callback threads: loads,
// quantizations, evaluations and saves each run on a thread of their own, owned here
// (one component both ModelService and QuantizationService use), with a cancel flag
// the call's reactor and the drain set.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace ingot::server {

class BackgroundJobs {
 public:
  // What a job makes: a model in this process (load, quantize), which the drain
  // cancels as it starts since the process is about to exit with it; or a result for
  // its caller (evaluate, save), which may finish until the drain's deadline.
  enum class Job { kModelChange, kResult };

  BackgroundJobs() = default;
  ~BackgroundJobs() { Join(); }
  BackgroundJobs(const BackgroundJobs&) = delete;
  BackgroundJobs& operator=(const BackgroundJobs&) = delete;

  // Runs `fn` on a new thread (joined by Join or the destructor). `cancel` (may be
  // null) is the job's cancel flag: Cancel() sets it.
  void Run(std::function<void()> fn, std::shared_ptr<std::atomic<bool>> cancel, Job job);
  // Cancels the jobs of `kind` (all of them when null), running or started later: the
  // drain has begun, or its deadline is near.
  void Cancel(std::optional<Job> kind = std::nullopt);
  // Waits for every job (the server has stopped; nothing starts new ones).
  void Join();

 private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
    std::shared_ptr<std::atomic<bool>> cancel;
    Job job;
  };
  std::mutex mu_;
  std::vector<Worker> workers_;
  std::set<Job> cancelled_;  // guarded by mu_
};

// A unary call whose work runs as a kResult job: `work` gets the call's cancel flag
// (set by the client's cancel, its deadline or the drain) and returns the status the
// call ends with. The default reactor has no OnCancel, hence this class; it deletes
// itself.
class BackgroundUnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  BackgroundUnaryReactor(BackgroundJobs* jobs, std::function<absl::Status(const std::atomic<bool>* cancel)> work);
  void OnCancel() override { cancel_->store(true); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace ingot::server
