// name -> loaded model pinned to a device, with its scheduler, its lifecycle state and
// its share of the device's memory budget. Requests hold a shared_ptr to the model, so
// unloading never frees weights under a running stream: an unloaded model's scheduler
// drains (finishes its streams) and is reaped by the registry's reaper thread as soon
// as it is idle (within kReapPoll), which frees the weights and the KV cache there and
// then. The same thread unloads idle unpinned models past their keep_alive.
//
// Admission: every way a model gets memory (a load, quantize while loading, a quantized
// copy, a KV pool) asks Admit for its bytes on its device. Used bytes are the ready
// models' (weights as placed + KV pool), the loading ones' reservations and the
// draining ones' until reaped. A request that does not fit evicts idle unpinned ready
// models least recently used first, only when evicting them makes it fit; never one
// with running or queued streams, never a pinned one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
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

// What one admission asks for.
struct Admission {
  std::string what;        // "loading 'x' from /m.gguf": the refusal starts with it
  std::string device;      // "cpu"
  int64_t bytes = 0;       // the whole footprint on the device
  int64_t budget = 0;      // the device's budget; 0 = `device_free` binds
  int64_t device_free = 0; // the OS's / driver's free bytes now (budget 0 only)
  int64_t credit = 0;      // bytes that leave when this arrives (quantize in place)
  std::vector<std::string> keep;  // never evicted for this one (a quantization's source)
};

// What Admit found (PlanLoad shows it without acting).
struct AdmissionPlan {
  bool fits = false;
  int64_t free_bytes = 0;  // before any eviction
  int64_t used_bytes = 0;
  struct Victim {
    std::string name;
    int64_t bytes = 0;
    double idle_seconds = 0;
  };
  std::vector<Victim> evict;  // least recently used first; empty when it fits as is
};

class Registry {
 public:
  using Clock = std::chrono::steady_clock;
  using Sink = std::function<void(const ModelEvent&)>;
  static constexpr std::chrono::milliseconds kReapPoll{50};
  static constexpr std::chrono::milliseconds kIdlePoll{250};  // keep_alive resolution
  Registry();
  ~Registry();  // stops the reaper

  // ALREADY_EXISTS when the name is taken (ready or loading); a FAILED entry is
  // replaced (a retry). `request.pinned` / `keep_alive_s` are resolved by the caller.
  absl::Status Reserve(const std::string& name, const LoadRequest& request);
  // A load that failed: the entry stays listed as FAILED with `error`.
  void Fail(const std::string& name, const absl::Status& error);
  // A quantization into a new name that failed: the entry goes (FAILED, then GONE).
  void Abandon(const std::string& name, const absl::Status& error);
  // Admission for `name` (reserved, or ready when quantized in place): fits as is,
  // or after evicting idle models (done here, reason memory_pressure), or
  // RESOURCE_EXHAUSTED naming the device, the bytes needed and free. With `reserve`
  // the bytes are held by `name` until Publish / Fail.
  absl::Status Admit(const std::string& name, const Admission& a, bool reserve);
  AdmissionPlan PlanAdmission(const std::string& name, const Admission& a) const;
  void Publish(const std::string& name, std::shared_ptr<const LoadedModel> model,
               std::unique_ptr<Scheduler> scheduler);
  // `reason`: kReasonUnloadRequest, ... FAILED_PRECONDITION while loading.
  absl::Status Unload(const std::string& name, const std::string& reason);
  // Swaps a ready model for a new one (quantize in place): streams already running on
  // the old one finish there; new requests go to the new one. NOT_FOUND if it is gone.
  absl::Status Replace(const std::string& name, std::shared_ptr<const LoadedModel> model,
                       std::unique_ptr<Scheduler> scheduler);

  // A ready model and its scheduler (NOT_FOUND / FAILED_PRECONDITION while loading or
  // failed). Counts as a use of the model (keep_alive, LRU). The scheduler is shared:
  // one evicted and reaped between Find and Submit stays alive for the caller, whose
  // Submit is then refused (draining).
  struct Ready {
    std::shared_ptr<const LoadedModel> model;
    std::shared_ptr<Scheduler> scheduler;
  };
  absl::StatusOr<Ready> Find(const std::string& name) const;
  std::vector<ModelInfo> List() const;
  absl::StatusOr<ModelInfo> Get(const std::string& name) const;
  int64_t BytesOnDevice(const std::string& device) const;
  // Names of the models on `device`, unloading ones included (with " (unloading)").
  std::vector<std::string> ModelsOnDevice(const std::string& device) const;
  int Running(const std::string& name) const;
  // Running or queued generations by model name, models being unloaded included (they
  // still run their streams): what ingot_requests_running shows.
  std::vector<std::pair<std::string, int>> RunningByModel() const;
  // Every generation of every model, unloaded ones included, ends now with finish
  // reason CANCELLED and its final message (the drain deadline is near).
  void CancelAll();
  void Shutdown();  // stops every scheduler (running streams end cancelled)

  // Every transition from now on goes to `sink`, in order, called under the
  // registry's lock (keep it short; never call back into the engine). `snapshot`
  // receives every model's state at the moment of subscribing, unloading ones
  // included. Returns an id for Unsubscribe.
  int Subscribe(Sink sink, std::vector<ModelInfo>* snapshot);
  void Unsubscribe(int id);

 private:
  struct Entry {
    ModelInfo info;                           // state kLoading until ready
    std::shared_ptr<const LoadedModel> model; // null unless ready
    std::shared_ptr<Scheduler> scheduler;     // null unless ready
    int64_t reserved_bytes = 0;               // loading: granted by Admit
    Clock::time_point started;                // the load began
    mutable Clock::time_point last_used;      // a request arrived, or one was running
  };
  struct Draining {
    std::shared_ptr<Scheduler> scheduler;
    std::shared_ptr<const LoadedModel> model;
    std::string name, device, reason;
    int64_t bytes = 0;
    Clock::time_point since;
    bool announce_gone = true;  // false for a replaced model: its name lives on
  };

  ModelInfo Describe(const Entry& e) const;
  // Ready models' bytes, loading ones' reservations and draining ones' (those with no
  // stream left only with `idle_draining`), `except` left out.
  int64_t UsedLocked(const std::string& device, const std::string& except, bool idle_draining) const;
  AdmissionPlan PlanLocked(const std::string& name, const Admission& a) const;
  // Moves `e`'s model and drained scheduler to draining_ (freed when its streams end);
  // returns the bytes it held.
  int64_t DrainLocked(const std::string& name, Entry& e, const std::string& reason, bool announce_gone);
  void UnloadLocked(std::map<std::string, Entry>::iterator it, const std::string& reason);
  void EmitLocked(ModelEvent event) const;
  void UnloadIdleLocked();
  // Removes idle draining schedulers from draining_ into `done` (destroyed by the
  // caller, outside the lock when it can) and emits their GONE events.
  void TakeIdleLocked(std::vector<Draining>* done);
  void ReapLoop();

  mutable std::mutex mu_;
  std::condition_variable reap_cv_;
  bool stop_reaper_ = false;
  std::thread reaper_;
  std::map<std::string, Entry> entries_;
  std::vector<Draining> draining_;
  std::map<int, Sink> sinks_;
  int next_sink_ = 1;
};

}  // namespace ingot
