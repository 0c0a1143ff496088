// name -> loaded model pinned to a device, with its scheduler. Requests hold a
// shared_ptr to the model, so unloading never frees weights under a running stream:
// an unloaded model's scheduler drains (finishes its streams) and is reaped by the
// registry's reaper thread as soon as it is idle (within kReapPoll), which frees the
// weights and the KV cache there and then, not at some later registry call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/runtime/scheduler.h"

namespace ingot {

// MemTotal / MemAvailable from /proc/meminfo, in bytes (engine.cc).
void ReadMemInfo(int64_t* total, int64_t* available);

class Registry {
 public:
  static constexpr std::chrono::milliseconds kReapPoll{50};
  Registry();
  ~Registry();  // stops the reaper

  struct Entry {
    ModelInfo info;                           // state kLoading until ready
    std::shared_ptr<const LoadedModel> model; // null while loading
    std::unique_ptr<Scheduler> scheduler;     // null while loading
  };

  // ALREADY_EXISTS when the name is taken (ready or loading).
  absl::Status Reserve(const std::string& name, const LoadRequest& request);
  void Abandon(const std::string& name);  // a failed load
  void Publish(const std::string& name, std::shared_ptr<const LoadedModel> model,
               std::unique_ptr<Scheduler> scheduler);
  absl::Status Unload(const std::string& name);
  // Swaps a ready model for a new one (quantize in place): streams already running on
  // the old one finish there; new requests go to the new one. NOT_FOUND if it is gone.
  absl::Status Replace(const std::string& name, std::shared_ptr<const LoadedModel> model,
                       std::unique_ptr<Scheduler> scheduler);

  // A ready model and its scheduler (NOT_FOUND / FAILED_PRECONDITION while loading).
  struct Ready {
    std::shared_ptr<const LoadedModel> model;
    Scheduler* scheduler;
  };
  absl::StatusOr<Ready> Find(const std::string& name) const;
  std::vector<ModelInfo> List() const;
  absl::StatusOr<ModelInfo> Get(const std::string& name) const;
  int64_t BytesOnDevice(const std::string& device) const;
  int Running(const std::string& name) const;
  // Running or queued generations by model name, models being unloaded included (they
  // still run their streams): what ingot_requests_running shows.
  std::vector<std::pair<std::string, int>> RunningByModel() const;
  // Every generation of every model, unloaded ones included, ends now with finish
  // reason CANCELLED and its final message (the drain deadline is near).
  void CancelAll();
  void Shutdown();  // stops every scheduler (running streams end cancelled)

 private:
  ModelInfo Describe(const Entry& e) const;
  void ReapLocked();
  void ReapLoop();

  mutable std::mutex mu_;
  std::condition_variable reap_cv_;
  bool stop_reaper_ = false;
  std::thread reaper_;
  std::map<std::string, Entry> entries_;
  std::vector<std::unique_ptr<Scheduler>> draining_;
  // Models being unloaded, kept for their memory accounting until reaped.
  std::vector<std::shared_ptr<const LoadedModel>> draining_models_;
};

}  // namespace ingot
